"""Shared test helpers: a world-readable install of spacetail for the Spacelift user (uid 1983),
environments that point at the fake or the real tailscale, and a process-leak check."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
FAKES = REPO / "tests" / "fakes" / "bin"
SPACELIFT_UID = 1983
MARKER = "SPACETAIL_TEST_ID"


def _runs_as(uid: int, python: str) -> bool:
    try:
        result = subprocess.run(
            [python, "-c", "import sys; assert sys.version_info >= (3, 11)"],
            user=uid,
            group=uid,
            extra_groups=[],
            capture_output=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def python_for_user(uid: int) -> str:
    """An interpreter (3.11+) that UID can execute: ours if it can, else the system's."""
    candidates = [os.path.realpath(sys.executable), "/usr/bin/python3", "/usr/local/bin/python3"]
    candidates += [shutil.which(n) or "" for n in ("python3.13", "python3.12", "python3.11")]
    if os.getuid() != 0:
        return sys.executable
    for candidate in candidates:
        if candidate and os.path.exists(candidate) and _runs_as(uid, candidate):
            return candidate
    raise RuntimeError(f"no Python 3.11+ that uid {uid} can run; install python3")


@dataclass(frozen=True)
class Userland:
    """spacetail, its dependencies and the fakes, copied where any user can read them."""

    root: Path
    python: str

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    @property
    def fakes(self) -> Path:
        return self.root / "fakes"

    @property
    def spacetail(self) -> Path:
        return self.bin / "spacetail"


def build_userland(base: Path) -> Userland:
    import filelock
    import platformdirs

    python = python_for_user(SPACELIFT_UID)
    root = Path(tempfile.mkdtemp(prefix="spacetail-userland-", dir=base))
    site = root / "site"
    site.mkdir()
    shutil.copytree(REPO / "spacetail", site / "spacetail",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    import sh

    for module in (filelock, platformdirs):
        shutil.copytree(Path(module.__file__ or "").parent, site / module.__name__,
                        ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    shutil.copy(sh.__file__, site / "sh.py")  # one module file, not a package
    (root / "bin").mkdir()
    launcher = root / "bin" / "spacetail"
    launcher.write_text(
        f"#!{python}\nimport sys\nsys.path.insert(0, {str(site)!r})\n"
        "from spacetail.cli import main\nraise SystemExit(main())\n"
    )
    os.symlink(python, root / "bin" / "python3")
    if FAKES.is_dir():
        shutil.copytree(FAKES, root / "fakes", ignore=shutil.ignore_patterns("__pycache__"))
    for dirpath, _dirs, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            path = Path(dirpath) / name
            if not path.is_symlink():
                os.chmod(path, 0o755 if os.access(path, os.X_OK) else 0o644)
    launcher.chmod(0o755)
    root.chmod(0o755)
    return Userland(root, python)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def base_env(userland: Userland, tailscale_dir: Path, home: Path, test_id: str) -> dict[str, str]:
    """A clean environment like a Spacelift phase's, without any of this machine's settings."""
    return {
        "PATH": os.pathsep.join(
            [str(tailscale_dir), str(userland.bin), "/usr/local/bin", "/usr/bin", "/bin"]
        ),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "SPACETAIL_DIR": str(home / "state"),
        "XDG_RUNTIME_DIR": str(home / "run"),
        "TS_SOCKS5_SERVER": f"127.0.0.1:{free_port()}",
        "TS_OUTBOUND_HTTP_PROXY_LISTEN": f"127.0.0.1:{free_port()}",
        MARKER: test_id,
    }


def run(
    userland: Userland,
    args: Sequence[str],
    env: Mapping[str, str],
    *,
    uid: int | None = SPACELIFT_UID,
    timeout: float = 60,
    stdin: int | None = subprocess.DEVNULL,
) -> subprocess.CompletedProcess[str]:
    """Run spacetail as UID (the Spacelift user by default); output captured through pipes, so a
    manager that kept them open would make this time out."""
    as_user = uid if uid is not None and os.getuid() == 0 else None
    return subprocess.run(
        [str(userland.spacetail), *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=stdin,
        check=False,
        cwd="/",
        user=as_user,
        group=as_user,
        extra_groups=[] if as_user is not None else None,
    )


def processes_with_marker(test_id: str, *, prefix: bool = False) -> list[tuple[int, str]]:
    """Live (not zombie) processes whose environment carries this test's marker (or, with
    PREFIX, any marker starting with TEST_ID)."""
    needle = f"{MARKER}={test_id}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                environ = f.read()
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        state = stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3]
        entries = environ.split(b"\0")
        mine = any(e.startswith(needle) for e in entries) if prefix else needle in entries
        if mine and state not in (b"Z", b"X") and pid != os.getpid():
            found.append((pid, cmdline))
    return found


def st(
    userland: Userland,
    env: Mapping[str, str],
    *args: str,
    timeout: float = 60,
    uid: int = SPACELIFT_UID,
) -> subprocess.CompletedProcess[str]:
    """`spacetail ARGS...` as the Spacelift user."""
    return run(userland, list(args), env, uid=uid, timeout=timeout)


def status(userland: Userland, env: Mapping[str, str]) -> dict[str, Any]:
    """`spacetail status --json`, parsed, after checking it against its contract (the schema in
    docs/ and spacetail's own Status type), whatever the state it describes."""
    from tests.status_contract import validate

    result = st(userland, env, "status", "--json")
    assert result.returncode == 0, result.stderr
    return validate(json.loads(result.stdout))


def wait_gone(pid: int, timeout: float) -> bool:
    """True once PID has exited, woken by the exit itself through a pidfd (no polling)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)


def command_lines() -> list[str]:
    """Every process's command line, as ps would show it."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                raw = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            out.append(raw.replace(b"\0", b" ").decode(errors="replace"))
    return out


def kill_all(leftovers: list[tuple[int, str]]) -> str:
    """SIGKILL what a test left behind; the listing, for the failure message."""
    for pid, _ in leftovers:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return "\n".join(f"  {pid}: {cmd}" for pid, cmd in leftovers)


def find_tool(name: str) -> str | None:
    """An executable beside this Python (a venv's bin), else on PATH."""
    # A venv's bin folder is not on PATH when its python is run directly.
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)
