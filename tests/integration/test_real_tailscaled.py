"""spacetail against the real tailscaled 1.96.4, run as the Spacelift user (uid 1983).

No control server is reachable here, so these tests cover everything short of Running: the flags
spacetail passes, the process tree, the proxies, the real login error, and clean shutdown."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from tests import helpers
from tests.helpers import Userland, free_port

pytestmark = pytest.mark.real


def _uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError("no Uid line")


def test_flags_accepted_runs_as_spacelift_user_and_down_stops_it(
    userland: Userland, real_env: dict[str, str]
) -> None:
    env = {
        **real_env,
        "TS_LOGIN_SERVER": f"http://127.0.0.1:{free_port()}",
        "SPACETAIL_TIMEOUT": "30",
    }
    up = helpers.run(userland, ["up", "--no-wait", "--no-watch"], env)
    assert up.returncode == 0, up.stderr
    try:
        status = json.loads(helpers.run(userland, ["status", "--json"], env).stdout)
        assert status["running"] is True
        assert status["backend_state"] in ("NeedsLogin", "Starting", "NoState", "Stopped")
        td = status["tailscaled_pid"]
        assert _uid_of(td) == helpers.SPACELIFT_UID
        assert _uid_of(status["manager_pid"]) == helpers.SPACELIFT_UID
        cmdline = Path(f"/proc/{td}/cmdline").read_bytes().split(b"\0")
        assert b"--tun=userspace-networking" in cmdline and b"--state=mem:" in cmdline
        environ = Path(f"/proc/{td}/environ").read_bytes().split(b"\0")
        assert not [v for v in environ if v.upper().startswith((b"HTTP_PROXY=", b"ALL_PROXY="))]
        # The real tailscaled accepted every flag: its proxies listen on the requested ports.
        for key in ("TS_SOCKS5_SERVER", "TS_OUTBOUND_HTTP_PROXY_LISTEN"):
            host, port = env[key].rsplit(":", 1)
            socket.create_connection((host, int(port)), timeout=5).close()
    finally:
        down = helpers.run(userland, ["down"], env)
    assert down.returncode == 0, down.stderr
    assert "stopped manager" in down.stderr
    assert not helpers.processes_with_marker(env[helpers.MARKER])
    state = Path(env["SPACETAIL_DIR"])
    assert not (state / "control.sock").exists() and not (state / "tailscaled.sock").exists()
    assert not (state / "manager.json").exists()


def test_unreachable_login_server_fails_with_the_real_error(
    userland: Userland, real_env: dict[str, str]
) -> None:
    port = free_port()
    env = {**real_env, "TS_EXTRA_ARGS": f"--login-server=http://127.0.0.1:{port}"}
    started = time.monotonic()
    up = helpers.run(userland, ["up", "--timeout", "4"], env, timeout=30)
    elapsed = time.monotonic() - started
    assert up.returncode == 1
    assert elapsed < 4 + 4, f"up took {elapsed:.1f}s for a 4s timeout"
    # tailscale's own words, from its Health, reach the user.
    assert f'fetch control key: Get "http://127.0.0.1:{port}/key' in up.stderr
    assert "connection refused" in up.stderr
    assert "what to do:" in up.stderr
    assert real_env["TS_AUTHKEY"] not in up.stderr + up.stdout
    assert not helpers.processes_with_marker(env[helpers.MARKER])
    state = Path(env["SPACETAIL_DIR"])
    leftovers = {p.name for p in state.iterdir()} - {
        "spacetail.lock", "manager.lock", "manager.log", "tailscaled.log", "tailscaled",
    }  # fmt: skip
    assert leftovers == set()


def test_auth_key_on_no_command_line_and_in_no_file(
    userland: Userland, real_env: dict[str, str], home: Path
) -> None:
    key = real_env["TS_AUTHKEY"]
    env = {
        **real_env,
        "TS_LOGIN_SERVER": f"http://127.0.0.1:{free_port()}",
        "SPACETAIL_TIMEOUT": "20",
    }
    up = helpers.run(userland, ["up", "--no-wait", "--no-watch"], env)
    assert up.returncode == 0, up.stderr
    try:
        # While tailscale up retries against the dead server, scan every command line.
        deadline = time.monotonic() + 3
        seen_up = False
        while time.monotonic() < deadline:
            lines = helpers.command_lines()
            assert not [c for c in lines if key in c]
            seen_up = seen_up or any(" up " in c and "--auth-key=file:" in c for c in lines)
            if seen_up:
                break
        assert seen_up, "never saw `tailscale up --auth-key=file:...` running"
    finally:
        assert helpers.run(userland, ["down"], env).returncode == 0
    for path in home.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert key.encode() not in path.read_bytes(), f"key found in {path}"


def test_tailscaled_refusing_a_flag_fails_up_with_its_words(
    userland: Userland, real_env: dict[str, str]
) -> None:
    env = {**real_env, "TS_TAILSCALED_EXTRA_ARGS": "--no-such-flag"}
    started = time.monotonic()
    up = helpers.run(userland, ["up", "--timeout", "20"], env)
    assert up.returncode == 1
    assert time.monotonic() - started < 10
    assert "tailscaled exited with status 2" in up.stderr
    assert "flag provided but not defined: -no-such-flag" in up.stderr
    assert not helpers.processes_with_marker(env[helpers.MARKER])
