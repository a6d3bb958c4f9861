"""Joining the real tailnet and leaving it: `up` with a real pre-auth key until Running, the real
addresses and MagicDNS name in `status --json`, and the ephemeral node gone from the control
server within 5 s of `down`, or of the exit of the shell that ran `up`."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

from tests.helpers import Userland, st, status, wait_gone
from tests.realnet.conftest import nodes

GONE_WITHIN = 5.0


def node_names(realnet: dict[str, Any]) -> set[str]:
    return {n["name"] for n in nodes(realnet)}


def wait_node_gone(realnet: dict[str, Any], name: str, within: float) -> float:
    """Seconds until the control server no longer knows NAME; fails after WITHIN."""
    started = time.monotonic()
    while name in node_names(realnet):
        took = time.monotonic() - started
        assert took < within, f"{name} still known to the control server after {took:.1f} s"
        time.sleep(0.1)
    return time.monotonic() - started


def test_up_reaches_running_with_real_addresses_and_down_removes_the_node(
    userland: Userland, rn_env: dict[str, str], realnet: dict[str, Any]
) -> None:
    started = time.monotonic()
    up = st(userland, rn_env, "up")
    try:
        assert up.returncode == 0, up.stderr
        print(f"FIGURE realnet_up_until_running {time.monotonic() - started:.2f}")
        now = status(userland, rn_env)
        assert now["connected"] is True and now["backend_state"] == "Running", now
        ips = now["tailscale_ips"]
        assert any(ip.startswith("100.") for ip in ips), ips
        assert any(ip.startswith("fd7a:115c:a1e0:") for ip in ips), ips
        hostname = rn_env["TS_HOSTNAME"]
        assert now["dns_name"] == f"{hostname}.{realnet['magic_dns_suffix']}", now
        known = {n["name"]: n for n in nodes(realnet)}
        assert known[hostname]["online"] is True, known
    finally:
        down = st(userland, rn_env, "down")
    assert down.returncode == 0, down.stderr
    took = wait_node_gone(realnet, rn_env["TS_HOSTNAME"], GONE_WITHIN)
    print(f"FIGURE realnet_node_gone_after_down {took:.2f}")


def test_the_shells_exit_without_down_removes_the_node(
    userland: Userland, rn_env: dict[str, str], realnet: dict[str, Any], home: Path
) -> None:
    shell = subprocess.Popen(["sleep", "120"], env=rn_env)
    try:
        up = st(userland, rn_env, "up", "--watch-pid", str(shell.pid))
        assert up.returncode == 0, up.stderr
        manager = status(userland, rn_env)["manager_pid"]
        assert isinstance(manager, int)
        assert rn_env["TS_HOSTNAME"] in node_names(realnet)
        shell.kill()
        shell.wait()
        exited = time.monotonic()
        assert wait_gone(manager, GONE_WITHIN)
        remaining = GONE_WITHIN - (time.monotonic() - exited)
        wait_node_gone(realnet, rn_env["TS_HOSTNAME"], remaining)
        print(f"FIGURE realnet_node_gone_after_shell_exit {time.monotonic() - exited:.2f}")
    finally:
        shell.kill()
        shell.wait()
        st(userland, rn_env, "down")
