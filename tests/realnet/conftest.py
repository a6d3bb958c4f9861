"""Fixtures of the real-tailnet tests: the stack, started once per session through the one entry
point (`python -m tests.realnet start`) and stopped at its end leaving no process; the real
tailscale at spacetail's DEFAULT_VERSION in the Spacelift user's userland; an environment per
test that joins the real tailnet."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import helpers
from tests.conftest import SESSION
from tests.realnet import stack

REPO = Path(__file__).resolve().parents[2]


def _entry(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "tests.realnet", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="session")
def realnet(shared_base: Path) -> Iterator[dict[str, Any]]:
    """The running real tailnet: the JSON line of `start` (control_url, keys, services...)."""
    if shutil.which("go") is None and os.environ.get("CI") != "true":
        pytest.skip("go is not on PATH: the real tailnet is built from Go modules")
    folder = shared_base / "realnet"
    env_marker = f"{SESSION}-realnet"
    os.environ[helpers.MARKER] = env_marker  # the stack's processes: the session's leak check
    try:
        started = _entry("start", "--dir", str(folder), timeout=stack.START_TIMEOUT + 3700)
    finally:
        os.environ.pop(helpers.MARKER, None)
    if started.returncode != 0:
        pytest.fail(f"the real tailnet did not start: {started.stderr.strip()}", pytrace=False)
    doc: dict[str, Any] = json.loads(started.stdout)
    doc["dir"] = str(folder)
    try:
        yield doc
    finally:
        stopped = _entry("stop", "--dir", str(folder), timeout=stack.STOP_TIMEOUT + 30)
        left = helpers.processes_with_marker(env_marker)
        assert stopped.returncode == 0 and not left, f"{stopped.stderr}\n{left}"


@pytest.fixture(scope="session")
def real_ts(userland: helpers.Userland, realnet: dict[str, Any]) -> Path:
    """tailscale and tailscaled at DEFAULT_VERSION, where uid 1983 (and a container) reads them."""
    folder = userland.root / "realts"
    if not folder.is_dir():
        staging = userland.root / ".realts"
        staging.mkdir()
        for name in ("tailscale", "tailscaled"):
            shutil.copy(Path(realnet["tailscale_dir"]) / name, staging / name)
            (staging / name).chmod(0o755)
        staging.chmod(0o755)
        staging.rename(folder)
    return folder


def nodes(realnet: dict[str, Any]) -> list[dict[str, Any]]:
    result = _entry("nodes", "--dir", realnet["dir"], timeout=30)
    assert result.returncode == 0, result.stderr
    listed: list[dict[str, Any]] = json.loads(result.stdout)
    return listed


def new_key(realnet: dict[str, Any], *args: str) -> str:
    result = _entry("key", "--dir", realnet["dir"], *args, timeout=30)
    assert result.returncode == 0, result.stderr
    return str(json.loads(result.stdout)["key"])


@pytest.fixture
def rn_env(
    userland: helpers.Userland,
    real_ts: Path,
    realnet: dict[str, Any],
    home: Path,
    test_id: str,
) -> dict[str, str]:
    """A phase's environment on the real tailnet: the real tailscale first on PATH, the control
    server, the plain (ephemeral, reusable) key, the knobs a loopback tailnet needs, and a
    hostname of the test's own."""
    env = helpers.base_env(userland, real_ts, home, test_id)
    env.update(realnet["client_env"])
    env["TS_LOGIN_SERVER"] = realnet["control_url"]
    env["TS_AUTHKEY"] = realnet["authkey"]
    env["TS_HOSTNAME"] = f"rn-{test_id[-12:]}"
    env["SPACETAIL_TIMEOUT"] = "60"
    return env
