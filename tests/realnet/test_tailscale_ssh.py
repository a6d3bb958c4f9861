"""Tailscale SSH into the run's node (`TS_EXTRA_ARGS=--ssh`, the old `up --ssh` for debugging a
run's container): an SSH client on the service node, with no credential of its own (the
tailnet's SSH policy lets the service's tag in), runs a command as the Spacelift user."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import urllib.request
from typing import Any

from tests.faultkit import assert_clean
from tests.helpers import SPACELIFT_UID, Userland, st, status


def as_user_with_group() -> dict[str, Any]:
    if os.getuid() != 0:
        return {}
    return {"user": SPACELIFT_UID, "group": SPACELIFT_UID, "extra_groups": [SPACELIFT_UID]}


def ssh_from_the_service_node(
    realnet: dict[str, Any],
    host: str,
    user: str,
    command: str,
) -> dict[str, Any]:
    body = json.dumps({"host": host, "user": user, "command": command, "timeout": 20}).encode()
    request = urllib.request.Request(
        f"http://{realnet['control_endpoint']}/ssh", data=body, method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as reply:
        answer: dict[str, Any] = json.loads(reply.read())
    return answer


def test_tailscale_ssh_into_the_runs_node(
    userland: Userland, rn_env: dict[str, str], realnet: dict[str, Any]
) -> None:
    env = {**rn_env, "TS_AUTHKEY": realnet["authkey_write"], "TS_EXTRA_ARGS": "--ssh"}
    # The user's own group as its only supplementary group, as a container started with
    # `--user spacelift` has it: tailscaled not running as root accepts an SSH login only as
    # itself, and its incubator's setgroups(2) must then be a no-op (with no group at all it
    # fails, "operation not permitted").
    up = subprocess.run(
        [str(userland.spacetail), "up", "--no-watch"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd="/",
        stdin=subprocess.DEVNULL,
        **as_user_with_group(),
    )
    try:
        assert up.returncode == 0, up.stderr
        address = next(ip for ip in status(userland, env)["tailscale_ips"] if "." in ip)
        user = pwd.getpwuid(SPACELIFT_UID).pw_name
        answer = ssh_from_the_service_node(realnet, address, user, "id -u; echo $0")
        assert answer["exit"] == 0 and answer["stdout"].split()[0] == str(SPACELIFT_UID), answer
    finally:
        assert st(userland, env, "down").returncode == 0
    assert_clean(userland, env)
