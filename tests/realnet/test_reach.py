"""Reaching the service node across the real WireGuard path: real psql through a forward, real
ssh with `spacetail nc` as its ProxyCommand, curl through `up --env`'s proxy variables by the
MagicDNS name, and `resolve` and `nc` to a name of the split-DNS zone the control server hands
out (tailscaled's proxies cannot resolve those: tailscale#4677)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests import realservers
from tests.faultkit import assert_clean
from tests.helpers import Userland, free_port, st, status


@contextmanager
def joined(userland: Userland, env: dict[str, str], *args: str) -> Iterator[str]:
    """`up --no-watch ARGS`, its stdout; `down` after."""
    result = st(userland, env, "up", "--no-watch", *args)
    assert result.returncode == 0, result.stderr
    try:
        yield result.stdout
    finally:
        assert st(userland, env, "down").returncode == 0


def client(env: dict[str, str], argv: list[str], stdin: str | None = None) -> str:
    result = subprocess.run(
        argv,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd="/",
        input=stdin,
        **realservers.as_user(),
    )
    assert result.returncode == 0, f"{argv[0]}: {result.stdout}{result.stderr}"
    return str(result.stdout)


def test_psql_through_a_forward(
    userland: Userland, rn_env: dict[str, str], realnet: dict[str, Any]
) -> None:
    local = free_port()
    target = realnet["services"]["postgres"]
    with joined(userland, rn_env, "--forward", f"{local}={target}"):
        out = client(
            rn_env,
            [
                "psql",
                "-h",
                "127.0.0.1",
                "-p",
                str(local),
                "-U",
                realnet["postgres"]["user"],
                "-tAc",
                "select 6 * 7",
            ],
        )
        assert out.strip() == "42"
        shown = status(userland, rn_env)["forwards"][0]
        assert shown["target"] == target and shown["total"] == 1, shown
    assert_clean(userland, rn_env)


def test_ssh_through_spacetail_nc(
    userland: Userland, rn_env: dict[str, str], realnet: dict[str, Any]
) -> None:
    host, port = realnet["services"]["ssh"].rsplit(":", 1)
    ssh = [
        "ssh",
        "-F",
        "/dev/null",
        "-i",
        realnet["ssh"]["key"],
        "-p",
        port,
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "ProxyCommand=spacetail nc %h %p",
        f"{realnet['ssh']['user']}@{host}",
        "echo uid=$(id -u)",
    ]
    with joined(userland, rn_env):
        assert client(rn_env, ssh) == "uid=1983\n"
    assert_clean(userland, rn_env)


def test_curl_through_the_proxy_variables_by_magicdns_name(
    userland: Userland, rn_env: dict[str, str], realnet: dict[str, Any]
) -> None:
    with joined(userland, rn_env, "--env") as exports:
        env = dict(rn_env)
        for line in exports.splitlines():
            if line.startswith("export "):
                name, _, value = line[len("export ") :].partition("=")
                env[name] = value.strip("'\"")
        assert env.get("HTTPS_PROXY") and env.get("HTTP_PROXY"), exports
        url = f"http://{realnet['services']['http']}/hello"
        out = client(env, ["curl", "-fsS", "--max-time", "20", url])
        assert out == "realnet http ok /hello\n"
    assert_clean(userland, rn_env)


def test_resolve_and_nc_to_a_split_dns_name(
    userland: Userland, rn_env: dict[str, str], realnet: dict[str, Any]
) -> None:
    """With spacetail's defaults (TS_ACCEPT_DNS on: tailscaled takes the tailnet's DNS settings,
    without which its resolver answers SERVFAIL for a split-DNS name)."""
    (name, address), *_ = realnet["split_dns"].items()
    with joined(userland, rn_env):
        resolved = st(userland, rn_env, "resolve", name)
        assert resolved.returncode == 0, resolved.stderr
        assert resolved.stdout.split() == [address]
        request = "GET /split HTTP/1.0\r\nHost: x\r\n\r\n"
        out = client(
            {**rn_env, "PATH": rn_env["PATH"]},
            [str(userland.spacetail), "nc", name, "80"],
            stdin=request,
        )
        assert out.startswith("HTTP/1.0 200 OK"), out
        assert out.endswith("realnet http ok /split\n"), out
    assert_clean(userland, rn_env)
