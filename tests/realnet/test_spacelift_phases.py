"""A Spacelift run against the real tailnet (tests/e2e's emulator: every phase in fresh PID,
mount and UTS namespaces, the README's hooks in the phase's one shell, the environment saved
between phases): plan, then apply in a fresh container, then an apply whose command fails (no
after hook, so no `down`). Each phase joins, reaches the service node by its MagicDNS name
through the proxy, and leaves nothing running in its container and no node at the control
server."""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path
from typing import Any

import pytest

from tests import helpers
from tests.e2e.phases import DOWN, UP, assert_finished_cleanly
from tests.e2e.spacelift import USERLAND, WORKSPACE, PhaseResult, SpaceliftRun, container_support
from tests.realnet.conftest import nodes

pytestmark = pytest.mark.userns
GONE_WITHIN = 5.0


@pytest.fixture
def run(
    home: Path,
    userland: helpers.Userland,
    real_ts: Path,
    realnet: dict[str, Any],
    test_id: str,
) -> SpaceliftRun:
    reason = container_support()
    if reason:
        pytest.skip(reason)
    env = {
        **realnet["client_env"],
        # The real tailscale instead of the fake: the userland holds it (tests/realnet/conftest)
        "PATH": f"{USERLAND}/{real_ts.name}:{USERLAND}/bin:/usr/local/bin:/usr/bin:/bin",
        "TS_LOGIN_SERVER": realnet["control_url"],
        "TS_AUTHKEY": realnet["authkey"],
        "TS_SOCKS5_SERVER": f"127.0.0.1:{helpers.free_port()}",
        "TS_OUTBOUND_HTTP_PROXY_LISTEN": f"127.0.0.1:{helpers.free_port()}",
        helpers.MARKER: test_id,
    }
    return SpaceliftRun(home, userland, env, deadline=60.0)


def command(realnet: dict[str, Any], name: str, then: str = "") -> str:
    """The phase's command: what status says (kept in the workspace), then the service."""
    url = shlex.quote(f"http://{realnet['services']['http']}/{name}")
    return (
        f"spacetail status --json > {WORKSPACE}/status-{name}.json && "
        f"curl -fsS --max-time 20 {url} && echo FETCHED-OK{then}"
    )


def node_gone(realnet: dict[str, Any], run: SpaceliftRun, result: PhaseResult) -> None:
    status = json.loads((run.workspace / f"status-{result.name}.json").read_text())
    assert status["connected"] is True, status
    name = status["hostname"]
    deadline = time.monotonic() + GONE_WITHIN
    while name in {n["name"] for n in nodes(realnet)}:
        assert time.monotonic() < deadline, f"{name} still at the control server"
        time.sleep(0.1)


def test_plan_then_apply_then_a_failed_apply(run: SpaceliftRun, realnet: dict[str, Any]) -> None:
    before = {n["name"] for n in nodes(realnet)}
    plan = run.phase("planning", command(realnet, "planning"), before=[UP], after=[DOWN])
    apply = run.phase("applying", command(realnet, "applying"), before=[UP], after=[DOWN])
    failed = run.phase(
        "applying-failed", command(realnet, "applying-failed", "; false"), before=[UP], after=[DOWN]
    )
    for result, status in ((plan, 0), (apply, 0), (failed, 1)):
        assert result.status == status, result.describe()
        assert f"realnet http ok /{result.name}" in result.log, result.describe()
        assert "FETCHED-OK" in result.log, result.describe()
        assert "connected to the tailnet" in result.log, result.describe()
        assert_finished_cleanly(result)
        node_gone(realnet, run, result)
    assert "stopped manager" not in failed.log, failed.describe()  # no after hook ran
    assert {n["name"] for n in nodes(realnet)} == before


def test_a_run_awaiting_approval_plans_read_and_applies_write(
    run: SpaceliftRun, realnet: dict[str, Any]
) -> None:
    """Both per-scope keys in the stack's environment, as the module's context carries them;
    Spacelift's token says the scope: the plan (read) cannot reach the write-only service,
    the approved apply (write) can. The tailnet refuses, not spacetail."""
    for name in ("TS_AUTHKEY", "TS_AUTH_KEY"):
        run.env.pop(name, None)
    run.env["TS_AUTHKEY_READ"] = realnet["authkey_read"]
    run.env["TS_AUTHKEY_WRITE"] = realnet["authkey_write"]
    run.run_type, run.oidc, run.autodeploy = "TRACKED", True, False
    write_only = shlex.quote(realnet["services"]["write_only"])
    probe = (
        f"; if spacetail wait --timeout 3 --target {write_only}; then echo WRITE-REACHED; "
        "else echo WRITE-DENIED; fi"
    )
    plan = run.phase("planning", command(realnet, "planning", probe), before=[UP], after=[DOWN])
    run.confirm()
    apply = run.phase("applying", command(realnet, "applying", probe), before=[UP], after=[DOWN])
    for result, scope, verdict in (
        (plan, "read", "WRITE-DENIED"),
        (apply, "write", "WRITE-REACHED"),
    ):
        assert result.status == 0, result.describe()
        assert "FETCHED-OK" in result.log and verdict in result.log, result.describe()
        status = json.loads((run.workspace / f"status-{result.name}.json").read_text())
        assert status["scope"] == scope, status
        assert_finished_cleanly(result)
        node_gone(realnet, run, result)
