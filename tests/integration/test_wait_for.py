"""Ready means the service answers (issue 19 item 4): `up --wait-for HOST:PORT` and `wait --target
HOST:PORT` return once a TCP connection through the tailnet to each target succeeds, within the
one --timeout, and name each target that never answered with its last error. Real loopback
servers behind the fake tailnet's SOCKS5 proxy, and its split-DNS name (db.internal.example.com,
which only tailscale's resolver knows) for one of them."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests import helpers
from tests.helpers import Userland, st, status

LATER = 2.0  # the late target starts listening this long after `up` starts


@contextmanager
def listening() -> Iterator[int]:
    """A server that answers at once."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server.getsockname()[1]


@contextmanager
def bound_only(listen_after: float | None) -> Iterator[int]:
    """A port held but refusing connections (bound, not listening): for ever, or until it
    starts listening LISTEN_AFTER seconds from now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        timer = threading.Timer(listen_after or 0, sock.listen) if listen_after else None
        if timer:
            timer.start()
        try:
            yield sock.getsockname()[1]
        finally:
            if timer:
                timer.cancel()
                timer.join()


def test_up_returns_once_every_target_answers(userland: Userland, fake_env: dict[str, str]) -> None:
    started = time.monotonic()
    with listening() as now, bound_only(LATER) as later:
        targets = [
            "--wait-for",
            f"127.0.0.1:{now}",
            "--wait-for",
            f"db.internal.example.com:{later}",
        ]
        up = st(userland, fake_env, "up", "--no-watch", "--timeout", "20", *targets)
        elapsed = time.monotonic() - started
    try:
        assert up.returncode == 0, up.stderr
        assert elapsed >= LATER  # not before the late one listened
        assert f"targets answer: 127.0.0.1:{now}, db.internal.example.com:{later}" in up.stderr
        assert up.stdout == ""
    finally:
        st(userland, fake_env, "down")


def test_a_target_that_never_answers_fails_up_naming_it_and_leaves_nothing(
    userland: Userland, fake_env: dict[str, str]
) -> None:
    env = {**fake_env}
    with listening() as good, bound_only(None) as never:
        env["SPACETAIL_WAIT_FOR"] = f"127.0.0.1:{good} 127.0.0.1:{never}"  # the variable
        started = time.monotonic()
        up = st(userland, env, "up", "--env", "--no-watch", "--timeout", "3")
        elapsed = time.monotonic() - started
    assert up.returncode == 1, up.stderr
    print(f"FIGURE up_wait_for_silent_target_timeout_3s {elapsed:.2f}")
    assert 3.0 <= elapsed <= 3.0 + 1.0  # the one --timeout; then what it started is stopped
    assert up.stdout == "false\n"  # the hook's eval fails
    first = next(line for line in up.stderr.splitlines() if "spacetail: error:" in line)
    assert first == (
        f"spacetail: error: no TCP connection through the tailnet in time to 127.0.0.1:{never}: "
        "tailscale could not connect (no such host, refused, or unreachable)"
    ), up.stderr
    assert "spacetail doctor --target" in up.stderr
    # Running, or nothing left: no process, no socket, no record.
    assert not helpers.processes_with_marker(env[helpers.MARKER])
    state = Path(env["SPACETAIL_DIR"])
    assert not (state / "control.sock").exists() and not (state / "manager.json").exists()
    assert status(userland, env)["running"] is False


def test_wait_target_against_a_running_manager(
    userland: Userland, fake_env: dict[str, str]
) -> None:
    assert st(userland, fake_env, "up", "--no-watch").returncode == 0
    try:
        with listening() as good, bound_only(None) as never:
            ok = st(userland, fake_env, "wait", "--target", f"127.0.0.1:{good}")
            assert ok.returncode == 0, ok.stderr
            started = time.monotonic()
            bad = st(userland, fake_env, "wait", "--timeout", "2",
                     "--target", f"127.0.0.1:{good}", "--target", f"127.0.0.1:{never}")  # fmt: skip
            assert time.monotonic() - started <= 2.0 + 1.0
        assert bad.returncode == 1
        assert f"in time to 127.0.0.1:{never}: tailscale could not connect" in bad.stderr
        assert f"127.0.0.1:{good}:" not in bad.stderr  # it answered
        assert status(userland, fake_env)["connected"] is True  # a wait stops nothing
        usage = st(userland, fake_env, "wait", "--target", "db")
        assert usage.returncode == 2
        assert "error: --target: 'db' has no port; write HOST:PORT (a target" in usage.stderr
    finally:
        st(userland, fake_env, "down")
