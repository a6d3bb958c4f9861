"""What a person reads after the start: why a manager stopped outlives it, `running` and
`connected` mean what they say, `run` behaves like a shell about a missing command, and the
messages name the setting the person actually used."""

from __future__ import annotations

import json
from pathlib import Path

from tests.faultkit import assert_clean, marked
from tests.helpers import Userland, st, status
from tests.waiting import poll


def test_a_manager_that_gave_up_says_why_after_it_is_gone(
    userland: Userland, fake_env: dict[str, str]
) -> None:
    env = {**fake_env, "TS_AUTHKEY": "tskey-auth-hang-x"}
    up = st(userland, env, "up", "--no-watch", "--no-wait", "--timeout", "2")
    assert up.returncode == 0, up.stderr
    poll(lambda: not marked(env), 6, "the manager gave up and stopped")
    shown = status(userland, env)
    assert shown["running"] is False and shown["connected"] is False
    last = shown["last_failure"]
    assert set(last) >= {"at", "reason", "advice"}
    assert "not Running after 2s" in last["reason"] and last["advice"]
    human = st(userland, env, "status").stdout.splitlines()
    assert human[0].startswith(f"Not running: the manager stopped at {last['at']}: ")
    assert human[1].startswith("  what to do: ")
    waited = st(userland, env, "wait", "--timeout", "1")
    assert waited.returncode == 1 and f"the last one stopped at {last['at']}" in waited.stderr
    assert st(userland, env, "down").returncode == 0
    assert status(userland, env)["last_failure"] is None  # down starts afresh
    assert_clean(userland, env)


def test_running_means_the_manager_and_connected_means_the_node(
    userland: Userland, fake_env: dict[str, str]
) -> None:
    env = {**fake_env, "FAKE_TAILSCALE_LOGIN_DELAY": "30"}
    try:
        assert st(userland, env, "up", "--no-watch", "--no-wait").returncode == 0
        shown = status(userland, env)
        assert shown["running"] is True and shown["connected"] is False
        first = st(userland, env, "status").stdout.splitlines()[0]
        assert first.startswith("Logging in as "), first
    finally:
        st(userland, env, "down")
    try:
        assert st(userland, fake_env, "up", "--no-watch").returncode == 0
        shown = status(userland, fake_env)
        assert shown["running"] is True and shown["connected"] is True
        first = st(userland, fake_env, "status").stdout.splitlines()[0]
        assert first.startswith("Connected to the tailnet as "), first
    finally:
        st(userland, fake_env, "down")
    assert_clean(userland, fake_env)


def test_run_of_a_missing_command_exits_127_before_anything_starts(
    userland: Userland, fake_env: dict[str, str]
) -> None:
    result = st(userland, fake_env, "run", "--", "no-such-command-here", "x")
    assert result.returncode == 127
    assert result.stderr.strip().splitlines() == [
        "spacetail: error: run: no-such-command-here: command not found (nothing was started)"
    ]
    assert not (Path(fake_env["SPACETAIL_DIR"]) / "manager.log").exists()
    assert not marked(fake_env)


def test_run_reports_what_it_watches_and_says_nothing_extra_on_failure(
    userland: Userland, fake_env: dict[str, str]
) -> None:
    ok = st(userland, fake_env, "run", "--", "true")
    assert ok.returncode == 0, ok.stderr
    assert "it stops when `spacetail run` (pid " in ok.stderr
    bad = st(userland, {**fake_env, "TS_AUTHKEY": "tskey-auth-bad-x"}, "run", "--", "true")
    assert bad.returncode == 1
    assert "nothing was running" not in bad.stderr and "invalid key" in bad.stderr
    assert_clean(userland, fake_env)


def test_a_dir_problem_names_the_dir_flag(
    userland: Userland, fake_env: dict[str, str], home: Path
) -> None:
    not_a_folder = home / "file"
    not_a_folder.write_text("")
    result = st(userland, fake_env, "--dir", str(not_a_folder), "up", "--no-watch")
    assert result.returncode == 2
    assert result.stderr.startswith("spacetail: error: --dir: "), result.stderr
    assert "SPACETAIL_DIR" not in result.stderr


def test_down_leaves_the_logs_only(userland: Userland, fake_env: dict[str, str]) -> None:
    assert st(userland, fake_env, "up", "--no-watch").returncode == 0
    assert st(userland, fake_env, "down").returncode == 0
    left = sorted(p.name for p in Path(fake_env["SPACETAIL_DIR"]).iterdir())
    # The logs stay for after the fact; the two lock files stay because removing a lock file
    # another spacetail may be about to take would let two of them in at once.
    assert left == ["manager.lock", "manager.log", "spacetail.lock", "tailscaled.log"], left
    assert json.loads(st(userland, fake_env, "status", "--json").stdout)["running"] is False
