"""Least privilege per phase, the way runs happen (issue 21): every phase gets a Spacelift-shaped
OIDC token whose scope follows Spacelift's rules, and the fake control server records which
identity (client id) and which tags each node presented. The settings are the ones the Terraform
module's context carries: two client IDs and two tag lists, no secret.

- a proposed run: its plan is read;
- a tracked run that waits for approval: plan read, then (approved) apply write;
- a tracked run that deploys by itself: plan and apply write;
- a task: write;
- and the mistakes: a read phase with only the write identity, a token without a scope claim,
  a malformed token.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests import spacelift_oidc
from tests.e2e.phases import DOWN, UP, assert_finished_cleanly
from tests.e2e.spacelift import WORKSPACE, PhaseResult, SpaceliftRun

pytestmark = pytest.mark.userns

CONTROL_LOG = ".fake-control.jsonl"  # in the workspace: it outlives each container
COMMAND_RAN = "TERRAFORM-RAN"
IDENTITIES = {
    "TS_CLIENT_ID_READ": "client-read",
    "TS_CLIENT_ID_WRITE": "client-write",
    "SPACETAIL_TAGS_READ": "tag:ci-read",
    "SPACETAIL_TAGS_WRITE": "tag:ci-write",
}
EXPECTED = {"read": ("client-read", ["tag:ci-read"]), "write": ("client-write", ["tag:ci-write"])}


def least_privilege(run: SpaceliftRun, run_type: str, *, autodeploy: bool = False) -> SpaceliftRun:
    """The run with Spacelift's tokens and the module's context: no auth key anywhere."""
    for name in ("TS_AUTHKEY", "TS_AUTH_KEY"):
        run.env.pop(name, None)
    run.env.update(IDENTITIES)
    run.env["FAKE_TAILSCALE_CONTROL_LOG"] = f"{WORKSPACE}/{CONTROL_LOG}"
    run.run_type, run.oidc, run.autodeploy = run_type, True, autodeploy
    return run


def presented(run: SpaceliftRun) -> list[dict[str, Any]]:
    """What the control server was shown, one entry per login, oldest first."""
    path = run.workspace / CONTROL_LOG
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def status_command(name: str) -> str:
    """The phase's command: what `status --json` says, kept in the workspace for the test."""
    return f"spacetail status --json > {WORKSPACE}/status-{name}.json && echo {COMMAND_RAN}"


def phase(run: SpaceliftRun, name: str, **kwargs: Any) -> PhaseResult:
    return run.phase(name, status_command(name), before=[UP], after=[DOWN], **kwargs)


def assert_joined(run: SpaceliftRun, result: PhaseResult, scope: str, login: int) -> None:
    """The phase joined with the identity and the tags of SCOPE, and says so everywhere."""
    client, tags = EXPECTED[scope]
    assert result.status == 0, result.describe()
    assert COMMAND_RAN in result.log, result.describe()
    joined = f"joined with scope {scope} (Spacelift token), tags {','.join(tags)}"
    assert joined in result.log, result.describe()  # up's connected line
    entry = presented(run)[login]
    assert entry["login"] == "wif" and entry["client_id"] == client, entry
    assert entry["tags"] == tags and entry["token"]["scope"] == scope, entry
    assert entry["token"]["sub"].endswith(f":run_type:{run.run_type}:scope:{scope}"), entry
    assert entry["hostname"].endswith(f"-{scope}"), entry  # a plan node, an apply node
    status = json.loads((run.workspace / f"status-{result.name}.json").read_text())
    assert status["scope"] == scope and status["tags"] == tags, status
    assert status["hostname"] == entry["hostname"], status
    assert_finished_cleanly(result)


def test_a_proposed_run_plans_with_the_read_identity(spacelift_run: SpaceliftRun) -> None:
    run = least_privilege(spacelift_run, "PROPOSED")
    plan = phase(run, "planning")
    assert_joined(run, plan, "read", 0)
    assert len(presented(run)) == 1


def test_a_run_that_waits_for_approval_plans_read_and_applies_write(
    spacelift_run: SpaceliftRun,
) -> None:
    run = least_privilege(spacelift_run, "TRACKED")
    plan = phase(run, "planning")
    assert_joined(run, plan, "read", 0)
    run.confirm()  # a person approves the plan
    apply = phase(run, "applying")
    assert_joined(run, apply, "write", 1)
    # the saved environment carried the plan's token; the apply presented its own
    assert presented(run)[0]["hostname"] != presented(run)[1]["hostname"]


def test_an_autodeployed_run_plans_and_applies_write(spacelift_run: SpaceliftRun) -> None:
    run = least_privilege(spacelift_run, "TRACKED", autodeploy=True)
    assert_joined(run, phase(run, "planning"), "write", 0)
    assert_joined(run, phase(run, "applying"), "write", 1)


def test_a_task_performs_write(spacelift_run: SpaceliftRun) -> None:
    run = least_privilege(spacelift_run, "TASK")
    assert_joined(run, phase(run, "performing"), "write", 0)


def assert_refused(run: SpaceliftRun, result: PhaseResult, starts: str, *absent: str) -> None:
    """The phase failed in its before hook with one line, terraform never ran, nothing joined."""
    assert result.status not in (0, None), result.describe()
    assert COMMAND_RAN not in result.log, result.describe()
    errors = [line for line in result.log.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith(f"spacetail: error: {starts}"), errors
    for text in absent:
        assert text not in result.log, result.describe()
    assert presented(run) == []
    assert_finished_cleanly(result)


def test_a_read_phase_with_only_the_write_identity_fails_before_terraform(
    spacelift_run: SpaceliftRun,
) -> None:
    run = least_privilege(spacelift_run, "TRACKED")
    for name in ("TS_CLIENT_ID_READ", "SPACETAIL_TAGS_READ"):
        del run.env[name]
    plan = phase(run, "planning")
    assert_refused(run, plan, "TS_CLIENT_ID_READ: this phase's Spacelift token has scope read")
    assert "only TS_CLIENT_ID_WRITE is set" in plan.log, plan.describe()


def test_a_token_without_a_scope_claim_uses_the_plain_settings_and_says_so(
    spacelift_run: SpaceliftRun,
) -> None:
    run = least_privilege(spacelift_run, "TRACKED")
    run.env.update({"TS_CLIENT_ID": "client-plain", "SPACETAIL_TAGS": "tag:ci"})
    token = spacelift_oidc.token(None, stack=run.stack_id, run_id=run.run_id)
    plan = phase(run, "planning", token=token)
    assert plan.status == 0, plan.describe()
    assert "has no scope claim: using the plain settings" in plan.log, plan.describe()
    entry = presented(run)[0]
    assert entry["client_id"] == "client-plain" and entry["tags"] == ["tag:ci"], entry
    status = json.loads((run.workspace / "status-planning.json").read_text())
    assert status["scope"] is None and status["tags"] == ["tag:ci"], status


def test_a_malformed_token_is_refused_without_being_printed(spacelift_run: SpaceliftRun) -> None:
    run = least_privilege(spacelift_run, "TRACKED")
    token = "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24gU2VDckV0.c2lnbmF0dXJl"  # payload: "not json SeCrEt"
    plan = phase(run, "planning", token=token)
    assert_refused(
        run,
        plan,
        "SPACELIFT_OIDC_TOKEN: the ID token is a JWT whose payload is not base64url JSON",
        token,
        "bm90IGpzb24",
    )
