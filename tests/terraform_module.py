"""Read the Terraform module in terraform/ with python-hcl2: its variables and outputs (for the
terraform-docs style tables in terraform/README.md) and its context's hooks."""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
MODULE = REPO / "terraform"
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


def load(name: str) -> dict[str, Any]:
    hcl2 = importlib.import_module("hcl2")  # a test dependency (tox.ini), untyped here
    with (MODULE / name).open(encoding="utf-8") as f:
        data = unquote(hcl2.load(f))
    assert isinstance(data, dict)
    return data


def blocks(kind: str) -> dict[str, dict[str, Any]]:
    """Every `kind "NAME" {...}` block of the module's .tf files, by name."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(MODULE.glob("*.tf")):
        for block in load(path.name).get(kind, []):
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


def variable_rows() -> list[Row]:
    rows = []
    for name, body in blocks("variable").items():
        typ = str(body.get("type", "any")).removeprefix("${").removesuffix("}")
        required = "default" not in body
        default = "n/a" if required else _hcl_value(body["default"])
        rows.append(Row(name, body.get("description", ""), f"`{typ}`", default, required))
    return sorted(rows, key=lambda r: r.name)


def inputs_table() -> str:
    lines = [
        "| Name | Description | Type | Default | Required |",
        "|------|-------------|------|---------|:--------:|",
    ]
    for r in variable_rows():
        required = "yes" if r.required else "no"
        lines.append(f"| {r.name} | {r.description} | {r.type} | {r.default} | {required} |")
    return "\n".join(lines)


def outputs_table() -> str:
    lines = ["| Name | Description |", "|------|-------------|"]
    for name, body in sorted(blocks("output").items()):
        lines.append(f"| {name} | {body.get('description', '')} |")
    return "\n".join(lines)
