"""Soak: 200 up/down cycles in one client process (as uid 1983), checking that no process, file
descriptor or file is leaked, and measuring the time per cycle."""

from __future__ import annotations

import json
import statistics
import subprocess
from pathlib import Path

from spacetail.state.paths import Paths
from tests.faultkit import assert_clean, figure, marked, state_dir
from tests.helpers import SPACELIFT_UID, Userland

CYCLES = 200

# Runs as the Spacelift user: the same client code as the CLI, in one process, so that a
# descriptor leaked by up or down would pile up here; the fork of this process is the manager.
DRIVER = """
import io, json, os, sys, time
sys.path.insert(0, sys.argv[1])
from spacetail.config import loader
from spacetail.commands.down import down
from spacetail.commands.up import up
from spacetail.state.paths import Paths
cycles = int(sys.argv[2])
env = dict(os.environ)
cfg = loader.load(env)
paths = Paths.from_env(env)
sink = io.StringIO()

def fds(pid="self"):
    return sorted(os.listdir(f"/proc/{pid}/fd"), key=int)

rows = []
for _ in range(cycles):
    t0 = time.monotonic()
    reply = up(cfg, paths, env, out=sink)
    t1 = time.monotonic()
    manager = reply.manager_pid
    manager_fds = len(fds(manager))
    manager_threads = len(os.listdir(f"/proc/{manager}/task"))
    done = down(paths, env, out=sink)
    t2 = time.monotonic()
    rows.append({"up": t1 - t0, "down": t2 - t1, "self_fds": fds(), "manager": manager,
                 "manager_fds": manager_fds, "manager_threads": manager_threads,
                 "stopped": any("stopped manager" in d for d in done)})
print(json.dumps(rows))
"""


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_200_up_down_cycles_leak_nothing(userland: Userland, fake_env: dict[str, str]) -> None:
    env = {**fake_env, "FAKE_TAILSCALE_LOGIN_DELAY": "0", "SPACETAIL_WATCH_SHELL": "0"}
    result = subprocess.run(
        [userland.python, "-c", DRIVER, str(userland.root / "site"), str(CYCLES)], env=env,
        capture_output=True, text=True, timeout=170, user=SPACELIFT_UID, group=SPACELIFT_UID,
        extra_groups=[], cwd="/", check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(result.stdout)
    assert len(rows) == CYCLES
    assert all(r["stopped"] for r in rows)
    assert len({r["manager"] for r in rows}) == CYCLES  # a new manager every cycle

    # The client process: the very same descriptors after 200 cycles as after the first.
    assert all(r["self_fds"] == rows[0]["self_fds"] for r in rows), rows[-1]["self_fds"]
    # Each new manager: no more descriptors or threads late than early (a leak would grow).
    early, late = rows[:50], rows[-50:]
    assert max(r["manager_fds"] for r in late) <= max(r["manager_fds"] for r in early)
    assert max(r["manager_threads"] for r in late) <= max(r["manager_threads"] for r in early)

    # No process, and no file beyond the ones that are meant to stay.
    assert not marked(env)
    assert_clean(userland, env)
    state = state_dir(env)
    # tailscaled's folder goes with the manager (--state=mem: keeps nothing there worth keeping).
    assert listing(state) == ["manager.lock", "manager.log", "spacetail.lock", "tailscaled.log"]
    runtime = Path(env["XDG_RUNTIME_DIR"])
    secrets = Paths.from_env(env).secrets_dir
    assert listing(runtime) == ["spacetail", f"spacetail/{secrets.name}"]  # no key file left

    cycle = [r["up"] + r["down"] for r in rows]
    figure("soak_cycle_mean", statistics.mean(cycle))
    figure("soak_cycle_p95", statistics.quantiles(cycle, n=20)[-1])
    figure("soak_cycle_max", max(cycle))
    figure("soak_up_mean", statistics.mean(r["up"] for r in rows))
    figure("soak_down_mean", statistics.mean(r["down"] for r in rows))
    figure("soak_manager_fds_max", max(r["manager_fds"] for r in rows), "")
    figure("soak_client_fds", len(rows[0]["self_fds"]), "")
    figure("soak_manager_log_bytes_per_cycle", (state / "manager.log").stat().st_size / CYCLES, "")
