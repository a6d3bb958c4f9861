"""What retrying cannot fix fails at once, in tailscale's words, naming the setting: a flag
tailscale refuses in TS_EXTRA_ARGS, a proxy port already taken. Exit 2 (the user's setting),
within 5 s, with this run's lines of tailscaled.log and none of its shutdown chatter."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from spacetail.tailnet.failures import FAIL_FAST_SECONDS
from tests import helpers
from tests.helpers import Userland


@pytest.fixture
def taken_port() -> Iterator[str]:
    with socket.create_server(("127.0.0.1", 0)) as holder:
        yield f"127.0.0.1:{holder.getsockname()[1]}"


def up(userland: Userland, env: dict[str, str]) -> tuple[int, str, str, float]:
    started = time.monotonic()
    result = helpers.run(userland, ["up", "--env", "--timeout", "30"], env)
    return result.returncode, result.stdout, result.stderr, time.monotonic() - started


@pytest.mark.parametrize(
    ("extra", "line"),
    [
        ("--bogus-flag", "TS_EXTRA_ARGS: flag provided but not defined: -bogus-flag"),
        ("--exit-node-allow-lan-access",
         "TS_EXTRA_ARGS: --exit-node-allow-lan-access can only be used with --exit-node"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("kind", ["fake", pytest.param("real", marks=pytest.mark.real)])
def test_a_refused_flag_fails_at_once_with_exit_2(
    request: pytest.FixtureRequest, userland: Userland, kind: str, extra: str, line: str
) -> None:
    env: dict[str, str] = dict(request.getfixturevalue(f"{kind}_env"))
    env["TS_EXTRA_ARGS"] = extra
    if kind == "real":
        env["TS_LOGIN_SERVER"] = f"http://127.0.0.1:{helpers.free_port()}"
    code, stdout, stderr, elapsed = up(userland, env)
    print(f"FIGURE fail_fast_{kind}_{extra.strip('-')} {elapsed:.2f}")
    assert code == 2, stderr
    assert elapsed < FAIL_FAST_SECONDS, stderr
    assert f"spacetail: error: {line}" in stderr
    assert "fix it there; a retry can't help" in stderr
    assert "Connect to Tailscale" not in stderr  # not the usage text
    assert stdout.endswith("false\n")
    assert not helpers.processes_with_marker(env[helpers.MARKER])


@pytest.mark.parametrize("kind", ["fake", pytest.param("real", marks=pytest.mark.real)])
def test_a_taken_proxy_port_names_its_setting_and_shows_this_run_only(
    request: pytest.FixtureRequest, userland: Userland, kind: str, taken_port: str
) -> None:
    env: dict[str, str] = dict(request.getfixturevalue(f"{kind}_env"))
    env["TS_SOCKS5_SERVER"] = taken_port
    first = up(userland, env)
    code, _stdout, stderr, elapsed = up(userland, env)  # the log now holds two runs
    assert first[0] == code == 2, stderr
    assert elapsed < FAIL_FAST_SECONDS, stderr
    assert (
        f"spacetail: error: TS_SOCKS5_SERVER: SOCKS5 listener: listen tcp {taken_port}: bind: "
        "address already in use" in stderr
    )
    assert "set TS_SOCKS5_SERVER to a free 127.0.0.1 port" in stderr
    log = Path(env["SPACETAIL_DIR"]) / "tailscaled.log"
    assert log.read_text().count("address already in use") == 2
    shown = stderr.split("this run's lines of", 1)[1]
    assert shown.count("address already in use") == 1  # this run's, not the first run's too
    for chatter in ("logger closing down", "flushing log", "Program starting"):
        assert chatter not in shown
    assert not helpers.processes_with_marker(env[helpers.MARKER])
