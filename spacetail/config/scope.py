"""Least privilege per phase: the scope Spacelift gives a phase, and the per-scope settings that
scope selects.

Spacelift's OIDC token carries a `scope` claim: `read` for proposed runs and for the planning of
a tracked run that waits for approval, `write` for the approved apply, tasks, destroy and testing
runs ("should not perform write operations before human confirmation"). spacetail decodes the
claim without verifying the token: Tailscale verifies it when the token is exchanged, and a
forged claim could only select an identity whose federation then refuses the token. In a phase
of scope S, each per-scope setting NAME is read from NAME_S when that is set, else from the plain
NAME. A read-scope phase never reads a `*_WRITE` setting: the read view has no road to one.

Light on purpose: the status imports `Scope` (every `spacetail status` pays for this module).
"""

from __future__ import annotations

import enum

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any


class Scope(enum.Enum):
    READ = "read"
    WRITE = "write"

    def name_of(self, base: str) -> str:
        """The per-scope form of the setting BASE: TS_CLIENT_ID_READ for TS_CLIENT_ID."""
        return f"{base}_{self.value.upper()}"

    @property
    def other(self) -> Scope:
        return Scope.WRITE if self is Scope.READ else Scope.READ


# The settings that have a per-scope form. The credentials come first, the order in which a
# message names the one that is missing.
CREDENTIALS = ("TS_CLIENT_ID", "TS_CLIENT_SECRET", "TS_AUTHKEY")
TAGS = "SPACETAIL_TAGS"
PER_SCOPE = (*CREDENTIALS, TAGS)
SCOPED = tuple(s.name_of(base) for base in PER_SCOPE for s in Scope)
# containerboot's alias, read for the plain setting only (as containerboot reads it: TS_AUTHKEY
# first).
_ALIASES = {"TS_AUTHKEY": "TS_AUTH_KEY"}


def decode_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT, NOT verified (the doctor shows them, `up` reads the scope; only
    Tailscale trusts them). ValueError whose reason follows "the token is" and never quotes it."""
    import base64
    import json

    parts = token.strip().split(".")
    if len(parts) != 3:
        raise ValueError("not a JWT (three dot-separated parts)")
    try:
        raw = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(raw)
    except (ValueError, RecursionError):
        raise ValueError("a JWT whose payload is not base64url JSON") from None
    if not isinstance(claims, dict):
        raise ValueError("a JWT whose payload is not a JSON object")
    return claims


def scope_claim(claims: Mapping[str, Any]) -> Scope | None:
    """The token's `scope` claim; None when it has none. ValueError for another value."""
    value = claims.get("scope")
    if value is None:
        return None
    if not isinstance(value, str) or value not in ("read", "write"):
        raise ValueError("a JWT whose scope claim is neither read nor write")
    return Scope(value)


class View:
    """The settings as a phase of one scope sees them (scope None: the plain settings only)."""

    def __init__(self, env: Mapping[str, str], scope: Scope | None) -> None:
        self.env = env
        self.scope = scope

    def get(self, base: str) -> tuple[str, str]:
        """(the variable that gives BASE its value in this scope, the value stripped): the
        per-scope one when set, else the plain one (or its alias); the plain name when none is
        set."""
        names = [base, *([_ALIASES[base]] if base in _ALIASES else [])]
        if self.scope is not None:
            names.insert(0, self.scope.name_of(base))
        for name in names:
            value = self.env.get(name, "").strip()
            if value:
                return name, value
        return base, ""

    def has_credential(self) -> bool:
        return any(self.get(base)[1] for base in CREDENTIALS)


def scoped_settings(env: Mapping[str, str]) -> list[str]:
    """The per-scope variables that are set."""
    return [name for name in SCOPED if env.get(name, "").strip()]
