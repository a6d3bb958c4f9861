"""failures.py against the live real 1.96.4 binaries (uid 1983, userspace mode), so the captured
texts in tests/fakes/reference/ cannot silently drift from what tailscale prints."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from spacetail.tailnet import failures
from spacetail.tailnet.failures import FailureClass, Program
from tests import helpers
from tests.helpers import free_port

pytestmark = pytest.mark.real


def _as_user(
    argv: list[str], env: dict[str, str], log: Path | None = None
) -> subprocess.Popen[str]:
    out = log.open("a") if log else subprocess.PIPE
    try:
        return subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT if log else subprocess.PIPE,
            text=True, user=helpers.SPACELIFT_UID, group=helpers.SPACELIFT_UID, extra_groups=[],
        )  # fmt: skip
    finally:
        if log and not isinstance(out, int):
            out.close()


class Daemon:
    def __init__(self, real: Path, home: Path, test_id: str) -> None:
        self.real, self.home = real, home
        self.env = {"PATH": "/usr/bin:/bin", "HOME": str(home), helpers.MARKER: test_id}
        self.log = home / "tailscaled.log"
        self.socket = home / "ts.sock"
        self.socks5 = f"127.0.0.1:{free_port()}"

    def argv(self, socket: Path, socks5: str, *extra: str) -> list[str]:
        return [str(self.real / "tailscaled"), "--tun=userspace-networking", f"--socket={socket}",
                f"--statedir={self.home / 'st'}", "--state=mem:", f"--socks5-server={socks5}",
                f"--outbound-http-proxy-listen=127.0.0.1:{free_port()}", "--no-logs-no-support",
                *extra]  # fmt: skip

    def offset(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def up(self, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
        started = time.monotonic()
        done = subprocess.run(
            [str(self.real / "tailscale"), f"--socket={self.socket}", "up", *args],
            env=self.env, capture_output=True, text=True, timeout=30, check=False,
            user=helpers.SPACELIFT_UID, group=helpers.SPACELIFT_UID, extra_groups=[],
        )  # fmt: skip
        return done, time.monotonic() - started


@pytest.fixture
def daemon(real_tailscale: Path, home: Path, test_id: str) -> Iterator[Daemon]:
    d = Daemon(real_tailscale, home, test_id)
    proc = _as_user(d.argv(d.socket, d.socks5), d.env, d.log)
    try:
        deadline = time.monotonic() + 10
        while not d.socket.exists():
            assert proc.poll() is None, d.log.read_text()
            assert time.monotonic() < deadline, "tailscaled's socket did not appear"
            time.sleep(0.02)  # polling a file with a deadline, not synchronizing
        yield d
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--bogus-flag"], "flag provided but not defined: -bogus-flag"),
        (["--exit-node-allow-lan-access"],
         "--exit-node-allow-lan-access can only be used with --exit-node"),
    ],
)  # fmt: skip
def test_usage_errors_of_the_real_cli(daemon: Daemon, args: list[str], line: str) -> None:
    done, elapsed = daemon.up(*args)
    assert done.returncode != 0
    f = failures.diagnose(done.stdout + done.stderr, Program.UP, extra_args=args)
    assert (f.line, f.kind, f.setting, f.exit_code, f.retryable) == (
        line,
        FailureClass.USAGE,
        "TS_EXTRA_ARGS",
        2,
        False,
    )
    print(f"FIGURE real_up_usage_error_seconds {elapsed:.3f}")
    assert elapsed < failures.FAIL_FAST_SECONDS


def test_port_in_use_and_the_excerpt_of_this_run_only(daemon: Daemon) -> None:
    """A second tailscaled on the first one's SOCKS5 port, logging to the same file: its run's
    excerpt shows the port line and none of the first run's lines."""
    offset = daemon.offset()
    argv = daemon.argv(daemon.home / "ts2.sock", daemon.socks5)
    second = _as_user(argv, daemon.env, daemon.log)
    try:
        assert second.wait(15) == 1
    finally:
        second.kill()
        second.wait()
    lines = failures.excerpt(daemon.log, offset)
    text = "\n".join(lines)
    assert f"SOCKS5 listener: listen tcp {daemon.socks5}: bind: address already in use" in text
    assert "Program starting" not in text and "logger closing down" not in text
    f = failures.diagnose(daemon.log.read_bytes()[offset:].decode(), Program.TAILSCALED,
                          socks5=daemon.socks5, http_proxy="127.0.0.1:1")  # fmt: skip
    assert (f.kind, f.setting, f.exit_code) == (FailureClass.LOCAL, "TS_SOCKS5_SERVER", 2)
    assert str(daemon.socket) in daemon.log.read_text()[:offset]  # the first run's lines


def test_unbindable_socket_of_the_real_daemon(
    real_tailscale: Path, home: Path, test_id: str
) -> None:
    d = Daemon(real_tailscale, home, test_id)
    (home / "a-file").write_text("")  # tailscaled creates a missing folder, not this
    proc = _as_user(d.argv(home / "a-file" / "ts.sock", d.socks5), d.env, d.log)
    try:
        assert proc.wait(15) == 1
    finally:
        proc.kill()
        proc.wait()
    f = failures.diagnose(d.log.read_text(), Program.TAILSCALED)
    assert f.kind is FailureClass.LOCAL and not f.retryable
    assert f.line.startswith("safesocket.Listen: listen unix "), f.line
    assert "SPACETAIL_DIR" in f.advice
    assert failures.excerpt(d.log, 0)[-1].endswith(f.line)
