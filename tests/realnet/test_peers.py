"""Readiness beyond Running against real peers: `--peer` (tailscale ping) and `--wait-for`, then
`wait --target` on a running manager; the offline peer (joined, then gone without a logout) fails
`up` within its --timeout, naming it."""

from __future__ import annotations

import time
from typing import Any

from tests.faultkit import assert_clean
from tests.helpers import Userland, st

SLACK = 3.5  # after --timeout: stopping what up started (tailscaled's logout) and the client


def test_peer_and_wait_for_against_the_service_node(
    userland: Userland, rn_env: dict[str, str], realnet: dict[str, Any]
) -> None:
    service = realnet["service_node"]["fqdn"]
    up = st(
        userland,
        rn_env,
        "up",
        "--no-watch",
        "--peer",
        service,
        "--wait-for",
        realnet["services"]["postgres"],
    )
    try:
        assert up.returncode == 0, up.stderr
        assert f"peers answer: {service}" in up.stderr, up.stderr
        waited = st(
            userland,
            rn_env,
            "wait",
            "--timeout",
            "20",
            "--target",
            realnet["services"]["http"],
            "--peer",
            realnet["service_node"]["name"],
        )
        assert waited.returncode == 0, waited.stderr
    finally:
        assert st(userland, rn_env, "down").returncode == 0
    assert_clean(userland, rn_env)


def test_an_offline_peer_fails_up_within_its_timeout_naming_it(
    userland: Userland, rn_env: dict[str, str], realnet: dict[str, Any]
) -> None:
    gone = realnet["offline_peer"]["fqdn"]
    started = time.monotonic()
    up = st(userland, rn_env, "up", "--no-watch", "--timeout", "8", "--peer", gone)
    elapsed = time.monotonic() - started
    print(f"FIGURE realnet_offline_peer_timeout_8s {elapsed:.2f}")
    assert up.returncode == 1, up.stderr
    assert elapsed <= 8 + SLACK, f"{elapsed:.1f} s"
    error = next(line for line in up.stderr.splitlines() if "spacetail: error:" in line)
    assert gone in error, up.stderr
    assert_clean(userland, rn_env)


def test_wait_target_that_never_answers_names_it(
    userland: Userland, rn_env: dict[str, str], realnet: dict[str, Any]
) -> None:
    """A port nothing listens on at the service node: no connection, named, within --timeout."""
    host = realnet["service_node"]["fqdn"]
    assert st(userland, rn_env, "up", "--no-watch").returncode == 0
    try:
        started = time.monotonic()
        waited = st(userland, rn_env, "wait", "--timeout", "4", "--target", f"{host}:9")
        elapsed = time.monotonic() - started
        assert waited.returncode == 1, waited.stderr
        assert f"{host}:9" in waited.stderr, waited.stderr
        assert elapsed <= 4 + 1.5, f"{elapsed:.1f} s"
    finally:
        assert st(userland, rn_env, "down").returncode == 0
    assert_clean(userland, rn_env)
