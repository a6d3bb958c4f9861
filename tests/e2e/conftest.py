"""Fixtures of the emulated Spacelift runs: container support, a run per test, and a service on
this machine that the phases reach by a tailnet name through spacetail's proxy."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests import helpers
from tests.e2e.spacelift import PhaseResult, SpaceliftRun, container_support

# The fake tailscaled's proxies send every name under its MagicDNS suffix to 127.0.0.1.
TAILNET_SUFFIX = "tail-fake.ts.net"


@pytest.fixture(scope="session")
def containers() -> None:
    reason = container_support()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def tailnet_env(userland: helpers.Userland, test_id: str) -> dict[str, str]:
    """What the stack's environment (or an attached context) would give spacetail."""
    if not (userland.fakes / "tailscaled").exists():
        pytest.skip("the fake tailscale is not in tests/fakes/bin")
    return {
        "TS_AUTHKEY": f"tskey-auth-ok-{test_id}",
        "FAKE_TAILSCALE_LOGIN_DELAY": "0.2",
        "TS_SOCKS5_SERVER": f"127.0.0.1:{helpers.free_port()}",
        "TS_OUTBOUND_HTTP_PROXY_LISTEN": f"127.0.0.1:{helpers.free_port()}",
        helpers.MARKER: test_id,
    }


@pytest.fixture
def spacelift_run(
    containers: None, home: Path, userland: helpers.Userland, tailnet_env: dict[str, str]
) -> SpaceliftRun:
    """A run whose workspace is the test's home (a host folder owned by uid 1983)."""
    return SpaceliftRun(home, userland, tailnet_env, deadline=15.0)


@dataclass(frozen=True)
class Service:
    """An HTTP service on 127.0.0.1, outside every container, named as a tailnet host."""

    port: int
    body: str

    @property
    def url(self) -> str:
        return f"http://svc.{TAILNET_SUFFIX}:{self.port}/"


@pytest.fixture
def tailnet_service() -> Iterator[Service]:
    body = f"hello from the tailnet {secrets.token_hex(8)}"

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Service(int(server.server_address[1]), body)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# --- the figures: every phase's timings, after the tests -------------------------------------

_RESULTS: list[tuple[str, PhaseResult]] = []


@pytest.fixture(autouse=True)
def _collect_phases(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    run = request.node.funcargs.get("spacelift_run")
    if isinstance(run, SpaceliftRun):
        _RESULTS.extend((request.node.name, result) for result in run.results)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _RESULTS:
        return

    def fmt(value: float | None) -> str:
        # EOF often comes a few microseconds before the worker reaps the shell: show 0.000.
        return "-" if value is None else f"{max(0.0, value):.3f}s"

    terminalreporter.section("emulated Spacelift phases (times after the phase shell exited)")
    width = max(len(test) for test, _ in _RESULTS) - len("test_")
    for test, r in _RESULTS:
        terminalreporter.write_line(
            f"{test.removeprefix('test_'):{width}} {r.name:10} status {r.status!s:>4}"
            f"  quiet {fmt(r.quiet_after):>7}  log EOF {fmt(r.log_eof_after):>7}"
            f"  leftovers {len(r.leftovers)}"
            f"{'  KILLED' if r.killed else ''}  ({r.duration:.1f}s)"
        )
