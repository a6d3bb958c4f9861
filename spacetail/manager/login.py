"""The login state machine: `tailscale up` attempts until tailscale reports Running, retried with
jittered backoff inside one deadline, failed at once on what retrying cannot fix.

It decides; it never waits. The manager feeds it events (tailscaled's LocalAPI answers, a state
change, what the status reader last saw, an attempt's exit) and the time, and it answers by
starting or stopping an attempt, by asking for a fresh read, and by calling back `succeeded` or
`failed` (with a Failure: tailscale's words, classified). It keeps its attempts and their
backoff; the phase lives in the manager's Lifecycle (lifecycle.py), where the login moves only
its own steps (an attempt runs, a backoff waits): Running, Failed and Stopping are the manager's.
The clock and the process factory are passed in, so its decisions are tested with scripted
events and a fake clock, without processes."""

from __future__ import annotations

import contextlib
import os
import random
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from spacetail.config.loader import Config
from spacetail.log import redact
from spacetail.manager.events import ChildProcess
from spacetail.manager.lifecycle import Lifecycle
from spacetail.state import statedir
from spacetail.state.paths import Paths, remove_file
from spacetail.state.phases import Phase
from spacetail.state.status import Node
from spacetail.tailnet.failures import (
    Failure,
    FailureClass,
    Program,
    diagnose,
    diagnose_for,
    login_error,
)
from spacetail.tailnet.tailscale import Binaries, secret_payload
from spacetail.tailnet.tailscale import up_argv as build_up_argv

MAX_ATTEMPT_SECONDS = 30.0
STOP_WAIT = 0.2
# A failed attempt is judged with tailscale's own word on it, which a fresh read of its health
# brings within milliseconds; a tailscaled too stuck to answer this soon is judged without.
FRESH_READ_WAIT = 0.3
SAME_ERROR_PATIENCE = 2.0  # an error that was already there may be old news: wait this long


class Outcome(Protocol):
    """What the login reports to its owner."""

    def note(self, message: str) -> None: ...

    def succeeded(self) -> None: ...

    def failed(self, failure: Failure) -> None: ...


SpawnUp = Callable[[list[str]], ChildProcess]


@dataclass
class Attempt:
    """One run of `tailscale up`."""

    number: int
    started: float
    proc: ChildProcess
    secret: Path | None
    previous_error: str | None  # tailscale's last login error before this attempt began
    aborted: Failure | None = None  # why it was cut short


@dataclass(frozen=True)
class Ended:
    """A failed attempt waiting for a read of tailscale's health that began after it ended."""

    attempt: Attempt
    code: int
    output: str
    at: float
    judge_by: float


class Login:
    def __init__(
        self,
        cfg: Config,
        paths: Paths,
        binaries: Binaries,
        *,
        spawn: SpawnUp,
        outcome: Outcome,
        life: Lifecycle,
        clock: Callable[[], float],
        refresh: Callable[[], None] = lambda: None,
        jitter: Callable[[float, float], float] = random.uniform,
        deadline: float | None = None,
    ) -> None:
        self.cfg = cfg
        self.paths = paths
        self.binaries = binaries
        self.spawn = spawn
        self.outcome = outcome
        self.clock = clock
        self.refresh = refresh  # ask the status reader for a fresh read, now
        self.jitter = jitter
        self.life = life  # the manager's: the phase is read there, and the login's steps set
        self.deadline = deadline if deadline is not None else clock() + cfg.timeout
        self.backend_state: str | None = None
        self.last_error: str | None = None  # tailscale's last login error, as last read
        self.problem: Failure | None = None  # what last went wrong
        self.attempts = 0
        self.attempt: Attempt | None = None
        self.ended: Ended | None = None
        self.retry_at: float | None = None

    @property
    def phase(self) -> Phase:
        return self.life.phase

    @property
    def halted(self) -> bool:
        """The manager is stopping: no more decisions (no retry, no verdict on an attempt)."""
        return self.life.stopping

    # --- what the manager tells it ------------------------------------------------------

    def restarting(self, delay: float) -> None:
        """tailscaled will be started again in DELAY seconds: log in afresh after that."""
        self.backend_state = None
        self.retry_at = None
        self.deadline = self.clock() + delay + self.cfg.timeout

    def api_ready(self) -> None:
        if self.phase is Phase.STARTING:
            # LOGIN even when an aborted attempt (against the tailscaled that died) has not
            # exited yet: its exit is then judged, and the next attempt follows.
            self.life.change(Phase.LOGIN)
            self.start_attempt()

    def on_state(self, backend: str) -> None:
        previous = self.backend_state
        self.backend_state = backend
        if backend in ("Starting", "Running"):
            # `tailscale up` read the key before it asked tailscaled to start: the file has
            # served its purpose, so it does not wait for the CLI to exit.
            self._clear_secret()
        if backend != previous:
            self.outcome.note(f"tailscale state: {backend}")
        if self.halted:
            return
        if backend == "Running" and self.phase.logging_in:
            self.retry_at = None
            self.ended = None
            self.outcome.succeeded()
        elif backend in ("NeedsLogin", "Stopped") and self.phase is Phase.RUNNING:
            # Logged out (or taken down) behind our back: the phase still needs the tailnet.
            reason = f"tailscale went to {backend} while Running; logging in again"
            self.problem = Failure(FailureClass.LOGGED_OUT, reason)
            self.outcome.note(reason)
            self.deadline = self.clock() + self.cfg.timeout
            self.start_attempt()
        elif backend != "Running" and self.phase is Phase.RUNNING:
            self.outcome.note(f"tailscale left Running: now {backend}")

    def on_node(self, node: Node, read_at: float) -> None:
        """What a read of tailscale's status begun at READ_AT found."""
        self.last_error = login_error(list(node.health))
        if self.halted:
            return
        if self.attempt is not None:
            self._check_attempt(self.attempt)
        if self.ended is not None and read_at >= self.ended.at:
            self._judge(self.ended)

    def on_up_exit(self, proc: ChildProcess, code: int) -> bool:
        """An attempt ended; False if PROC is not the current attempt."""
        attempt = self.attempt
        if attempt is None or attempt.proc is not proc:
            return False
        self.attempt = None
        if attempt.secret:
            remove_file(attempt.secret)
        if self.halted or self.phase not in (Phase.LOGIN, Phase.BACKOFF):
            return True
        if code == 0 and attempt.aborted is None:
            # `tailscale up` returns once Running; the bus usually told us already.
            if self.backend_state != "Running":
                self.on_state("Running")
            return True
        output = redact(bytes(proc.output).decode("utf-8", "replace"))
        if attempt.aborted is None:
            # A command line tailscale refuses (Go's flag error comes before its usage text):
            # no retry can fix it, so it fails now, naming the setting.
            failure = diagnose_for(output, Program.UP, self.cfg)
            if failure.kind in (FailureClass.USAGE, FailureClass.LOCAL):
                self.outcome.note(f"login attempt {attempt.number} refused: {failure.line}")
                self.fail(failure)
                return True
        now = self.clock()
        self.ended = Ended(attempt, code, output, now, now + FRESH_READ_WAIT)
        self.refresh()
        return True

    def tick(self, now: float) -> None:
        if self.halted:
            return
        if self.retry_at is not None and now >= self.retry_at:
            self.retry_at = None
            self.start_attempt()
        if self.ended is not None and now >= self.ended.judge_by:
            self._judge(self.ended)  # tailscaled did not answer in time: judge on what is known
        if self.phase.logging_in and now >= self.deadline:
            self.fail(self.timed_out())

    def time_left(self) -> float | None:
        """Seconds until the login is given up (never below 0); None when it is not logging in."""
        if self.halted or not self.phase.logging_in:
            return None
        return round(max(0.0, self.deadline - self.clock()), 3)

    def next_deadline(self) -> float | None:
        if self.halted:
            return None
        times = [self.retry_at, self.ended.judge_by if self.ended else None]
        if self.phase.logging_in:
            times.append(self.deadline)
        return min((t for t in times if t is not None), default=None)

    def tailscaled_lost(self) -> None:
        self.abort(Failure(FailureClass.TAILSCALED_EXITED, "tailscaled exited"))
        self.retry_at = None
        self.ended = None
        self.backend_state = None

    def stop(self) -> None:
        """The manager shuts down: end the attempt (a moment at most) and remove its secret."""
        self.retry_at = None
        self.ended = None
        if self.attempt is not None:
            self.abort(Failure(FailureClass.DOWN, "the manager is stopping"))
            # `tailscale up` ends at once on SIGTERM; one that does not dies with the manager
            # (PR_SET_PDEATHSIG), so the shutdown never waits long for it.
            self.attempt.proc.wait(STOP_WAIT)
            self._clear_secret()

    def fail(self, failure: Failure) -> None:
        """The login gives up on FAILURE: the manager hears it and decides what follows."""
        self.give_up(failure)
        self.outcome.failed(failure)

    def give_up(self, failure: Failure) -> None:
        """No more attempts for now (the manager's own verdict, or the login's)."""
        self.abort(failure)
        self.retry_at = None
        self.ended = None
        self.problem = failure

    def abort(self, why: Failure) -> None:
        attempt = self.attempt
        if attempt is None or attempt.aborted:
            return
        attempt.aborted = why
        with contextlib.suppress(Exception):
            attempt.proc.signal(signal.SIGTERM)

    # --- attempts -------------------------------------------------------------------------

    def start_attempt(self) -> None:
        if self.attempt is not None:
            return
        self.life.change(Phase.LOGIN)
        self.attempts += 1
        remaining = self.deadline - self.clock()
        secret = self._write_secret()
        argv = build_up_argv(
            self.binaries, self.cfg, self.paths, secret, min(remaining, MAX_ATTEMPT_SECONDS)
        )
        proc = self.spawn(argv)
        self.attempt = Attempt(self.attempts, self.clock(), proc, secret, self.last_error)
        self.outcome.note(f"login attempt {self.attempts}: tailscale up (pid {proc.pid})")

    def _write_secret(self) -> Path | None:
        payload = secret_payload(self.cfg)
        if payload is None:
            return None
        return statedir.write_secret(self.paths, f"{os.getpid()}-{self.attempts}", payload)

    def _clear_secret(self) -> None:
        if self.attempt and self.attempt.secret:
            remove_file(self.attempt.secret)

    def _check_attempt(self, attempt: Attempt) -> None:
        """While `tailscale up` waits, tailscale's own verdict on the login may come first."""
        err = self.last_error
        if not err or attempt.aborted:
            return
        age = self.clock() - attempt.started
        if (
            not diagnose(err).retryable
            or err != attempt.previous_error
            or age > SAME_ERROR_PATIENCE
        ):
            # tailscaled would retry by itself on its own schedule; we retry on ours (with
            # backoff and jitter, inside --timeout) so the attempt is visible and bounded.
            self.abort(diagnose(err))

    def _judge(self, ended: Ended) -> None:
        """A failed attempt: fail for good, or retry after a backoff inside the deadline."""
        self.ended = None
        attempt = ended.attempt
        failure = self._why(ended)
        kind = "transient" if failure.retryable else "permanent"
        self.outcome.note(f"login attempt {attempt.number} failed ({kind}): {failure.line}")
        if not failure.retryable:
            self.fail(failure)
            return
        if failure.kind is FailureClass.TIMEOUT_STARTING:
            failure = self.timed_out()  # tailscale's CLI only says it timed out
        self.problem = failure
        remaining = self.deadline - self.clock()
        if remaining < 1.0:
            self.fail(failure)
            return
        backoff = min(10.0, 2.0 ** (attempt.number - 1))
        delay = self.jitter(0.5 * backoff, backoff)  # runs started together spread out
        delay = min(delay, remaining - 1.0)  # leave the last attempt at least a second
        self.life.change(Phase.BACKOFF)
        self.retry_at = self.clock() + delay
        self.outcome.note(f"retrying login in {delay:.1f}s")

    def _why(self, ended: Ended) -> Failure:
        """Why an attempt failed: tailscale's words on it (its health's last login error rather
        than the CLI's "timeout waiting"), else why it was cut short, else how it exited."""
        said = ended.attempt.aborted
        if said is None:
            last_lines = ended.output.strip().splitlines()
            said = diagnose(last_lines[-1]) if last_lines else None
        timed_out = said is not None and said.kind is FailureClass.TIMEOUT_STARTING
        if self.last_error and (ended.attempt.aborted is None or timed_out):
            return diagnose(self.last_error)
        return said or Failure(FailureClass.UNKNOWN, f"exit {ended.code}")

    def timed_out(self) -> Failure:
        """The verdict at the deadline, with the last thing known of why (no time is left to
        ask tailscaled again)."""
        err = self.last_error
        state = self.backend_state or "no state"
        base = f"not Running after {self.cfg.timeout:g}s (state {state})"
        if err:
            return Failure(diagnose(err).kind, f"{base}; the last login error was: {err}")
        problem = self.problem
        if problem and problem.kind not in (FailureClass.TIMEOUT_STARTING, FailureClass.LOGGED_OUT):
            return Failure(problem.kind, f"{base}; {problem.line}")
        return Failure(FailureClass.TIMEOUT_STARTING, base)
