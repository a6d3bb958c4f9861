"""Read the Terraform modules in terraform/ with python-hcl2: their variables and outputs (for the
terraform-docs style tables in their README.md) and the context's hooks; and evaluate provider-
free parts of them with the real `terraform console` where Terraform is installed."""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spacetail.config import settings

REPO = Path(__file__).resolve().parent.parent
MODULE = REPO / "terraform"
LEAST_PRIVILEGE = MODULE / "least-privilege"
HOOKS = MODULE / "hooks.json"
PHASES = ("init", "plan", "apply", "destroy", "perform")


def unquote(value: Any) -> Any:
    """python-hcl2 8 keeps the quotes of string literals and block labels; drop them."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return json.loads(value)
    if isinstance(value, dict):
        return {unquote(k): unquote(v) for k, v in value.items() if k != "__is_block__"}
    if isinstance(value, list):
        return [unquote(v) for v in value]
    return value


def load(name: str, module: Path = MODULE) -> dict[str, Any]:
    hcl2 = importlib.import_module("hcl2")  # a test dependency (tox.ini), untyped here
    with (module / name).open(encoding="utf-8") as f:
        data = unquote(hcl2.load(f))
    assert isinstance(data, dict)
    return data


def blocks(kind: str, module: Path = MODULE) -> dict[str, dict[str, Any]]:
    """Every `kind "NAME" {...}` block of the module's .tf files, by name."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(module.glob("*.tf")):
        for block in load(path.name, module).get(kind, []):
            found.update(block)
    return found


def hooks() -> dict[str, list[str]]:
    data = json.loads(HOOKS.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return {k: v for k, v in data.items() if isinstance(v, list)}


@dataclass(frozen=True)
class Row:
    name: str
    description: str
    type: str
    default: str
    required: bool


def _hcl_value(value: Any) -> str:
    if value is None:
        return "`null`"
    return f"`{json.dumps(value)}`"


def variable_rows(module: Path = MODULE) -> list[Row]:
    rows = []
    for name, body in blocks("variable", module).items():
        typ = str(body.get("type", "any")).removeprefix("${").removesuffix("}")
        required = "default" not in body
        default = "n/a" if required else _hcl_value(body["default"])
        rows.append(Row(name, body.get("description", ""), f"`{typ}`", default, required))
    return sorted(rows, key=lambda r: r.name)


def inputs_table(module: Path = MODULE) -> str:
    lines = [
        "| Name | Description | Type | Default | Required |",
        "|------|-------------|------|---------|:--------:|",
    ]
    for r in variable_rows(module):
        required = "yes" if r.required else "no"
        lines.append(f"| {r.name} | {r.description} | {r.type} | {r.default} | {required} |")
    return "\n".join(lines)


def outputs_table(module: Path = MODULE) -> str:
    lines = ["| Name | Description |", "|------|-------------|"]
    for name, body in sorted(blocks("output", module).items()):
        lines.append(f"| {name} | {body.get('description', '')} |")
    return "\n".join(lines)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class Console:
    """What `terraform console` said: the value, or the errors (it exits 0 either way)."""

    value: str
    errors: str


def console(files: Sequence[Path], variables: Mapping[str, str], expression: str) -> Console:
    """`terraform console` on a copy of FILES (which must use no provider), with VARIABLES as
    -var arguments (values in HCL syntax: lists as ["a"]): the variables' validations run as in
    a plan. Colours and box drawing removed, the errors on one line."""
    terraform = shutil.which("terraform")
    assert terraform is not None
    with tempfile.TemporaryDirectory() as folder:
        for path in files:
            shutil.copy(path, folder)
        args = [arg for name, value in variables.items() for arg in ("-var", f"{name}={value}")]
        env = {**os.environ, "TF_CLI_CONFIG_FILE": os.devnull, "CHECKPOINT_DISABLE": "1",
               "TF_IN_AUTOMATION": "1"}  # fmt: skip
        result = subprocess.run(
            [terraform, "console", *args], input=expression + "\n", capture_output=True,
            text=True, timeout=60, check=False, cwd=folder, env=env,
        )  # fmt: skip
    text = _ANSI.sub("", result.stdout + result.stderr)
    if "Error:" in text or result.returncode != 0:
        return Console(
            "", " ".join(text.replace("│", " ").replace("╷", " ").replace("╵", " ").split())
        )
    return Console(text.strip(), "")


# The per-scope names of issue 21 that the module and the plugin set; the CLI reads them
# (falling back to TS_CLIENT_ID / SPACETAIL_TAGS) and
# spacetail/config/settings.py declares them, which
# cli_variables() checks.
PER_SCOPE = ("TS_CLIENT_ID_READ", "TS_CLIENT_ID_WRITE", "SPACETAIL_TAGS_READ",
             "SPACETAIL_TAGS_WRITE")  # fmt: skip
# Read by the install hook line (terraform/hooks.json), not by spacetail itself.
HOOK_VARIABLES = ("SPACETAIL_PIP_SPEC",)


def cli_variables() -> set[str]:
    names = {s.env for s in (*settings.UP, *settings.INSTALL)}
    names |= {name for name, _ in (*settings.CREDENTIALS, *settings.PASSTHROUGH)}
    return names | set(HOOK_VARIABLES)
