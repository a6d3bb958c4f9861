"""What the fault tests (and the integration tests that watch a manager) use to drive and inspect
a manager: polling with a deadline, the control socket, processes by the test's marker, a tmpfs,
the other uid. Tests live in tests/faults/test_*.py; this module holds no test.

Every wait is a poll for a condition with a deadline, or a pidfd; figures worth reporting are
printed as `FIGURE name value` lines (run with -s to see them; docs/faults.md quotes them)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from spacetail.errors import OperationFailed
from spacetail.state import control
from tests import helpers
from tests.helpers import MARKER, SPACELIFT_UID, Userland, st, status, wait_gone
from tests.waiting import poll

OTHER_UID = 1984


def figure(name: str, value: float, unit: str = "s") -> None:
    print(f"\nFIGURE {name} {value:.3f}{unit}")


def alive(pid: int) -> bool:
    return not wait_gone(pid, 0)


def state_dir(env: dict[str, str]) -> Path:
    return Path(env["SPACETAIL_DIR"])


def sock_path(env: dict[str, str]) -> Path:
    return state_dir(env) / "control.sock"


def record_path(env: dict[str, str]) -> Path:
    return state_dir(env) / "manager.json"


def ask(env: dict[str, str], message: dict[str, Any] | None = None, timeout: float = 2.0
        ) -> dict[str, Any] | None:  # fmt: skip
    """One request on the control socket from this (root) process; None if nothing answers."""
    try:
        return control.ControlClient(sock_path(env)).request(message or {"cmd": "status"}, timeout)
    except (control.ControlUnavailable, OperationFailed, OSError):
        return None


def in_phase(env: dict[str, str], phase: str) -> dict[str, Any] | None:
    s = ask(env)
    return s if s is not None and s.get("phase") == phase else None


def _stat_fields(pid: int) -> list[bytes] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    return raw[raw.rfind(b")") + 2 :].split()


def marked(env: dict[str, str]) -> list[tuple[int, str]]:
    return helpers.processes_with_marker(env[MARKER])


def managers(env: dict[str, str]) -> list[int]:
    """Live managers of this test: the launcher, detached into a session of its own (the first
    child of the double fork leads that session for a moment and is not counted)."""
    mine = os.getsid(0)
    found = []
    procs = marked(env)
    ours = {pid for pid, _ in procs}
    for pid, cmd in procs:
        parts = cmd.split()
        if len(parts) < 2 or not parts[1].endswith("/bin/spacetail"):
            continue
        fields = _stat_fields(pid)
        if fields is None or fields[0] in (b"Z", b"X"):
            continue
        sid, parent = int(fields[3]), int(fields[1])
        # A child the manager forked is the same program until it execs: not a manager.
        if sid not in (mine, pid) and parent not in ours:
            found.append(pid)
    return found


def daemons(env: dict[str, str]) -> list[int]:
    return [pid for pid, cmd in marked(env) if "/tailscaled " in cmd + " "]


def children_of(parent: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None and len(fields) > 1 and int(fields[1]) == parent:
                found.append(int(entry))
    return found


def popen(userland: Userland, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    """A spacetail command as the Spacelift user, in the background, output discarded (a killed
    command's pipes would otherwise be held by whatever it forked)."""
    return subprocess.Popen(
        [str(userland.spacetail), *args], env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/", user=SPACELIFT_UID,
        group=SPACELIFT_UID, extra_groups=[],
    )  # fmt: skip


def chown_user(path: Path) -> None:
    os.lchown(path, SPACELIFT_UID, SPACELIFT_UID)


def logs(userland: Userland, env: dict[str, str]) -> str:
    return st(userland, env, "logs", "-n", "400").stdout


def assert_clean(userland: Userland, env: dict[str, str]) -> None:
    """Nothing runs, and neither the control socket nor the record is left."""
    poll(lambda: not marked(env), 10, f"every process gone: {marked(env)}")
    assert not sock_path(env).exists() and not sock_path(env).is_symlink()
    assert not record_path(env).exists()
    assert not (state_dir(env) / "tailscaled.sock").exists()


def up_ok(userland: Userland, env: dict[str, str], *extra: str) -> dict[str, Any]:
    result = st(userland, env, "up", "--no-watch", *extra)
    assert result.returncode == 0, result.stderr + logs(userland, env)
    return status(userland, env)


def down_ok(userland: Userland, env: dict[str, str]) -> str:
    result = st(userland, env, "down")
    assert result.returncode == 0, result.stderr
    return result.stderr


@contextlib.contextmanager
def stopped_after(userland: Userland, env: dict[str, str]) -> Iterator[None]:
    """Whatever the test does, end with `down` (the leak check then sees what down missed)."""
    try:
        yield
    finally:
        st(userland, env, "down")


@contextlib.contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A small tmpfs owned by the Spacelift user, like a workspace volume."""
    where.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755,uid={SPACELIFT_UID},"
         f"gid={SPACELIFT_UID}", "spacetail-test", str(where)], check=True,
    )  # fmt: skip
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def remount(where: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(where)], check=True)


def fill_disk(folder: Path) -> None:
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"x" * 4096)
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"x")
    finally:
        os.close(fd)


def as_attacker(script: str, cwd: Path) -> None:
    """Run a shell SCRIPT as the other user (uid 1984), in CWD."""
    result = subprocess.run(
        ["sh", "-ec", script], cwd=cwd, user=OTHER_UID, group=OTHER_UID, extra_groups=[],
        capture_output=True, text=True, timeout=20, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def host_pid(env: dict[str, str], ns_pid: int, word: str) -> int:
    """The host PID of this test's process that is NS_PID in its own namespace."""
    for pid, cmd in marked(env):
        try:
            text = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        nspid = next(
            (line.split()[1:] for line in text.splitlines() if line.startswith("NSpid:")), []
        )
        if len(nspid) > 1 and int(nspid[-1]) == ns_pid and word in cmd:
            return pid
    raise AssertionError(f"no process {ns_pid} ({word}) in another namespace: {marked(env)}")


def sleeper(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sleep", "300"], env=env, user=SPACELIFT_UID, group=SPACELIFT_UID,
                            extra_groups=[])  # fmt: skip


def concurrent_status(path: Path, clients: int) -> list[float]:
    """Seconds from each client's connect to its whole status reply, CLIENTS released at once
    (the fault test's bound and the benchmark's row measure the same thing)."""
    import threading

    gate = threading.Barrier(clients)
    times: list[float] = []

    def one() -> None:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(30)
            gate.wait()
            started = time.monotonic()
            sock.connect(os.fsencode(path))
            sock.sendall(b'{"cmd":"status"}\n')
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                assert chunk, "the manager closed without answering"
                data += chunk
            times.append(time.monotonic() - started)
            assert json.loads(data)["ok"] is True

    threads = [threading.Thread(target=one) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(times) == clients, f"{clients - len(times)} clients got no answer"
    return times
