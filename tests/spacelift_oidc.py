"""Spacelift-shaped OIDC tokens for the tests: a JWT (header, claims, signature, base64url),
with the claims Spacelift's OIDC documentation lists: `iss` the account's URL, `aud` its host,
`sub` `space:<space>:stack:<stack>:run_type:<TYPE>:scope:<read|write>`, and the custom claims
`spaceId`, `callerType`, `callerId`, `runType`, `runId`, `scope`. The signature is random bytes:
spacetail never verifies it (Tailscale does), and the fake control server does not either."""

from __future__ import annotations

import base64
import json
import secrets
import time
from typing import Any

ACCOUNT = "spacetail-tests.app.spacelift.io"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def jwt(claims: dict[str, Any]) -> str:
    header = {"alg": "RS256", "kid": secrets.token_hex(8), "typ": "JWT"}
    parts = (json.dumps(header).encode(), json.dumps(claims).encode(), secrets.token_bytes(64))
    return ".".join(_b64(p) for p in parts)


def claims(
    scope: str | None,
    *,
    run_type: str = "TRACKED",
    stack: str = "spacetail-e2e",
    space: str = "root",
    run_id: str = "01TEST",
    lifetime: float = 3600.0,
) -> dict[str, Any]:
    now = int(time.time())
    out: dict[str, Any] = {
        "iss": f"https://{ACCOUNT}",
        "aud": ACCOUNT,
        "iat": now,
        "nbf": now,
        "exp": now + int(lifetime),
        "spaceId": space,
        "callerType": "stack",
        "callerId": stack,
        "runType": run_type,
        "runId": run_id,
    }
    if scope is not None:
        out["sub"] = f"space:{space}:stack:{stack}:run_type:{run_type}:scope:{scope}"
        out["scope"] = scope
    else:
        out["sub"] = f"space:{space}:stack:{stack}:run_type:{run_type}"
    return out


def token(scope: str | None, **kwargs: Any) -> str:
    """A Spacelift-shaped token of SCOPE (None: without a scope claim)."""
    return jwt(claims(scope, **kwargs))
