"""One run of tailscaled under the manager: started with its output in tailscaled.log, followed on
the LocalAPI's watch-ipn-bus stream by a thread that only reports, and stopped with SIGTERM then
SIGKILL. Decisions (restart or not, log in or not) are the manager's."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from spacetail.events import (
    ApiReady,
    ApiTimeout,
    BusClosed,
    ChildProcess,
    ErrMessage,
    Event,
    StateChanged,
)
from spacetail.failures import Failure, FailureClass, Program, Settings, diagnose_for, excerpt
from spacetail.identity import ProcessIdentity
from spacetail.log import redact
from spacetail.paths import Paths, open_regular
from spacetail.tailscale import STATES, LocalAPIError

API_START_TIMEOUT = 15.0
TERM_GRACE = 0.8
MAX_RESTARTS = 5


class WatchAPI(Protocol):
    def watch(self) -> Any: ...


Post = Callable[[Event], None]


@dataclass
class TailscaledRun:
    proc: ChildProcess
    ident: ProcessIdentity | None
    started: float
    log_offset: int = 0  # where this run's lines begin in tailscaled.log
    api_ready: bool = False
    exited: int | None = None

    def failure(self, log_path: Path, cfg: Settings) -> Failure:
        """This run's failure, read from its part of tailscaled.log."""
        try:
            with open(open_regular(log_path, os.O_RDONLY), "rb") as f:
                f.seek(self.log_offset)
                text = f.read(65536).decode("utf-8", "replace")
        except OSError:
            text = ""
        return diagnose_for(redact(text), Program.TAILSCALED, cfg)

    def why(self, log_path: Path, cfg: Settings, how: str) -> tuple[str, Failure]:
        """The reason a run that ended before Running gives, and its verdict: a command line or
        a local problem (a port in use) in tailscaled's own words, else how it ended."""
        failure = self.failure(log_path, cfg)
        if failure.kind in (FailureClass.USAGE, FailureClass.LOCAL):
            return f"{failure.line} (tailscaled {how})", failure
        line = f": {failure.line}" if failure.line != "(no output)" else ""
        return f"tailscaled {how} before the node was Running{line}", failure

    def lines(self, paths: Paths) -> str:
        """This run's meaningful lines of tailscaled.log, for the manager's log."""
        return "\n".join(excerpt(paths.tailscaled_log, self.log_offset))

    def stop(self, note: Callable[[str], None], grace: float = TERM_GRACE) -> None:
        """SIGTERM, then SIGKILL after GRACE seconds. The child's own handle refuses to signal a
        process it has already reaped, so a recycled PID is never hit."""
        if self.exited is not None:
            return
        with contextlib.suppress(Exception):
            self.proc.signal(signal.SIGTERM)
        if not self.proc.wait(grace):
            note(f"tailscaled did not stop within {grace}s of SIGTERM: SIGKILL")
            self.proc.signal(signal.SIGKILL)
            self.proc.wait(5.0)


@dataclass
class Supervision:
    """tailscaled's restarts: with backoff (0.5, 1, 2, 4, 8 s), MAX_RESTARTS at most."""

    restarts: int = 0
    last_exit: str | None = None
    restart_at: float | None = None

    def next_delay(self) -> float | None:
        if self.restarts >= MAX_RESTARTS:
            return None
        self.restarts += 1
        return min(8.0, 0.5 * 2.0 ** (self.restarts - 1))


def logout(spawn: Callable[[], ChildProcess], note: Callable[[str], None], timeout: float) -> None:
    """`tailscale logout`, bounded to TIMEOUT: the node leaves the tailnet at once."""
    try:
        proc = spawn()
    except OSError as exc:
        note(f"logout failed ({exc}); stopping anyway")
        return
    if not proc.wait(timeout):
        proc.signal(signal.SIGKILL)
        proc.wait(1.0)
        note(f"logout did not finish within {timeout}s; stopping anyway")
    elif proc.exit_code != 0:
        output = redact(bytes(proc.output).decode("utf-8", "replace").strip())
        note(f"logout failed ({output}); stopping anyway")
    else:
        note("logged out: the node is removed from the tailnet")


def exit_text(code: int) -> str:
    return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"


def start_watcher(
    api: WatchAPI,
    proc: ChildProcess,
    post: Post,
    clock: Callable[[], float],
    delay: float = 0.0,
) -> None:
    deadline = clock() + delay + API_START_TIMEOUT
    threading.Thread(
        target=_watch_bus,
        args=(api, proc, post, clock),
        kwargs={"deadline": deadline, "delay": delay},
        daemon=True,
    ).start()


def _watch_bus(
    api: WatchAPI,
    proc: ChildProcess,
    post: Post,
    clock: Callable[[], float],
    *,
    deadline: float,
    delay: float,
) -> None:
    """Thread: wait for the LocalAPI, then stream state changes to the main loop."""
    if delay:
        time.sleep(delay)  # a reconnection: never a tight loop against a closing stream
    connected = False
    while True:
        try:
            for note in api.watch():
                if not connected:
                    connected = True
                    post(ApiReady(proc))
                state = note.get("State")
                if state is not None:
                    post(StateChanged(proc, STATES.get(int(state), str(state))))
                if note.get("ErrMessage"):
                    post(ErrMessage(proc, str(note["ErrMessage"])))
            return
        except LocalAPIError as exc:
            if connected:
                post(BusClosed(proc, str(exc)))
                return
            if clock() > deadline or proc.exit_code is not None:
                post(ApiTimeout(proc, str(exc)))
                return
            # The socket appears ~0.3 s after start; a short poll notices it at once.
            time.sleep(0.01)
