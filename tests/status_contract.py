"""The status contract, checked wherever a test reads `spacetail status --json`: the output
validates against docs/status.schema.json, and parses into spacetail's own Status type and back
unchanged (so the schema, the type and the program say the same thing)."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema

from spacetail.state.status import Status

SCHEMA = Path(__file__).resolve().parent.parent / "docs" / "status.schema.json"


@functools.cache
def _validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def state_of(data: dict[str, Any]) -> str:
    """Which of the states a status describes: running, connected, logging in, failed,
    stopping, stopped, foreign or stale."""
    if data["foreign"]:
        return "foreign"
    if not data["running"]:
        return "stale" if data["stale"] or data["problem"] else "stopped"
    if data["connected"]:
        return "connected"
    return {"failed": "failed", "stopping": "stopping", "running": "running"}.get(
        data["phase"], "logging in"
    )


def validate(data: object) -> dict[str, Any]:
    """DATA, once it has passed both checks; AssertionError naming what does not fit."""
    assert isinstance(data, dict), f"status --json printed {type(data).__name__}, not an object"
    errors = sorted(_validator().iter_errors(data), key=lambda e: list(e.path))
    assert not errors, "status --json breaks its schema: " + "; ".join(
        f"{'/'.join(map(str, e.path)) or '(top)'}: {e.message}" for e in errors[:5]
    )
    assert Status.from_json(data).to_json() == data, "Status does not read back what it wrote"
    return data
