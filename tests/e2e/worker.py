"""Stand-in for Spacelift's worker: PID 1 of one phase's container.

Started by ``tests/e2e/spacelift.py`` as
``unshare --pid --fork --mount --uts --propagation private --kill-child PYTHON -I worker.py``,
so it runs as root in fresh PID, mount and UTS namespaces (the network is the host's). It:

1. reads its configuration (one JSON object) from stdin;
2. builds the container's file system: a fresh /proc, a tmpfs on /mnt holding /mnt/workspace
   (the run's workspace, bind-mounted) and /mnt/userland (read-only), a container-local home,
   then a fresh tmpfs on /tmp; sets the container's hostname;
3. runs the phase shell, ``sh -c SCRIPT``, as uid/gid 1983 without extra groups, in
   /mnt/workspace/source, and forwards its stdout and stderr (one pipe) to its own stdout;
4. like the real worker, waits for EVERY process of the container to exit (as PID 1 it inherits
   orphans: it reaps with waitpid(-1) until ECHILD) before the phase is over, up to a hard
   deadline; at the deadline it lists what is still alive (from /proc), kills it and says so;
5. writes JSON lines on the report fd: ``started`` (its PID on the host, so the emulator can kill
   the container) and ``done`` (shell status, CLOCK_MONOTONIC times of the shell's exit, of the
   log pipe's end-of-file and of the moment the container was quiet, the leftovers).

Standard library only, every module imported before /tmp is replaced (the interpreter may live
there). Times are CLOCK_MONOTONIC, which no namespace here changes: the emulator compares them.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import selectors
import signal
import socket
import sys
import time
from typing import Any

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18

WORKSPACE = "/mnt/workspace"
USERLAND = "/mnt/userland"
HOME = "/mnt/home"

_libc = ctypes.CDLL(None, use_errno=True)


class SetupError(Exception):
    pass


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    def b(s: str | None) -> bytes | None:
        return None if s is None else s.encode()

    if _libc.mount(b(source), b(target), b(fstype), ctypes.c_ulong(flags), b(data) or None) != 0:
        err = ctypes.get_errno()
        raise SetupError(f"mount {source} on {target} ({fstype}): {os.strerror(err)}")


def bind(source: str, target: str, *, readonly: bool = False) -> None:
    mount(source, target, None, MS_BIND | MS_REC)
    if readonly:
        mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def build_container(cfg: dict[str, Any]) -> None:
    uid = int(cfg["uid"])
    workspace, userland = str(cfg["workspace"]), str(cfg["userland"])
    mount(None, "/", None, MS_REC | MS_PRIVATE)  # never propagate anything to the host
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    mount("tmpfs", "/mnt", "tmpfs", MS_NOSUID | MS_NODEV, "mode=755")
    os.mkdir(WORKSPACE, 0o755)
    bind(workspace, WORKSPACE)
    os.mkdir(USERLAND, 0o755)
    bind(userland, USERLAND, readonly=True)
    os.mkdir(HOME, 0o700)
    os.chown(HOME, uid, uid)
    # The userland and the workspace live under the host's /tmp: bound above, before /tmp goes.
    mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    if not os.path.isdir(userland):
        # The spacetail launcher names its site folder by its host path: keep that path valid
        # inside the container (read-only), as an image would have it at a fixed place.
        os.makedirs(userland, 0o755)
        bind(USERLAND, userland, readonly=True)
    socket.sethostname(str(cfg["hostname"]))


def exec_phase_shell(cfg: dict[str, Any], log_w: int) -> None:
    """In the forked child: become the Spacelift user and exec the phase shell. Never returns."""
    try:
        uid = int(cfg["uid"])
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(log_w, 1)
        os.dup2(log_w, 2)
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        os.chdir(str(cfg["cwd"]))
        env = {str(k): str(v) for k, v in cfg["env"].items()}
        os.execve("/bin/sh", ["sh", "-c", str(cfg["script"])], env)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.write(2, f"worker: cannot start the phase shell: {exc}\n".encode())
    os._exit(127)


def container_processes() -> list[str]:
    """Every process of the container but this one, as 'PID (comm) cmdline'."""
    found = []
    for entry in sorted(os.listdir("/proc"), key=lambda e: int(e) if e.isdigit() else 0):
        if not entry.isdigit() or entry == "1":
            continue
        try:
            with open(f"/proc/{entry}/comm") as f:
                comm = f.read().strip()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        found.append(f"{entry} ({comm}) {cmdline}")
    return found


class Worker:
    def __init__(self, cfg: dict[str, Any], report: int) -> None:
        self.cfg = cfg
        self.report = report
        self.deadline = time.monotonic() + float(cfg["deadline"])
        self.shell_pid = 0
        self.shell_status: int | None = None
        self.shell_exit_at: float | None = None
        self.log_eof_at: float | None = None
        self.quiet_at: float | None = None
        self.leftovers: list[str] = []
        self.no_children = False

    def emit(self, event: str, **fields: Any) -> None:
        line = json.dumps({"event": event, "t": time.monotonic(), **fields}) + "\n"
        os.write(self.report, line.encode())

    def reap(self, block: bool = False) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
            except ChildProcessError:
                self.no_children = True
                return
            except InterruptedError:
                continue
            if pid == 0:
                return
            if pid == self.shell_pid:
                self.shell_exit_at = time.monotonic()
                self.shell_status = os.waitstatus_to_exitcode(status)

    def forward(self, fd: int) -> bool:
        """Copy what the phase wrote to our stdout; False at end-of-file."""
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return True
        if not data:
            self.log_eof_at = time.monotonic()
            return False
        view = memoryview(data)
        while view:
            view = view[os.write(1, view) :]
        return True

    def run(self) -> None:
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        log_r, log_w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:
            exec_phase_shell(self.cfg, log_w)
        self.shell_pid = pid
        os.close(log_w)
        os.set_blocking(log_r, False)
        sel = selectors.DefaultSelector()
        sel.register(log_r, selectors.EVENT_READ, "log")
        sel.register(wake_r, selectors.EVENT_READ, "wake")
        log_open = True
        self.reap()
        while True:
            if self.no_children and not log_open:
                self.quiet_at = time.monotonic()
                break
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                self.kill_everything()
                if log_open:  # every writer is dead now: the rest of the log, then EOF
                    os.set_blocking(log_r, True)
                    while self.forward(log_r):
                        pass
                    os.close(log_r)
                break
            for key, _ in sel.select(remaining):
                if key.data == "log":
                    if not self.forward(log_r):
                        sel.unregister(log_r)
                        os.close(log_r)
                        log_open = False
                else:
                    with contextlib.suppress(BlockingIOError):
                        while os.read(wake_r, 512):
                            pass
            self.reap()
            if self.no_children and log_open:
                # Nothing can hold the pipe any more: drain what is left, then it is EOF.
                os.set_blocking(log_r, True)
                while self.forward(log_r):
                    pass
                sel.unregister(log_r)
                os.close(log_r)
                log_open = False
        self.emit(
            "done",
            status=self.shell_status,
            shell_exit_at=self.shell_exit_at,
            log_eof_at=self.log_eof_at,
            quiet_at=self.quiet_at,
            leftovers=self.leftovers,
        )

    def kill_everything(self) -> None:
        """The deadline: say what still runs, then kill it all (kill(-1) stays in our PID ns)."""
        self.leftovers = container_processes()
        if self.leftovers:
            msg = f"worker: deadline reached; killing {len(self.leftovers)} process(es):\n"
            msg += "".join(f"worker:   {p}\n" for p in self.leftovers)
            os.write(2, msg.encode())
        with contextlib.suppress(ProcessLookupError):
            os.kill(-1, signal.SIGKILL)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        self.reap(block=True)


def main() -> int:
    cfg = json.loads(sys.stdin.read())
    report = int(cfg["report_fd"])
    os.set_inheritable(report, False)
    try:
        # Read before /proc is replaced: the host's /proc still names us by our host PID.
        host_pid = int(os.readlink("/proc/self"))
    except (OSError, ValueError):
        host_pid = 0
    worker = Worker(cfg, report)
    worker.emit("started", host_pid=host_pid, pid=os.getpid())
    if os.getpid() != 1:
        worker.emit("error", message=f"the worker is pid {os.getpid()}, not 1: no PID namespace")
        return 2
    try:
        build_container(cfg)
    except (SetupError, OSError) as exc:
        worker.emit("error", message=f"cannot build the container: {exc}")
        return 2
    worker.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
