"""Starting the manager in the background (PEP 3143's checklist: double fork with setsid between,
no inherited descriptors, a known working folder and umask) and in the foreground with systemd
socket activation."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import sys
import time
import traceback
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path

from spacetail.config.credentials import SECRET_VARIABLES

SD_LISTEN_FDS_START = 3


def close_fds(keep: Sequence[int]) -> None:
    """Close every descriptor above 2 except KEEP (the caller's pipes must reach end-of-file)."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(3, 1024))
    for fd in fds:
        if fd > 2 and fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)


def scrub_environ(names: Collection[str]) -> bool:
    """Overwrite, in this process' memory, the values of the variables NAMES in the environment
    block the kernel set up at exec: /proc/PID/environ shows that block for the process' whole
    life, whatever os.environ or setenv() do later. A forked manager would otherwise show the
    key of `up`'s environment to anyone who may read its /proc. True when done (or nothing to
    do); False where the block cannot be found."""
    try:
        with open("/proc/self/stat", "rb") as f:
            raw = f.read()
        fields = raw[raw.rfind(b")") + 2 :].split()
        start, end = int(fields[47]), int(fields[48])  # env_start, env_end: fields 50 and 51
    except (OSError, IndexError, ValueError):
        return False
    if not 0 < start < end:
        return False
    import ctypes

    block = ctypes.string_at(start, end - start)
    wanted = {os.fsencode(n) + b"=" for n in names}
    offset = 0
    for entry in block.split(b"\0"):
        name = entry[: entry.find(b"=") + 1]
        if name and name in wanted and len(entry) > len(name):
            ctypes.memset(start + offset + len(name), 0, len(entry) - len(name))
        offset += len(entry) + 1
    return True


def _redirect_stdio(log_path: Path | None) -> None:
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    out = devnull
    if log_path is not None:
        from spacetail.log import open_append  # a FIFO planted there must not block the manager

        with contextlib.suppress(OSError):
            out = open_append(log_path)
    os.dup2(out, 1)
    os.dup2(out, 2)
    for fd in {devnull, out}:
        if fd > 2:
            os.close(fd)


def spawn(
    run: Callable[[int], int],
    keep: Sequence[int],
    log_path: Path | None,
    ready_timeout: float,
    scrub: Collection[str] = SECRET_VARIABLES,
) -> tuple[int | None, str]:
    """Run RUN(ready_fd) in a detached grandchild; return (its pid, its readiness line).

    The grandchild writes one line on ready_fd ("READY <pid>"); an empty line means it died
    before that (end-of-file on the pipe).
    """
    sys.stdout.flush()
    sys.stderr.flush()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # first child: a new session, then fork again so we can never get a terminal
        code = 1
        try:
            os.close(r)
            os.setsid()
            if os.fork() != 0:
                os._exit(0)
            # First of all: the manager's environment must hold no credential (tailscale up
            # gets the secret from a 0600 file; tailscaled gets none).
            scrubbed = scrub_environ(scrub)
            os.chdir("/")
            os.umask(0o077)
            _redirect_stdio(log_path)
            if not scrubbed:
                print("cannot clear the credentials from /proc/self/environ", file=sys.stderr)
            close_fds([*keep, w])
            for fd in keep:
                os.set_inheritable(fd, False)
            code = run(w)
        except BaseException:
            with contextlib.suppress(Exception):
                traceback.print_exc()
        finally:
            os._exit(code)
    os.close(w)
    os.waitpid(pid, 0)
    line = _read_line(r, ready_timeout)
    os.close(r)
    parts = line.split()
    manager_pid = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
    return manager_pid, line


def _read_line(fd: int, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    data = b""
    while b"\n" not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data.decode("utf-8", "replace").strip()


def signal_ready(fd: int | None, line: str) -> None:
    """One line on the readiness pipe (s6-style), then close it."""
    if fd is None:
        return
    with contextlib.suppress(OSError):
        os.write(fd, f"{line}\n".encode())
        os.close(fd)


def activated_listener(env: Mapping[str, str]) -> socket.socket | None:
    """The listening socket systemd passed us (LISTEN_FDS/LISTEN_PID), if any."""
    if env.get("LISTEN_PID", "") != str(os.getpid()):
        return None
    try:
        count = int(env.get("LISTEN_FDS", "0"))
    except ValueError:
        return None
    if count < 1:
        return None
    sock = socket.socket(fileno=SD_LISTEN_FDS_START)
    sock.set_inheritable(False)
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    return sock
