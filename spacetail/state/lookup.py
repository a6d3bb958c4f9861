"""Looking up what runs here, from outside the manager: the status a live manager gives, or what
a stopped one left (its last stop, stale files), and the logs. The commands that only read
(`status`, `env`, `nc`, `resolve`, `logs`, `doctor`) start here, after the same folder checks as
every other command."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from spacetail.console import indent
from spacetail.errors import OperationFailed
from spacetail.state import statedir
from spacetail.state.paths import Paths
from spacetail.state.status import LastStop, Status


def status(paths: Paths) -> Status:
    """What runs here; works, and says so, when nothing runs."""
    exists = statedir.check(paths)
    p = statedir.probe(paths) if exists else statedir.NOTHING
    if p.status is not None:
        if not p.foreign:
            return p.status
        return p.status.replace(
            foreign=True,
            problem=(
                f"{p.describe_foreign()}: its proxies and PIDs are not this container's; "
                "`spacetail down` asks it to stop"
            ),
        )
    last, last_garbage = read_last_stop(paths) if exists else (None, False)
    problem = stale = None
    if p.lock_held:
        problem = "a manager holds the lock but does not answer"
    elif p.record is not None or p.record_garbage or last_garbage or paths.control_socket.exists():
        stale = p.describe_stale() + "; `spacetail down` or `up` cleans them"
    return Status(
        running=False, state_dir=str(paths.root), problem=problem, stale=stale, last_stop=last
    )


def read_last_stop(paths: Paths) -> tuple[LastStop | None, bool]:
    """(last stop, garbage): a file that is not one of ours is garbage, so stale."""
    last, garbage = statedir.read_record(paths.last_stop)
    if last is None:
        return None, garbage
    try:
        return LastStop.from_json(last), False
    except ValueError:
        return None, True


def ending(paths: Paths, status: Status) -> str | None:
    """None while the manager that gave STATUS still runs; else how it ended, in its last stop's
    words when it left them (a manager killed leaves none). For `up` and `wait`, between their
    tries of peers and targets, and before `up` says connected."""
    ident = status.manager
    if ident is not None and ident.alive() and not _zombie(ident.pid):
        return None
    pid = status.manager_pid
    last, _garbage = read_last_stop(paths)
    if last is not None and last.manager_pid == pid:
        why = f"it stopped at {last.at}: {last.reason}"
        if last.advice:
            why += f"\n  what to do: {last.advice}"
    else:
        from spacetail.log import tail

        why = "it left no word of why (killed?)"
        detail = tail(paths.manager_log, 3)
        if detail:
            why += f"; its log ends with:\n{indent(detail, 4)}"
    return f"the manager (pid {pid}) is not running any more: {why}"


def still_running(paths: Paths, status: Status) -> Callable[[], None]:
    """A check that raises OperationFailed with the manager's ending (`ending`) once the manager
    that gave STATUS has ended."""

    def check() -> None:
        why = ending(paths, status)
        if why is not None:
            raise OperationFailed(why)

    return check


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return True


def read_log(paths: Paths, *, tailscaled: bool, lines: int) -> tuple[Path, str]:
    """The log asked for and its last LINES lines (empty when there is none), read only from a
    state folder that passes the same checks as every other command's."""
    from spacetail.log import tail

    statedir.check(paths)
    path = paths.tailscaled_log if tailscaled else paths.manager_log
    return path, tail(path, lines, max_bytes=max(16384, lines * 400))
