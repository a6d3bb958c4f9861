"""The Spacelift plugin (plugin/): the manifest spaceforge generates from plugin.py and a built
spacetail.pyz validates against spaceforge's own schema, carries that pyz (as base64 text, under
the mounted-file limit), its hooks are terraform/hooks.json's for every phase with the pyz's
sha256, its secrets are sensitive, and spaceforge is never a runtime dependency."""

from __future__ import annotations

import base64
import copy
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tests import pyz
from tests import terraform_module as tf
from tests.terraform_module import PER_SCOPE, cli_variables

pytest.importorskip("spaceforge")

REPO = Path(__file__).resolve().parents[2]
PLUGIN = REPO / "plugin" / "plugin.py"
SECRETS = {"TS_AUTHKEY", "TS_CLIENT_SECRET", "TS_ID_TOKEN"}
# No TS_AUDIENCE: tailscale uses --audience only without an ID token, and the plugin always has
# one (Spacelift's, or TS_ID_TOKEN). No SPACETAIL_PIP_SPEC: the plugin carries spacetail.
VARIABLES = SECRETS | {"TS_CLIENT_ID", "SPACETAIL_TAGS", "TS_HOSTNAME", "SPACETAIL_FORWARDS",
                       "TS_EXTRA_ARGS", *PER_SCOPE}  # fmt: skip
MOUNTED_LIMIT = 2_000_000  # Spacelift: a mounted file holds at most 2 MB


def manifest() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml")
    data = yaml.safe_load(pyz.plugin_manifest().read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def context() -> dict[str, Any]:
    (only,) = manifest()["contexts"]
    assert isinstance(only, dict)
    return only


def test_the_manifest_is_generated_the_same_twice(tmp_path: Path) -> None:
    """From one commit and its (reproducible) pyz, spaceforge writes the same manifest."""
    out = tmp_path / "plugin.yaml"
    result = subprocess.run(
        [sys.executable, "-m", "spaceforge", "generate", str(PLUGIN), "-o", str(out)],
        capture_output=True, text=True, timeout=120, check=False, cwd=REPO,
        env={**os.environ, "SPACETAIL_PYZ": str(pyz.built())},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert out.read_bytes() == pyz.plugin_manifest().read_bytes()
    assert not (REPO / "plugin" / "plugin.yaml").exists(), "the manifest is built, not kept"


def test_without_a_pyz_generation_says_how_to_build_one(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "spaceforge", "generate", str(PLUGIN), "-o",
         str(tmp_path / "plugin.yaml")],
        capture_output=True, text=True, timeout=120, check=False, cwd=REPO,
        env={**os.environ, "SPACETAIL_PYZ": str(tmp_path / "missing.pyz")},
    )  # fmt: skip
    assert result.returncode != 0
    assert "tox -e pyz" in result.stdout + result.stderr
    assert not (tmp_path / "plugin.yaml").exists()


def test_the_manifest_carries_the_pyz_under_the_mounted_file_limit() -> None:
    (mounted,) = [m for m in context()["mounted_files"] if m["path"].endswith(".pyz.b64")]
    assert mounted["sensitive"] is False
    assert len(mounted["content"].encode()) <= MOUNTED_LIMIT
    assert base64.b64decode(mounted["content"]) == pyz.built().read_bytes()
    (unpack,) = tf.hooks()["pyz_unpack"]
    assert f"base64 -d {mounted['path']} > /mnt/workspace/spacetail/spacetail.pyz" in unpack


def test_manifest_validates_against_spaceforges_schema() -> None:
    spaceforge = pytest.importorskip("spaceforge")
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((Path(spaceforge.__file__).parent / "schema.json").read_text("utf-8"))
    data = manifest()
    jsonschema.validate(data, schema)
    # The schema is not vacuous: a manifest without a name, or with a parameter of an unknown
    # type, is refused.
    broken = copy.deepcopy(data)
    del broken["name"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)
    broken = copy.deepcopy(data)
    broken["parameters"][0]["type"] = "secret"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_hooks_are_the_one_source_for_every_phase() -> None:
    hooks = context()["hooks"]
    source = tf.hooks()
    checked = [
        line.replace("@SPACETAIL_PYZ_SHA256@", pyz.sha256()) for line in source["pyz_before"]
    ]
    before = source["pyz_unpack"] + checked
    assert pyz.sha256() in before[1]
    for phase in tf.PHASES:
        # spaceforge appends its own `mkdir` of the plugin folder to before_init.
        assert hooks[f"before_{phase}"][: len(before)] == before, phase
        assert hooks[f"after_{phase}"] == source["pyz_after"], phase
    assert hooks["before_init"][len(before) :] == ["mkdir -p /mnt/workspace/plugins/spacetail"]
    for phase in ("plan", "apply", "destroy", "perform"):
        assert len(hooks[f"before_{phase}"]) == len(before), phase


def test_parameters_map_to_spacetails_variables() -> None:
    params = {p["id"]: p for p in manifest()["parameters"]}
    env = {v["key"]: v for v in context()["env"]}
    assert set(env) == VARIABLES
    for key, variable in env.items():
        param = params[variable["value_from_parameter"]]
        assert variable["sensitive"] is param["sensitive"] is (key in SECRETS), key
        # Optional and empty by default: an empty variable is unset for spacetail.
        assert param["required"] is False and param["default"] == "", key


def test_spaceforge_is_not_a_runtime_dependency() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))["project"]
    assert not any("spaceforge" in dep for dep in project["dependencies"])
    assert "spaceforge==1.9.0" in (REPO / "tox.ini").read_text("utf-8")
    # Nothing in the plugin runs a hook method: no spaceforge needed in the run either.
    assert not any("spaceforge" in line for hooks in context()["hooks"].values() for line in hooks)


def test_the_context_attaches_only_where_the_installer_says() -> None:
    """No hard-coded label: a label such as autoattach:tailscale would attach every install
    (every tailnet) to every stack labelled tailscale. The label is chosen at install."""
    assert "labels" not in context()
    assert "autoattach" not in pyz.plugin_manifest().read_text(encoding="utf-8")


def test_the_usage_text_says_how_to_attach_and_authenticate() -> None:
    usage = manifest()["description"]
    assert "## Usage" in usage
    for words in (
        "label you give the plugin",
        "one** way of authenticating",
        "Tags",
        "spacetail comes with the plugin",
    ):
        assert words in usage, words
    readme = (REPO / "plugin" / "README.md").read_text(encoding="utf-8")
    assert "no label of its own" in readme
    for key in {v["key"] for v in context()["env"]}:
        assert f"`{key}`" in readme, key


def test_the_variables_it_sets_are_the_clis() -> None:
    """The same names as the module's and the CLI's (settings.py), the per-scope ones
    included."""
    keys = {v["key"] for v in context()["env"]}
    assert keys <= cli_variables(), keys - cli_variables()
    assert set(PER_SCOPE) <= keys
