"""The login state machine: `tailscale up` attempts until tailscale reports Running, retried with
jittered backoff inside one deadline, failed at once on what retrying cannot fix.

It decides; it does not wait. The manager feeds it events (tailscaled's LocalAPI answers, a state
change, an attempt's exit) and the time, and it answers by starting or stopping an attempt and by
calling back `succeeded` or `failed`. The clock, the process factory and the LocalAPI are passed
in, so its decisions are tested with scripted events and a fake clock, without processes."""

from __future__ import annotations

import contextlib
import enum
import os
import random
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from spacetail import statedir
from spacetail.config import Config
from spacetail.events import ChildProcess
from spacetail.failures import (
    Failure,
    FailureClass,
    Program,
    classify,
    diagnose,
    diagnose_for,
    login_error,
)
from spacetail.log import redact
from spacetail.paths import Paths
from spacetail.tailscale import (
    Binaries,
    LocalAPIError,
    secret_payload,
    summarize,
)
from spacetail.tailscale import up_argv as build_up_argv

HEALTH_POLL = 0.25
API_TIMEOUT = 0.15  # the LocalAPI answers in a millisecond; longer means it is stuck
MAX_ATTEMPT_SECONDS = 30.0
STOP_WAIT = 0.2


class Phase(enum.Enum):
    """Where the manager stands; the value is what `status` shows."""

    STARTING = "starting"  # tailscaled is starting (or restarting)
    LOGIN = "login"  # a `tailscale up` attempt runs
    BACKOFF = "backoff"  # waiting before the next attempt
    RUNNING = "running"
    FAILED = "failed"
    STOPPING = "stopping"

    @property
    def logging_in(self) -> bool:
        return self in (Phase.STARTING, Phase.LOGIN, Phase.BACKOFF)


class StatusAPI(Protocol):
    def status(self, timeout: float = 2.0) -> dict[str, Any]: ...


class Outcome(Protocol):
    """What the login reports to its owner."""

    def note(self, message: str) -> None: ...

    def succeeded(self) -> None: ...

    def failed(self, reason: str) -> None: ...


SpawnUp = Callable[[list[str]], ChildProcess]


@dataclass
class Attempt:
    """One run of `tailscale up`."""

    number: int
    started: float
    proc: ChildProcess
    secret: Path | None
    previous_error: str | None  # tailscale's last login error before this attempt began
    abort_reason: str | None = None


class Login:
    def __init__(
        self,
        cfg: Config,
        paths: Paths,
        binaries: Binaries,
        *,
        api: StatusAPI,
        spawn: SpawnUp,
        outcome: Outcome,
        clock: Callable[[], float],
        jitter: Callable[[float, float], float] = random.uniform,
        deadline: float | None = None,
    ) -> None:
        self.cfg = cfg
        self.paths = paths
        self.binaries = binaries
        self.api = api
        self.spawn = spawn
        self.outcome = outcome
        self.clock = clock
        self.jitter = jitter
        self.phase = Phase.STARTING
        self.deadline = deadline if deadline is not None else clock() + cfg.timeout
        self.backend_state: str | None = None
        self.reason: str | None = None
        self.failure: Failure | None = None  # the verdict, once FAILED
        self.attempts = 0
        self.running_since: float | None = None
        self.attempt: Attempt | None = None
        self.retry_at: float | None = None
        self.next_health_poll: float | None = None
        self.halted = False
        self.last_error: str | None = None  # tailscale's last login error, as last read

    # --- what the manager tells it ------------------------------------------------------

    def restarting(self, delay: float) -> None:
        """tailscaled will be started again in DELAY seconds: log in afresh after that."""
        self.phase = Phase.STARTING
        self.backend_state = None
        self.retry_at = None
        self.deadline = self.clock() + delay + self.cfg.timeout

    def api_ready(self) -> None:
        if self.phase is Phase.STARTING:
            self.phase = Phase.LOGIN
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
            self.phase = Phase.RUNNING
            self.running_since = self.clock()
            self.retry_at = None
            self.outcome.succeeded()
        elif backend in ("NeedsLogin", "Stopped") and self.phase is Phase.RUNNING:
            # Logged out (or taken down) behind our back: the phase still needs the tailnet.
            self.reason = f"tailscale went to {backend} while Running; logging in again"
            self.outcome.note(self.reason)
            self.deadline = self.clock() + self.cfg.timeout
            self.start_attempt()
        elif backend != "Running" and self.phase is Phase.RUNNING:
            self.outcome.note(f"tailscale left Running: now {backend}")

    def on_up_exit(self, proc: ChildProcess, code: int) -> bool:
        """An attempt ended; False if PROC is not the current attempt."""
        attempt = self.attempt
        if attempt is None or attempt.proc is not proc:
            return False
        self.attempt = None
        self.next_health_poll = None
        if attempt.secret:
            statedir.remove_file(attempt.secret)
        if self.halted or self.phase not in (Phase.LOGIN, Phase.BACKOFF):
            return True
        if code == 0 and attempt.abort_reason is None:
            # `tailscale up` returns once Running; the bus usually told us already.
            if self.backend_state != "Running":
                self.on_state("Running")
            return True
        self._judge(attempt, code, redact(bytes(proc.output).decode("utf-8", "replace")))
        return True

    def tick(self, now: float) -> None:
        if self.halted:
            return
        if self.retry_at is not None and now >= self.retry_at:
            self.retry_at = None
            self.start_attempt()
        if self.next_health_poll is not None and now >= self.next_health_poll:
            self.next_health_poll = now + HEALTH_POLL if self.attempt else None
            if not self._poll_health() and self.next_health_poll is not None:
                self.next_health_poll = now + 1.0  # tailscaled is stuck: ask less often
        if self.phase.logging_in and now >= self.deadline:
            self.fail(self.timeout_reason())

    def next_deadline(self) -> float | None:
        if self.halted:
            return None
        times = [self.retry_at, self.next_health_poll]
        if self.phase.logging_in:
            times.append(self.deadline)
        return min((t for t in times if t is not None), default=None)

    def tailscaled_lost(self) -> None:
        self.abort("tailscaled exited")
        self.retry_at = None
        self.backend_state = None

    def halt(self) -> None:
        """The manager is stopping: no more decisions (no retry, no verdict on an attempt)."""
        self.halted = True
        self.retry_at = None
        self.next_health_poll = None

    def stop(self) -> None:
        """The manager shuts down: end the attempt (a second at most) and remove its secret."""
        self.halt()
        self.phase = Phase.STOPPING
        if self.attempt is not None:
            self.abort("stopping")
            # `tailscale up` ends at once on SIGTERM; one that does not dies with the manager
            # (PR_SET_PDEATHSIG), so the shutdown never waits long for it.
            self.attempt.proc.wait(STOP_WAIT)
            self._clear_secret()

    def fail(self, reason: str, failure: Failure | None = None) -> None:
        self.abort(reason)
        self.retry_at = None
        self.phase = Phase.FAILED
        self.reason = reason
        self.failure = failure or diagnose(reason)
        self.outcome.note(f"login failed: {reason} ({self.failure.advice})")
        self.outcome.failed(reason)

    def give_up(self, reason: str) -> None:
        """Failed for a reason outside the login (tailscaled cannot be kept running)."""
        self.abort(reason)
        self.retry_at = None
        self.phase = Phase.FAILED
        self.reason = reason

    def abort(self, reason: str) -> None:
        attempt = self.attempt
        if attempt is None or attempt.abort_reason:
            return
        attempt.abort_reason = reason
        with contextlib.suppress(Exception):
            attempt.proc.signal(signal.SIGTERM)

    # --- attempts -------------------------------------------------------------------------

    def start_attempt(self) -> None:
        if self.attempt is not None:
            return
        self.phase = Phase.LOGIN
        self.attempts += 1
        remaining = self.deadline - self.clock()
        secret = self._write_secret()
        argv = build_up_argv(
            self.binaries, self.cfg, self.paths, secret, min(remaining, MAX_ATTEMPT_SECONDS)
        )
        previous = self.health_login_error()
        proc = self.spawn(argv)
        self.attempt = Attempt(self.attempts, self.clock(), proc, secret, previous)
        self.next_health_poll = self.clock() + HEALTH_POLL
        self.outcome.note(f"login attempt {self.attempts}: tailscale up (pid {proc.pid})")

    def _write_secret(self) -> Path | None:
        payload = secret_payload(self.cfg)
        if payload is None:
            return None
        return statedir.write_secret(self.paths, f"{os.getpid()}-{self.attempts}", payload)

    def _clear_secret(self) -> None:
        if self.attempt and self.attempt.secret:
            statedir.remove_file(self.attempt.secret)

    def health_login_error(self) -> str | None:
        """tailscale's own word on the last login, read fresh; the last known one when the
        LocalAPI does not answer at once (a frozen tailscaled must not stall the loop)."""
        try:
            self.last_error = login_error(summarize(self.api.status(API_TIMEOUT))["health"])
        except (LocalAPIError, ValueError):
            pass
        return self.last_error

    def _poll_health(self) -> bool:
        """While `tailscale up` waits, read tailscale's own verdict on the login. False when
        the LocalAPI did not answer."""
        attempt = self.attempt
        if attempt is None or attempt.abort_reason:
            return True
        try:
            health = summarize(self.api.status(API_TIMEOUT))["health"]
        except (LocalAPIError, ValueError):
            return False
        err = self.last_error = login_error(health)
        if not err:
            return True
        age = self.clock() - attempt.started
        if classify(err) == "permanent" or err != attempt.previous_error or age > 2.0:
            # tailscaled would retry by itself on its own schedule; we retry on ours (with
            # backoff and jitter, inside --timeout) so the attempt is visible and bounded.
            self.abort(err)
        return True

    def _judge(self, attempt: Attempt, code: int, output: str) -> None:
        """A failed attempt: fail for good, or retry after a backoff inside the deadline."""
        if attempt.abort_reason is None:
            # A command line tailscale refuses (Go's flag error comes before its usage text):
            # no retry can fix it, so it fails now, naming the setting.
            failure = diagnose_for(output, Program.UP, self.cfg)
            if failure.kind in (FailureClass.USAGE, FailureClass.LOCAL):
                self.outcome.note(f"login attempt {attempt.number} refused: {failure.line}")
                self.fail(failure.line, failure)
                return
        last_lines = output.strip().splitlines()
        text = attempt.abort_reason or (last_lines[-1] if last_lines else f"exit {code}")
        health_err = self.health_login_error()
        if health_err and (attempt.abort_reason is None or "timeout waiting" in text):
            text = health_err
        kind = classify(text)
        self.outcome.note(f"login attempt {attempt.number} failed ({kind}): {text}")
        if kind == "permanent":
            self.fail(text)
            return
        if text.startswith("timeout waiting"):
            text = self.timeout_reason()  # tailscale's CLI only says it timed out
        self.reason = text
        backoff = min(10.0, 2.0 ** (attempt.number - 1))
        delay = self.jitter(0.5 * backoff, backoff)  # runs started together spread out
        remaining = self.deadline - self.clock()
        if remaining < 1.0:
            self.fail(text)
            return
        delay = min(delay, remaining - 1.0)  # leave the last attempt at least a second
        self.phase = Phase.BACKOFF
        self.retry_at = self.clock() + delay
        self.outcome.note(f"retrying login in {delay:.1f}s")

    def timeout_reason(self) -> str:
        err = self.last_error  # at the deadline: no time left to ask tailscaled again
        state = self.backend_state or "no state"
        base = f"not Running after {self.cfg.timeout:g}s (state {state})"
        if err:
            return f"{base}; the last login error was: {err}"
        if self.reason and not self.reason.startswith("not Running"):
            return f"{base}; {self.reason}"
        return base
