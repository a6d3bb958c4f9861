"""Least privilege enforced by the tailnet itself (the control server's packet filters from the
policy of terraform/least-privilege, in headscale's format): a node joined with the read key
reaches the read ports of the service node and not the write-only service (the packet is dropped
silently: short timeouts); a node joined with the write key reaches both. Then the same chosen
by spacetail from the Spacelift OIDC token's scope (TS_AUTHKEY_READ / TS_AUTHKEY_WRITE)."""

from __future__ import annotations

import subprocess
import time
from typing import Any

import pytest

from tests import realservers, spacelift_oidc
from tests.faultkit import assert_clean
from tests.helpers import Userland, st, status
from tests.realnet.conftest import nodes

DENIED_TIMEOUT = "3"


def fetch(env: dict[str, str], url: str) -> subprocess.CompletedProcess[str]:
    """curl through the node's HTTP proxy."""
    proxy = f"http://{env['TS_OUTBOUND_HTTP_PROXY_LISTEN']}"
    return subprocess.run(
        ["curl", "-sS", "--max-time", DENIED_TIMEOUT, "--proxy", proxy, url],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd="/",
        **realservers.as_user(),
    )


def reaches(userland: Userland, env: dict[str, str], target: str) -> bool:
    waited = st(userland, env, "wait", "--timeout", DENIED_TIMEOUT, "--target", target)
    return waited.returncode == 0


def check_scope(
    userland: Userland, env: dict[str, str], realnet: dict[str, Any], scope: str
) -> None:
    services = realnet["services"]
    up = st(userland, env, "up", "--no-watch", "--wait-for", services["postgres"])
    try:
        assert up.returncode == 0, up.stderr
        tag = realnet["tags"][scope]
        mine = {n["name"]: n for n in nodes(realnet)}[env["TS_HOSTNAME"]]
        assert mine["tags"] == [tag], mine
        assert reaches(userland, env, services["postgres"])
        write_only = f"http://{services['write_only']}/w"
        started = time.monotonic()
        got = fetch(env, write_only)
        if scope == "read":
            assert got.returncode != 0 and "write_only ok" not in got.stdout, got
            assert not reaches(userland, env, services["write_only"])
            assert time.monotonic() - started < 3 * float(DENIED_TIMEOUT) + 3
        else:
            assert got.stdout == "realnet write_only ok /w\n", got
            assert reaches(userland, env, services["write_only"])
    finally:
        assert st(userland, env, "down").returncode == 0
    assert_clean(userland, env)


@pytest.mark.parametrize("scope", ["read", "write"])
def test_the_tailnet_enforces_each_keys_tags(
    userland: Userland, rn_env: dict[str, str], realnet: dict[str, Any], scope: str
) -> None:
    env = {**rn_env, "TS_AUTHKEY": realnet[f"authkey_{scope}"]}
    check_scope(userland, env, realnet, scope)


@pytest.mark.parametrize("scope", ["read", "write"])
def test_the_spacelift_tokens_scope_picks_the_key(
    userland: Userland, rn_env: dict[str, str], realnet: dict[str, Any], scope: str
) -> None:
    """Both per-scope keys set, as a Spacelift context would carry them; the phase's token says
    which one joins."""
    env = {k: v for k, v in rn_env.items() if k != "TS_AUTHKEY"}
    env["TS_AUTHKEY_READ"] = realnet["authkey_read"]
    env["TS_AUTHKEY_WRITE"] = realnet["authkey_write"]
    env["SPACELIFT_OIDC_TOKEN"] = spacelift_oidc.token(scope, run_type="TRACKED")
    check_scope(userland, env, realnet, scope)
    # what status said while it ran is checked above through the node's tags; the scope too:
    assert status(userland, env)["running"] is False
