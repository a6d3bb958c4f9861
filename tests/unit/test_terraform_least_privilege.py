"""terraform/least-privilege: both sides of least privilege per phase in one module call. Two
Tailscale federated identities (read and write) trusting the Spacelift account's tokens, and
the spacetail context of ../ carrying only their client IDs and tags; a policy snippet for the
tailnet. Parsed with python-hcl2; the policy and the validations run in real Terraform where it
is installed."""

from __future__ import annotations

import json
import shutil
from typing import Any

import pytest

from tests import terraform_module as tf

pytest.importorskip("hcl2")

MODULE = tf.LEAST_PRIVILEGE
# Passed on unchanged to ../, which validates them.
PASSED_ON = ("name", "space_id", "labels", "install", "hostname", "forwards", "extra_args",
             "pip_spec", "pyz_path")  # fmt: skip
needs_terraform = pytest.mark.skipif(
    shutil.which("terraform") is None, reason="terraform is not installed"
)
GOOD = {
    "spacelift_host": "demo.app.spacelift.io",
    "tags_read": '["tag:ci-read"]',
    "tags_write": '["tag:ci-write"]',
    "read_destinations": '["tag:db-replica"]',
    "write_destinations": '["tag:db"]',
    "read_ip": '["tcp:5432"]',
}


def identity() -> dict[str, Any]:
    found: dict[str, dict[str, Any]] = {}
    for block in tf.load("main.tf", MODULE)["resource"]:
        found.update(block.get("tailscale_federated_identity", {}))
    assert set(found) == {"scope"}
    return found["scope"]


def locals_() -> dict[str, Any]:
    return {k: v for block in tf.load("main.tf", MODULE)["locals"] for k, v in block.items()}


def test_one_identity_per_scope_trusting_the_spacelift_account() -> None:
    assert locals_()["issuer"] == "https://${var.spacelift_host}"
    (policy,) = tf.load("policy.tf", MODULE)["locals"]
    scopes = policy["scopes"]
    assert set(scopes) == {"read", "write"}
    for scope in scopes:
        assert scopes[scope]["tags"] == f"${{var.tags_{scope}}}"
    body = identity()
    assert body["for_each"] == "${local.scopes}"
    # The subjects end :scope:read and :scope:write, each identity with its scope's tags.
    assert body["subject"] == "${local.subjects[each.key]}"
    assert body["tags"] == "${each.value.tags}"
    assert body["issuer"] == "${local.issuer}"
    assert body["audience"] == "${var.spacelift_host}"
    assert body["scopes"] == ["auth_keys"]
    assert "custom_claim_rules" not in body


def test_the_context_carries_only_client_ids_and_tags() -> None:
    (call,) = tf.load("main.tf", MODULE)["module"]
    body = {k: v for k, v in call["context"].items() if not k.startswith("__")}
    assert body.pop("source") == "../"
    assert body.pop("credential") == "workload_identity"
    for scope in ("read", "write"):
        assert body.pop(f"client_id_{scope}") == (
            f'${{tailscale_federated_identity.scope["{scope}"].id}}'
        )
        assert body.pop(f"tags_{scope}") == f"${{var.tags_{scope}}}"
    # Nothing else but the settings passed on: no secret, no plain client ID.
    assert body == {name: f"${{var.{name}}}" for name in PASSED_ON}


def test_variables_passed_on_are_the_modules_own() -> None:
    mine, theirs = tf.blocks("variable", MODULE), tf.blocks("variable")
    for name in PASSED_ON:
        for key in ("description", "type", "default"):
            assert mine[name].get(key) == theirs[name].get(key), (name, key)


def test_every_variable_of_its_own_is_described_and_validated() -> None:
    for name, body in tf.blocks("variable", MODULE).items():
        assert body.get("description", "").strip(), name
        if name in PASSED_ON:
            continue
        assert body.get("validation"), f"variable {name} has no validation block"
        for rule in body["validation"]:
            assert rule["error_message"].strip() and "${" not in rule["error_message"], name


def test_version_bounds() -> None:
    """tailscale_federated_identity first appears in terraform-provider-tailscale v0.25.0 (its
    tags' source, tailscale/resource_federated_identity.go)."""
    (terraform,) = tf.load("versions.tf", MODULE)["terraform"]
    assert terraform["required_version"] == ">= 1.11"
    (providers,) = terraform["required_providers"]
    assert providers["tailscale"] == {"source": "tailscale/tailscale", "version": ">= 0.25.0"}
    assert providers["spacelift"]["version"] == ">= 1.44.0"


def test_readme_tables_and_example() -> None:
    readme = (MODULE / "README.md").read_text(encoding="utf-8")
    assert tf.inputs_table(MODULE) in readme
    assert tf.outputs_table(MODULE) in readme
    (call,) = tf.load("examples/least-privilege/main.tf")["module"]
    body = {k: v for k, v in call["spacetail"].items() if not k.startswith("__")}
    assert body["source"] == "../../least-privilege"
    variables = tf.blocks("variable", MODULE)
    required = {n for n, b in variables.items() if "default" not in b}
    assert required <= set(body), required - set(body)
    assert set(body) - {"source"} <= set(variables)


@needs_terraform
def test_the_policy_snippet_gives_each_scope_its_own_destinations() -> None:
    files = [MODULE / "policy.tf", MODULE / "variables.tf"]
    result = tf.console(files, GOOD, "jsonencode(local.policy)")
    assert result.errors == ""
    policy = json.loads(json.loads(result.value))
    assert policy == {
        "tagOwners": {"tag:ci-read": ["autogroup:admin"], "tag:ci-write": ["autogroup:admin"]},
        "grants": [
            {"src": ["tag:ci-read"], "dst": ["tag:db-replica"], "ip": ["tcp:5432"]},
            {"src": ["tag:ci-write"], "dst": ["tag:db"], "ip": ["*"]},
        ],
    }


@needs_terraform
@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"tags_write": '["tag:ci-read"]'}, "tags_read and tags_write share a tag"),
        ({"spacelift_host": "https://demo.app.spacelift.io"}, "spacelift_host is a hostname"),
        ({"subject_space": "root:stack"}, "subject_space is a space ID or a pattern"),
        ({"read_destinations": "[]"}, "read_destinations is a non-empty list"),
        ({"tags_read": '["ci-read"]'}, "tags_read is a non-empty list of tags"),
        ({"identity_description": "x" * 45}, "identity_description is 1 to 44"),
    ],
)
def test_a_mistake_fails_the_plan(change: dict[str, str], error: str) -> None:
    files = [MODULE / "policy.tf", MODULE / "variables.tf"]
    result = tf.console(files, {**GOOD, **change}, "jsonencode(local.policy)")
    assert error in result.errors, result.errors


SPACELIFT_DEFAULT = "space:{spaceId}:{callerType}:{callerId}:run_type:{runType}:scope:{scope}"


@needs_terraform
@pytest.mark.parametrize(
    ("change", "read"),
    [
        ({}, "space:*:*:*:run_type:*:scope:read"),
        ({"subject_space": "root", "subject_caller_type": "stack", "subject_stacks": "prod-*"},
         "space:root:stack:prod-*:run_type:*:scope:read"),
        ({"subject_space": "legacy-01H", "subject_caller_type": "module",
          "subject_stacks": "terraform-aws-vpc"},
         "space:legacy-01H:module:terraform-aws-vpc:run_type:*:scope:read"),
        ({"subject_template": "acct:{spaceId}/{callerType}/{callerId}@{scope}#{runId}",
          "subject_stacks": "db-*"}, "acct:*/*/db-*@read#*"),
    ],
    ids=["spacelift-default", "stacks", "modules", "custom-template"],
)  # fmt: skip
def test_the_subjects_are_the_tokens_as_spacelift_forms_them(
    change: dict[str, str], read: str
) -> None:
    """Spacelift fills the account's subject template (default: its own); stacks and modules
    (`{callerType}`) alike; each identity trusts its scope only."""
    files = [MODULE / "subject.tf", MODULE / "variables.tf"]
    result = tf.console(files, {**GOOD, **change}, "jsonencode(local.subjects)")
    assert result.errors == ""
    subjects = json.loads(json.loads(result.value))
    assert subjects == {"read": read, "write": read.replace("read", "write")}
    default = tf.blocks("variable", MODULE)["subject_template"]["default"]
    assert default == SPACELIFT_DEFAULT


@needs_terraform
@pytest.mark.parametrize(
    ("change", "error"),
    [
        (
            {"subject_template": "space:{spaceId}:{callerId}"},
            "subject_template must contain {scope}",
        ),
        ({"subject_template": "space:*:{scope}"}, "subject_template is the template as Spacelift"),
        ({"subject_caller_type": "task"}, "subject_caller_type is stack, module or *"),
    ],
)
def test_a_subject_mistake_fails_the_plan(change: dict[str, str], error: str) -> None:
    files = [MODULE / "subject.tf", MODULE / "variables.tf"]
    result = tf.console(files, {**GOOD, **change}, "jsonencode(local.subjects)")
    assert error in result.errors, result.errors
