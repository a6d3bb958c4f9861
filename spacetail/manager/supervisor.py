"""tailscaled under the manager: each run started with its output in tailscaled.log and stopped
with SIGTERM then SIGKILL, either at once within the shutdown's budget (`stop`) or without
waiting, the loop sending the SIGKILL when its time comes (`retire`); the restarts with their
backoff (`Supervisor`); the logout. What follows a run while it runs is watch.py's; decisions
(restart or not, log in or not) are the manager's."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

from spacetail.config.loader import Config
from spacetail.log import open_append, redact
from spacetail.manager.events import ChildProcess
from spacetail.state.identity import ProcessIdentity, terminate
from spacetail.state.paths import Paths, open_regular, remove_file
from spacetail.tailnet.failures import (
    Failure,
    FailureClass,
    Program,
    Settings,
    diagnose_for,
    excerpt,
)
from spacetail.tailnet.tailscale import Binaries, tailscaled_argv

TERM_GRACE = 0.8
NEVER_RAN_GRACE = 0.1
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

    def why(self, log_path: Path, cfg: Settings, how: str) -> Failure:
        """The verdict on a run that ended before Running: a command line or a local problem
        (a port in use) in tailscaled's own words, else how it ended (its last word beside)."""
        failure = self.failure(log_path, cfg)
        if failure.kind in (FailureClass.USAGE, FailureClass.LOCAL):
            return replace(failure, line=f"{failure.line} (tailscaled {how})")
        line = f": {failure.line}" if failure.line != "(no output)" else ""
        reason = f"tailscaled {how} before the node was Running{line}"
        return Failure(FailureClass.TAILSCALED_EXITED, reason)

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


class Supervisor:
    """tailscaled under the manager: the run that is current, a retired one not yet gone (its
    ports and socket must be free before the next starts), and the restarts, with backoff
    (0.5, 1, 2, 4, 8 s) and MAX_RESTARTS at most. Mechanics only: whether to restart, to fail
    the login or to give up is the manager's decision."""

    def __init__(
        self,
        binaries: Binaries,
        cfg: Config,
        paths: Paths,
        spawn: Callable[[list[str], IO[bytes] | None], ChildProcess],
        clock: Callable[[], float],
    ) -> None:
        self.binaries = binaries
        self.cfg = cfg
        self.paths = paths
        self.spawn = spawn
        self.clock = clock
        self.current: TailscaledRun | None = None
        self.retiring: TailscaledRun | None = None  # SIGTERMed after a failure, not yet gone
        self.restarts = 0
        self.last_exit: str | None = None
        self.restart_at: float | None = None
        self.log_offset = 0  # where the current run's lines begin in tailscaled.log

    def start(self) -> list[str]:
        """Start a run (its output appended to tailscaled.log); its command line."""
        remove_file(self.paths.tailscaled_socket)
        self.paths.node_state_dir.mkdir(mode=0o700, exist_ok=True)
        argv = tailscaled_argv(self.binaries, self.cfg, self.paths)
        with open(open_append(self.paths.tailscaled_log), "ab") as log_file:
            self.log_offset = log_file.seek(0, os.SEEK_END)  # excerpts show this run's lines
            proc = self.spawn(argv, log_file)
        self.current = TailscaledRun(
            proc, ProcessIdentity.of(proc.pid), self.clock(), self.log_offset
        )
        return argv

    def is_current(self, proc: ChildProcess) -> bool:
        return self.current is not None and self.current.proc is proc

    def exited(self, proc: ChildProcess, code: int) -> TailscaledRun | None:
        """PROC ended: the current run, marked, or None (a retired run, or one replaced)."""
        if self.retiring is not None and self.retiring.proc is proc:
            self.retiring = None  # the restart it held back may go now
            return None
        if self.current is None or self.current.proc is not proc:
            return None
        self.current.exited = code
        self.last_exit = f"tailscaled {exit_text(code)}"
        return self.current

    def retire(self) -> None:
        """The current run is done with: SIGTERM now if it lives (SIGKILL when `overdue` says),
        never waiting for it."""
        run, self.current = self.current, None
        if run is not None and run.exited is None:
            run.retire(self.clock())
            if run.proc.exit_code is None:
                self.retiring = run

    def schedule_restart(self) -> float | None:
        """The delay before the next restart, now scheduled; None when none is left."""
        if self.restarts >= MAX_RESTARTS:
            return None
        self.restarts += 1
        delay = min(8.0, 0.5 * 2.0 ** (self.restarts - 1))
        self.restart_at = self.clock() + delay
        return delay

    def restart_due(self, now: float) -> bool:
        due = self.restart_at is not None and now >= self.restart_at and self.retiring is None
        if due:
            self.restart_at = None
        return due

    def next_deadline(self) -> float | None:
        kill_at = self.retiring.kill_at if self.retiring else None
        return min((t for t in (self.restart_at, kill_at) if t is not None), default=None)

    def overdue(self, now: float, note: Callable[[str], None]) -> None:
        if self.retiring is not None:
            self.retiring.overdue(now, note)

    def stop(
        self, note: Callable[[str], None], grace: Callable[[float], float], short: bool
    ) -> None:
        """The shutdown: both runs stopped, waiting at most GRACE(most) each. A node that never
        ran, and a retired run, have nothing to save: SHORT grace."""
        for run in (self.retiring, self.current):
            if run is not None:
                most = NEVER_RAN_GRACE if short or run is self.retiring else TERM_GRACE
                run.stop(note, grace=grace(most))


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
