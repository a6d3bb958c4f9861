"""The state folder's JSON records (manager.json, last-stop.json) deeply nested: every command
takes such a record for what it is, an unreadable one, so stale, and goes on; none ends in a
RecursionError traceback that only a person with a shell could get past."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.faultkit import assert_clean, chown_user, down_ok, state_dir, stopped_after
from tests.helpers import Userland, st, status

# 200,000 levels as the attack had it (over the 64 KiB bound on a record's size), and 50,000
# (under it: the depth bound alone must catch it).
DEPTHS = [200_000, 50_000]


def plant(env: dict[str, str], name: str, depth: int) -> Path:
    state = state_dir(env)
    if not state.exists():
        state.mkdir(mode=0o700)
        chown_user(state)
    path = state / name
    path.write_bytes(b"[" * depth)
    chown_user(path)
    return path


def no_traceback(result: object) -> str:
    text = str(getattr(result, "stderr", ""))
    assert "Traceback" not in text and "RecursionError" not in text, text
    return text


@pytest.mark.parametrize("depth", DEPTHS)
def test_a_nested_manager_json_is_stale_for_every_command(
    userland: Userland, fake_env: dict[str, str], depth: int
) -> None:
    """(Before: status, wait, down and up each ended in a RecursionError traceback.)"""
    record = plant(fake_env, "manager.json", depth)
    shown = status(userland, fake_env)
    assert shown["running"] is False and shown["stale"], shown
    wait = st(userland, fake_env, "wait", "--timeout", "2")
    assert wait.returncode == 1, no_traceback(wait)
    assert "no manager runs" in wait.stderr and "stale" in wait.stderr, wait.stderr
    with stopped_after(userland, fake_env):
        down = down_ok(userland, fake_env)
        assert "removed stale" in down and "manager.json" in down, down
        assert not record.exists()
        plant(fake_env, "manager.json", depth)
        up = st(userland, fake_env, "up", "--no-watch")
        assert up.returncode == 0, no_traceback(up)
        assert "removed stale" in up.stderr, up.stderr
        assert json.loads(record.read_text())["manager"]["pid"] > 1  # its own, written anew
    assert_clean(userland, fake_env)


@pytest.mark.parametrize("depth", DEPTHS)
def test_a_nested_last_stop_json_is_stale_for_every_command(
    userland: Userland, fake_env: dict[str, str], depth: int
) -> None:
    """(Before: status, wait and doctor each ended in a RecursionError traceback.)"""
    last = plant(fake_env, "last-stop.json", depth)
    shown = status(userland, fake_env)
    assert shown["running"] is False and shown["stale"], shown
    assert shown["last_stop"] is None and shown["last_failure"] is None
    text = st(userland, fake_env, "status")
    assert text.returncode == 0, no_traceback(text)
    assert text.stdout.startswith("Not running"), text.stdout
    wait = st(userland, fake_env, "wait", "--timeout", "2")
    assert wait.returncode == 1, no_traceback(wait)
    assert "no manager runs" in wait.stderr, wait.stderr
    doctor = st(userland, fake_env, "doctor", "--json", timeout=90)
    no_traceback(doctor)
    checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
    assert "files from an earlier manager" in json.dumps(checks["manager"]), checks["manager"]
    with stopped_after(userland, fake_env):
        assert "last-stop" not in down_ok(userland, fake_env)
        assert not last.exists()  # down removes it, as it removes a readable one
