"""One run of tailscaled under the manager: started with its output in tailscaled.log, and stopped
with SIGTERM then SIGKILL, either at once within the shutdown's budget (`stop`) or without
waiting, the loop sending the SIGKILL when its time comes (`retire`). What follows it while it
runs is watch.py's; decisions (restart or not, log in or not) are the manager's."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from spacetail.events import ChildProcess
from spacetail.failures import Failure, FailureClass, Program, Settings, diagnose_for, excerpt
from spacetail.identity import ProcessIdentity, terminate
from spacetail.log import redact
from spacetail.paths import Paths, open_regular

TERM_GRACE = 0.8
MAX_RESTARTS = 5


@dataclass
class TailscaledRun:
    proc: ChildProcess
    ident: ProcessIdentity | None
    started: float
    log_offset: int = 0  # where this run's lines begin in tailscaled.log
    api_ready: bool = False
    exited: int | None = None
    kill_at: float | None = None  # retired: SIGTERM sent, SIGKILL due then

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
        """SIGTERM, then SIGKILL after GRACE seconds, waiting: for the shutdown, whose budget
        bounds GRACE. The child's own handle refuses to signal a process it has already reaped,
        so a recycled PID is never hit."""
        if self.exited is None and self.proc.exit_code is None:
            terminate(self.proc, grace, note=note, name="tailscaled")

    def retire(self, now: float, grace: float = TERM_GRACE) -> None:
        """SIGTERM now; `overdue` says when the SIGKILL is due. Never waits."""
        if self.kill_at is None:
            self.kill_at = now + grace
            with contextlib.suppress(Exception):
                self.proc.signal(signal.SIGTERM)

    def overdue(self, now: float, note: Callable[[str], None]) -> None:
        if self.kill_at is not None and now >= self.kill_at and self.proc.exit_code is None:
            self.kill_at = None
            note("tailscaled did not stop within its grace after SIGTERM: SIGKILL")
            with contextlib.suppress(Exception):
                self.proc.signal(signal.SIGKILL)


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
