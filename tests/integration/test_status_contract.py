"""`status --json` keeps its contract (docs/status.schema.json and spacetail's Status type) in
each state a script can meet: nothing running, logging in, connected, a stop that was a failure,
and files of a manager that is gone. (A manager that gave up while it runs is checked by the
crash-loop fault test, one of another container by the PID namespace test: every test reads the
status through `helpers.status`, which validates it.)"""

from __future__ import annotations

import os
import signal

from tests.helpers import Userland, st, status
from tests.status_contract import state_of


def test_each_state_keeps_the_contract(userland: Userland, fake_env: dict[str, str]) -> None:
    seen = [state_of(status(userland, fake_env))]  # nothing ran here yet

    slow = {**fake_env, "FAKE_TAILSCALE_LOGIN_DELAY": "30"}
    assert st(userland, slow, "up", "--no-watch", "--no-wait").returncode == 0
    seen.append(state_of(status(userland, slow)))
    assert st(userland, slow, "down").returncode == 0

    assert st(userland, fake_env, "up", "--no-watch").returncode == 0
    shown = status(userland, fake_env)
    seen.append(state_of(shown))
    os.kill(int(shown["manager_pid"]), signal.SIGKILL)  # gone without a word: its files stay
    seen.append(state_of(status(userland, fake_env)))
    assert st(userland, fake_env, "down").returncode == 0

    hang = {**fake_env, "TS_AUTHKEY": "tskey-auth-hang-x"}
    assert st(userland, hang, "up", "--no-watch", "--timeout", "1").returncode == 1
    last = status(userland, hang)
    seen.append(state_of(last))
    assert last["last_failure"]["failure"] is True and last["last_stop"] is None

    assert seen == ["stopped", "logging in", "connected", "stale", "stopped"]
