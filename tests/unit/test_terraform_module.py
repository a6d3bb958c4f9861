"""The Terraform module (terraform/): parsed with python-hcl2. Its context carries the hooks of
hooks.json for every phase; its secrets are ephemeral variables sent through the provider's
write-only argument, never in the plan or the state; every variable is described and validated;
its version bounds are the first versions that have what it uses; the variables it sets are
the CLI's; its examples use it as documented and its README's tables say what the code has.
(`terraform fmt`/`validate` run in the CI workflow.)"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests import pyz
from tests import terraform_module as tf
from tests.terraform_module import PER_SCOPE, cli_variables

pytest.importorskip("hcl2")

SECRETS = {"auth_key": "TS_AUTHKEY", "oauth_client_secret": "TS_CLIENT_SECRET"}
needs_terraform = pytest.mark.skipif(
    shutil.which("terraform") is None, reason="terraform is not installed"
)
AUTH_KEY = {"credential": "auth_key", "auth_key": "tskey-auth-k"}
EXAMPLES = tf.MODULE / "examples"
PYZ_IN_RUN = "/mnt/workspace/spacetail/spacetail.pyz"


def resources(kind: str, module: Path = tf.MODULE) -> dict[str, dict[str, Any]]:
    return {
        name: body
        for path in sorted(module.glob("*.tf"))
        for block in tf.load(str(path.relative_to(tf.MODULE))).get("resource", [])
        for k, named in block.items()
        if k == kind
        for name, body in named.items()
    }


def test_context_has_the_hooks_of_hooks_json_for_every_phase() -> None:
    locals_ = {k: v for block in tf.load("hooks.tf")["locals"] for k, v in block.items()}
    assert locals_["hooks"] == '${jsondecode(file("${path.module}/hooks.json"))}'
    assert locals_["pyz"] == "${var.install && var.pip_spec == null}"
    context = resources("spacelift_context")["this"]
    assert tf.hooks()["phases"] == list(tf.PHASES)
    for phase in tf.PHASES:
        assert context[f"before_{phase}"] == "${local.before}", phase
        assert context[f"after_{phase}"] == "${local.after}", phase
    assert context["labels"] == "${var.labels}"


def test_the_pyz_is_a_mounted_file_whose_sum_the_hooks_check() -> None:
    """Sent through content_wo (not in the state), its sha256 the version: a new file is a
    new version; mounted where the hook lines run it, only in the pyz way."""
    mounted = resources("spacelift_mounted_file")["pyz"]
    assert mounted["count"] == "${local.pyz ? 1 : 0}"
    assert mounted["relative_path"] == "${local.hooks.pyz}"
    assert mounted["content_wo"] == "${filebase64(local.pyz_path)}"
    assert mounted["content_wo_version"] == "${local.pyz_sha256}"
    assert "content" not in mounted
    relative = json.loads(tf.HOOKS.read_text("utf-8"))["pyz"]
    assert f"/mnt/workspace/{relative}" == PYZ_IN_RUN
    for line in (*tf.hooks()["pyz_before"][1:], *tf.hooks()["pyz_after"]):
        assert f"python3 {PYZ_IN_RUN} " in line, line
    (check,) = [line for line in tf.hooks()["pyz_before"] if "sha256sum" in line]
    assert check == tf.hooks()["pyz_before"][0], "the sum is checked before anything runs"
    assert check.count("@SPACETAIL_PYZ_SHA256@") == 2


def test_no_hook_line_names_a_registry_package() -> None:
    """The pip lines are opt-in, for a package of your own index: no default names one."""
    text = tf.HOOKS.read_text("utf-8")
    assert "spacetail==" not in text
    assert "${SPACETAIL_PIP_SPEC:?" in " ".join(tf.hooks()["pip"])


def test_secrets_are_ephemeral_and_write_only() -> None:
    """The key is in neither the plan nor the state: an ephemeral variable, sent through
    value_wo (a write-only argument) with a version to move it; never through `value`."""
    variables = tf.blocks("variable")
    secrets = tf.load("main.tf")["locals"][0]["secrets"]
    assert {kind: secret["name"] for kind, secret in secrets.items()} == SECRETS
    for var in SECRETS:
        assert variables[var]["sensitive"] is True, var
        assert variables[var]["ephemeral"] is True, var
        assert variables[var]["default"] is None, var
    env = resources("spacelift_environment_variable")
    assert set(env) == {"secret", "setting"}
    secret = env["secret"]
    assert secret["value_wo"] == (
        '${each.key == "auth_key" ? var.auth_key : var.oauth_client_secret}'
    )
    assert secret["value_wo_version"] == "${var.credential_version}"
    assert "value" not in secret
    assert secret["write_only"] is True
    # Terraform refuses for_each keys derived from an ephemeral value: the keys follow
    # `credential`, which is not one.
    assert secret["for_each"] == (
        "${{for kind, secret in local.secrets : kind => secret if var.credential == kind}}"
    )
    assert env["setting"]["write_only"] is False


def test_version_bounds_are_the_verified_ones() -> None:
    """Terraform 1.11 has write-only arguments (1.10 ephemeral variables); the Spacelift
    provider has value_wo/value_wo_version from v1.44.0 (its tags' source)."""
    (terraform,) = tf.load("versions.tf")["terraform"]
    assert terraform["required_version"] == ">= 1.11"
    (providers,) = terraform["required_providers"]
    assert providers["spacelift"] == {"source": "spacelift-io/spacelift", "version": ">= 1.44.0"}


def test_every_variable_is_described_and_validated() -> None:
    for name, body in tf.blocks("variable").items():
        assert body.get("description", "").strip(), name
        if body.get("type") in ("bool", "${bool}"):
            continue  # the type is the whole check
        assert body.get("validation"), f"variable {name} has no validation block"
        for rule in body["validation"]:
            assert rule["error_message"].strip(), name
            # An error message must not show an ephemeral (secret) value.
            assert "${" not in rule["error_message"], name


def test_the_rules_that_were_preconditions_are_validations() -> None:
    """One credential, tags for OAuth and workload identity: they show in the plan of the
    stack that applies the module, from the variables themselves."""
    variables = tf.blocks("variable")
    credential = variables["credential"]["validation"][0]["condition"]
    assert "auth_key" in credential and "workload_identity" in credential
    conditions = " ".join(r["condition"] for r in variables["tags"]["validation"])
    assert 'var.credential == "auth_key" || length(var.tags) > 0' in conditions
    context = resources("spacelift_context")["this"]
    assert "lifecycle" not in context


def test_the_variables_it_sets_are_the_clis() -> None:
    locals_ = tf.load("main.tf")["locals"][0]
    code = (tf.MODULE / "main.tf").read_text("utf-8")
    plain = code[code.index("plain = {") : code.index("} : name => value")]
    names = {line.split("=")[0].strip() for line in plain.splitlines()[2:] if "=" in line}
    names |= {s["name"] for s in locals_["secrets"].values()}
    assert names, "no variables found in main.tf"
    assert names <= cli_variables(), names - cli_variables()
    assert set(PER_SCOPE) <= names


def test_readme_tables_match_the_code() -> None:
    readme = (tf.MODULE / "README.md").read_text(encoding="utf-8")
    assert tf.inputs_table() in readme, "regenerate the Inputs table of terraform/README.md"
    assert tf.outputs_table() in readme, "regenerate the Outputs table of terraform/README.md"
    assert "| terraform | >= 1.11 |" in readme
    assert "| spacelift | >= 1.44.0 |" in readme


def test_every_variable_is_used() -> None:
    code = "".join(p.read_text(encoding="utf-8") for p in tf.MODULE.glob("*.tf"))
    for name in tf.blocks("variable"):
        assert f"var.{name}" in code, name


def _hook_console(variables: dict[str, str], pyz: Path | None, expression: str) -> tf.Console:
    files = [tf.MODULE / "hooks.tf", tf.MODULE / "variables.tf", tf.HOOKS]
    return tf.console([*files, *([pyz] if pyz else [])], variables, expression)


@needs_terraform
def test_the_hooks_carry_the_sum_of_the_pyz_beside_the_module() -> None:
    """The default pyz_path is spacetail.pyz beside the module (the release's module archive
    holds one); the sum in the check line is filesha256 of that file."""
    result = _hook_console(AUTH_KEY, pyz.built(), "jsonencode([local.before, local.after])")
    assert result.errors == ""
    before, after = json.loads(json.loads(result.value))
    source = tf.hooks()
    assert before[1:] == source["pyz_before"][1:]
    assert before[0] == source["pyz_before"][0].replace("@SPACETAIL_PYZ_SHA256@", pyz.sha256())
    assert after == source["pyz_after"]


@needs_terraform
@pytest.mark.parametrize(
    ("variables", "lines"),
    [({"install": "false"}, ("up",)), ({"pip_spec": "spacetail==0.1.0"}, ("pip", "up"))],
    ids=["runner-image", "pip-spec"],
)
def test_the_other_ways_mount_nothing(variables: dict[str, str], lines: tuple[str, ...]) -> None:
    result = _hook_console({**AUTH_KEY, **variables}, None,
                           'jsonencode([local.pyz, local.before, local.after])')  # fmt: skip
    assert result.errors == ""
    mounted, before, after = json.loads(json.loads(result.value))
    assert mounted is False
    assert before == [line for key in lines for line in tf.hooks()[key]]
    assert after == tf.hooks()["down"]


@needs_terraform
def test_without_a_pyz_the_sum_is_empty_and_the_mount_says_why() -> None:
    result = _hook_console(AUTH_KEY, None, "local.pyz_sha256")
    assert (result.errors, result.value) == ("", '""')
    mounted = resources("spacelift_mounted_file")["pyz"]
    (precondition,) = mounted["lifecycle"][0]["precondition"]
    assert precondition["condition"] == '${local.pyz_sha256 != ""}'
    assert "tox -e pyz" in precondition["error_message"]


@pytest.mark.parametrize("example", ["auth-key", "oauth-client", "workload-identity"])
def test_examples_call_the_module_as_documented(example: str) -> None:
    data = tf.load(f"examples/{example}/main.tf")
    (module,) = data["module"]
    body = {k: v for k, v in module["spacetail"].items() if not k.startswith("__")}
    assert body["source"] == "../.."
    variables = tf.blocks("variable")
    required = {n for n, b in variables.items() if "default" not in b}
    assert required <= set(body), required - set(body)
    assert set(body) - {"source"} <= set(variables), set(body) - set(variables)
    for declared in data.get("variable", []):
        for name, var in declared.items():
            if var.get("sensitive"):
                assert var.get("ephemeral") is True, (example, name)
    (terraform,) = data["terraform"]
    assert terraform["required_version"] == ">= 1.11"


@needs_terraform
@pytest.mark.parametrize(
    ("variables", "error"),
    [
        (AUTH_KEY, None),
        ({"credential": "oauth_client_secret", "oauth_client_secret": "tskey-client-k",
          "tags": '["tag:ci"]'}, None),
        ({"credential": "workload_identity", "client_id": "k1", "tags": '["tag:ci"]'}, None),
        ({"credential": "workload_identity", "client_id_read": "kr", "client_id_write": "kw",
          "tags_read": '["tag:ci-read"]', "tags_write": '["tag:ci-write"]'}, None),
        ({"credential": "password"}, "credential is one of auth_key, oauth_client_secret"),
        ({"credential": "auth_key"}, "auth_key is set (one word, no spaces) exactly when"),
        ({**AUTH_KEY, "oauth_client_secret": "tskey-client-k"},
         "oauth_client_secret is set (one word, no spaces) exactly when"),
        ({"credential": "oauth_client_secret", "oauth_client_secret": "tskey-client-k"},
         "OAuth and workload identity need tags"),
        ({"credential": "workload_identity", "tags": '["tag:ci"]'},
         "With credential = \"workload_identity\" set client_id, or client_id_read and"),
        ({"credential": "workload_identity", "client_id_read": "kr", "tags": '["tag:ci"]'},
         "client_id_read and client_id_write are set together"),
        ({**AUTH_KEY, "tags": '["ci"]'}, "tags are Tailscale tags such as tag:ci"),
        ({**AUTH_KEY, "hostname": "Bad_Name"}, "hostname is a DNS label"),
        ({**AUTH_KEY, "forwards": "5432=db:5432,oops"}, "forwards are [ADDR:]LPORT=HOST:PORT"),
        ({**AUTH_KEY, "extra_args": "--authkey=tskey-auth-other"},
         "extra_args holds a Tailscale key"),
        ({**AUTH_KEY, "credential_version": "1.5"}, "credential_version is a whole number"),
        ({**AUTH_KEY, "install": "false", "pip_spec": "spacetail==0.1.0"},
         "pip_spec is used only with install = true"),
        ({**AUTH_KEY, "install": "false", "pyz_path": "spacetail.pyz"},
         "pyz_path is used only with install = true and no pip_spec"),
        ({**AUTH_KEY, "pip_spec": "x==1", "pyz_path": "spacetail.pyz"},
         "pyz_path is used only with install = true and no pip_spec"),
        ({**AUTH_KEY, "pyz_path": "spacetail.zip"}, "pyz_path is the path of a spacetail.pyz"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)  # fmt: skip
def test_a_mistake_fails_the_plan_of_the_admin_stack(
    variables: dict[str, str], error: str | None
) -> None:
    """The variables' validations, run by the real Terraform (the same checks as a plan): a
    mistake is one error naming the variable and the fix, and the secrets (ephemeral and
    sensitive) are never shown. (Terraform shows the value of a plain variable it refuses,
    such as a key put in extra_args by mistake: sensitive does not hide it there.)"""
    result = tf.console([tf.MODULE / "variables.tf"], variables, "var.credential")
    if error is None:
        assert result.errors == ""
        assert result.value == f'"{variables["credential"]}"'
        return
    assert "Invalid value for variable" in result.errors, result.errors
    assert error in result.errors, result.errors
    for secret in ("tskey-auth-k", "tskey-client-k"):
        assert f'"{secret}"' not in result.errors and f"{secret} " not in result.errors
