"""The Terraform module (terraform/): parsed with python-hcl2. Its context carries the hooks of
hooks.json for every phase, its credentials are secret variables, each optional, and its
README's tables say what the code has. (`terraform fmt`/`validate` run in the CI workflow.)"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests import terraform_module as tf

pytest.importorskip("hcl2")

SECRETS = {"auth_key": "TS_AUTHKEY", "oauth_client_secret": "TS_CLIENT_SECRET",
           "id_token": "TS_ID_TOKEN"}  # fmt: skip


def resources(kind: str) -> dict[str, dict[str, Any]]:
    return {
        name: body
        for block in tf.load("main.tf")["resource"]
        for k, named in block.items()
        if k == kind
        for name, body in named.items()
    }


def test_context_has_the_hooks_of_hooks_json_for_every_phase() -> None:
    locals_ = {k: v for block in tf.load("main.tf")["locals"] for k, v in block.items()}
    assert locals_["hooks"] == '${jsondecode(file("${path.module}/hooks.json"))}'
    assert locals_["before"] == (
        "${concat(var.install ? local.hooks.install : [], local.hooks.up)}"
    )
    assert locals_["after"] == "${local.hooks.down}"
    context = resources("spacelift_context")["this"]
    assert tf.hooks()["phases"] == list(tf.PHASES)
    for phase in tf.PHASES:
        assert context[f"before_{phase}"] == "${local.before}", phase
        assert context[f"after_{phase}"] == "${local.after}", phase
    assert context["labels"] == "${var.labels}"
    assert tf.blocks("variable")["labels"]["default"] == ["autoattach:tailscale"]


def test_credentials_are_optional_secret_variables() -> None:
    variables = tf.blocks("variable")
    env = resources("spacelift_environment_variable")
    for var, name in SECRETS.items():
        assert variables[var]["sensitive"] is True, var
        assert variables[var]["default"] is None, var
        resource = env[var]
        assert resource["name"] == name
        assert resource["value"] == f"${{var.{var}}}"
        assert resource["write_only"] is True
        assert re.fullmatch(r"\$\{local\.has_\w+ \? 1 : 0\}", resource["count"]), resource
    assert env["setting"]["write_only"] is False
    assert variables["client_id"]["default"] is None


def test_one_credential_and_tags_are_enforced() -> None:
    context = resources("spacelift_context")["this"]
    conditions = [p["condition"] for p in context["lifecycle"][0]["precondition"]]
    assert "${local.credentials == 1}" in conditions
    assert "${local.has_auth_key || length(var.tags) > 0}" in conditions


def test_readme_tables_match_the_code() -> None:
    readme = (tf.MODULE / "README.md").read_text(encoding="utf-8")
    assert tf.inputs_table() in readme, "regenerate the Inputs table of terraform/README.md"
    assert tf.outputs_table() in readme, "regenerate the Outputs table of terraform/README.md"


def test_every_variable_is_used() -> None:
    code = "".join(p.read_text(encoding="utf-8") for p in tf.MODULE.glob("*.tf"))
    for name in tf.blocks("variable"):
        assert f"var.{name}" in code, name
