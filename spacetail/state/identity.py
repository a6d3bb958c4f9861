"""Who a process is (boot, PID namespace, container, PID, start time), so a PID read from a file is
never trusted on its own: in a fresh container the same number belongs to someone else."""

from __future__ import annotations

import os
import signal
import socket

from spacetail.errors import OperationFailed

TYPE_CHECKING = False  # typing costs `spacetail status` milliseconds; mypy still sees this block
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, Protocol

    class Stoppable(Protocol):
        """A child of ours, or a process proven to be the one a record names."""

        def signal(self, signum: int) -> object: ...

        def wait(self, timeout: float) -> bool: ...


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


_PROC_CHECKED: dict[int, str | None] = {}


def proc_mismatch() -> str | None:
    """Why /proc cannot tell this process's PIDs, or None when it can. In a PID namespace whose
    /proc was not mounted anew (`unshare --pid --fork` without --mount-proc), /proc numbers
    processes as the parent namespace does, while getpid, kill and pidfd_open use this one's:
    every identity read there would describe another process. /proc/self/status's NSpid lists
    our PID in each namespace from /proc's own down to ours: one entry, ours, when /proc is
    this namespace's. Asked once per process."""
    me = os.getpid()
    if me not in _PROC_CHECKED:
        _PROC_CHECKED[me] = _proc_mismatch(me)
    return _PROC_CHECKED[me]


def _proc_mismatch(me: int) -> str | None:
    nspid = next(
        (line.split()[1:] for line in _read("/proc/self/status").splitlines()
         if line.startswith("NSpid:")),
        None,
    )  # fmt: skip
    if nspid is None:  # a kernel before 4.1, or no /proc: /proc/self says whom it sees
        try:
            nspid = [os.readlink("/proc/self")]
        except OSError:
            return "/proc is not mounted, so spacetail cannot tell its processes apart"
    if nspid == [str(me)]:
        return None
    return (
        f"/proc belongs to another PID namespace (this process is pid {me}, /proc calls it "
        f"{nspid[0]}), so spacetail cannot tell its processes apart nor watch the shell"
    )


def boot_id() -> str:
    return _read("/proc/sys/kernel/random/boot_id").strip()


def pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def container_id() -> str:
    """The mount namespace plus the hostname: each Spacelift phase container has its own."""
    try:
        mnt = os.readlink("/proc/self/ns/mnt")
    except OSError:
        mnt = ""
    return f"{socket.gethostname()}/{mnt}"


def _stat_field(pid: int, index: int) -> int | None:
    """A numeric field of /proc/PID/stat, counted from the state (field 3 of proc(5)) as 0."""
    stat = _read(f"/proc/{pid}/stat")
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rfind(")") + 2 :].split() if stat else []
    try:
        return int(fields[index])
    except (IndexError, ValueError):
        return None


def start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (clock ticks after boot), or None if there is no such process
    (or no /proc that numbers PIDs as we do: then nothing is proven, and nothing signalled)."""
    if proc_mismatch() is not None:
        return None
    stat = _read(f"/proc/{pid}/stat")
    if stat[stat.rfind(")") + 2 : stat.rfind(")") + 3] in ("Z", "X"):
        return None  # a zombie has exited; only its parent's wait() is missing
    return _stat_field(pid, 19)


def parent_pid(pid: int) -> int | None:
    return _stat_field(pid, 1)


def session_id(pid: int) -> int | None:
    return _stat_field(pid, 3)


def command_name(pid: int) -> str:
    return _read(f"/proc/{pid}/comm").strip()


class ProcessIdentity:
    """Enough to tell one process from every other, across containers and reboots."""

    __slots__ = ("boot_id", "container", "pid", "pid_ns", "start_time")

    def __init__(
        self, pid: int, start_time: int, boot_id: str, pid_ns: str, container: str
    ) -> None:
        self.pid = pid
        self.start_time = start_time
        self.boot_id = boot_id
        self.pid_ns = pid_ns
        self.container = container

    def _fields(self) -> tuple[int, int, str, str, str]:
        return (self.pid, self.start_time, self.boot_id, self.pid_ns, self.container)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ProcessIdentity) and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return f"ProcessIdentity(pid={self.pid}, start_time={self.start_time}, {self.container})"

    @classmethod
    def of(cls, pid: int) -> ProcessIdentity | None:
        """The identity of a live process in our PID namespace, or None."""
        started = start_time(pid)
        if started is None:
            return None
        return cls(pid, started, boot_id(), pid_namespace(), container_id())

    @classmethod
    def from_json(cls, data: object) -> ProcessIdentity | None:
        if not isinstance(data, dict):
            return None
        try:
            ident = cls(
                pid=int(data["pid"]),
                start_time=int(data["start_time"]),
                boot_id=str(data["boot_id"]),
                pid_ns=str(data["pid_ns"]),
                container=str(data["container"]),
            )
        except (KeyError, TypeError, ValueError):
            return None
        return ident if ident.pid > 1 else None

    def to_json(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "start_time": self.start_time,
            "boot_id": self.boot_id,
            "pid_ns": self.pid_ns,
            "container": self.container,
        }

    def same_world(self) -> bool:
        """Written on this boot, in this PID namespace: only then does the PID mean anything."""
        return self.boot_id == boot_id() and self.pid_ns == pid_namespace()

    def alive(self) -> bool:
        """True only if this exact process still runs (not a later one with the same PID)."""
        return self.same_world() and start_time(self.pid) == self.start_time

    def why_not_alive(self) -> str:
        if self.boot_id != boot_id():
            return "written before a reboot"
        if self.pid_ns != pid_namespace():
            return f"written in another container ({self.container})"
        current = start_time(self.pid)
        if current is None:
            return f"pid {self.pid} has exited"
        if current != self.start_time:
            return f"pid {self.pid} now belongs to another process"
        return "alive"


class ProvenProcess:
    """A handle on a process whose identity was proven; signals go through a pidfd when the kernel
    has them, so the PID cannot be recycled between the proof and the signal."""

    def __init__(self, ident: ProcessIdentity) -> None:
        self.ident = ident
        self._pidfd: int | None = None
        if hasattr(os, "pidfd_open"):
            try:
                self._pidfd = os.pidfd_open(ident.pid)
            except OSError:
                self._pidfd = None

    @classmethod
    def open(cls, ident: ProcessIdentity) -> ProvenProcess | None:
        if not ident.alive():
            return None
        handle = cls(ident)
        # Proof after opening the pidfd: if the start time still matches, the fd is that process.
        if not ident.alive():
            handle.close()
            return None
        return handle

    def signal(self, signum: int) -> bool:
        try:
            if self._pidfd is not None:
                signal.pidfd_send_signal(self._pidfd, signum)
            elif self.ident.alive():
                os.kill(self.ident.pid, signum)
            else:
                return False
        except (ProcessLookupError, PermissionError):  # gone, or never ours to signal
            return False
        return True

    def exited(self) -> bool:
        return not self.ident.alive() or start_time(self.ident.pid) is None

    def wait(self, timeout: float) -> bool:
        """Wait until the process has exited; True if it did within TIMEOUT."""
        import select
        import time

        deadline = time.monotonic() + timeout
        if self._pidfd is not None:
            poller = select.poll()
            poller.register(self._pidfd, select.POLLIN)
            while True:
                remaining = deadline - time.monotonic()
                if poller.poll(max(0, int(remaining * 1000))):
                    return True
                if remaining <= 0:
                    return False
        while time.monotonic() < deadline:
            if self.exited():
                return True
            time.sleep(0.01)
        return self.exited()

    def close(self) -> None:
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None

    def __enter__(self) -> ProvenProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def terminate(
    proc: Stoppable,
    grace: float,
    *,
    note: Callable[[str], None] | None = None,
    name: str = "the process",
) -> bool:
    """SIGTERM, GRACE seconds, then SIGKILL: to a child of ours or a proven process only (both
    refuse a PID that may have been recycled). True when it is gone."""
    proc.signal(signal.SIGTERM)
    if proc.wait(grace):
        return True
    if note is not None:
        note(f"{name} did not stop within {grace:g}s of SIGTERM: SIGKILL")
    proc.signal(signal.SIGKILL)
    return proc.wait(5.0)


SHELLS = frozenset({"sh", "bash", "dash", "ash", "zsh", "ksh", "mksh", "fish", "busybox"})


def phase_shell(start: int | None = None) -> int:
    """The process whose exit ends the phase: the outermost shell among our ancestors in our
    session, else our parent.

    Spacelift runs a phase as one shell command that chains the hooks; a hook may call spacetail
    through a wrapper script, a subshell or another program, each a descendant of that shell. The
    worker (the container's PID 1) is not a shell, so the walk stops below it.
    """
    me = os.getpid()
    parent = parent_pid(me) if start is None else start
    if parent is None:
        return os.getppid()
    sid = session_id(me)
    found: int | None = None
    pid: int | None = parent
    while pid is not None and pid > 1:
        if session_id(pid) != sid:
            break
        if command_name(pid) in SHELLS:
            found = pid
        pid = parent_pid(pid)
    return found if found is not None else parent


def refuse_foreign_proc() -> None:
    """A manager must prove its processes and watch the shell through /proc: where /proc numbers
    another PID namespace's processes, start nothing rather than watch or signal a stranger."""
    problem = proc_mismatch()
    if problem is not None:
        raise OperationFailed(
            f"{problem}; mount a /proc of this namespace (unshare --pid --fork --mount-proc, as "
            "containers do) and run spacetail there"
        )
