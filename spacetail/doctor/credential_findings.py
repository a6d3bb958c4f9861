"""What `spacetail doctor` finds about the credentials: the ID token workload identity presents
(its issuer, subject, audience and expiry, never its value, and the tailscale version it needs),
and, in a read-scope phase, a credential of the write scope held in the environment."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any

from spacetail.config.credentials import id_token, spacelift_token_file, token_scope
from spacetail.config.scope import Scope, View
from spacetail.doctor.findings import Check, Verdict, decode_jwt, version_tuple
from spacetail.errors import ConfigError

WIF_MIN_VERSION = (1, 90)


def workload_identity(env: Mapping[str, str], tailscale_version: str, now: float) -> Check:
    """The ID token workload identity presents, read as `up` reads it, decoded but not
    verified, with what Tailscale needs to trust it."""
    check = Check("workload identity")
    version = version_tuple(tailscale_version)
    if version and version[:2] < WIF_MIN_VERSION:
        check.add(Verdict.FAIL, f"tailscale {tailscale_version} predates workload "
                  "identity (1.90)", "install a newer tailscale")  # fmt: skip
    try:  # the token as `up` reads it: a FIFO or /dev/zero there is a finding, not a hang
        secret = id_token(env)
        token = secret.read() if secret else None
    except ConfigError as exc:
        message, _, fix = str(exc).partition("; ")
        return check.add(Verdict.FAIL, message, fix or None)
    if secret is None or token is None:
        where = spacelift_token_file(env)
        return check.add(Verdict.FAIL, "TS_CLIENT_ID is set but there is no ID token (no "
                         f"TS_ID_TOKEN, SPACELIFT_OIDC_TOKEN{f' or {where}' if where else ''})",
                         "set TS_ID_TOKEN, or run inside Spacelift (SPACELIFT_OIDC_TOKEN)",
                         )  # fmt: skip
    source = str(secret.path) if secret.spacelift_file else secret.source
    if secret.path and not secret.spacelift_file:
        source += f" (file {secret.path})"
    try:
        claims = decode_jwt(token)
    except ValueError as exc:
        return check.add(Verdict.FAIL, f"the ID token from {source} is {exc}")
    _describe_claims(check, source, claims, now)
    return check


def _describe_claims(check: Check, source: str, claims: Mapping[str, Any], now: float) -> None:
    iss, sub, aud = (str(claims.get(k, "")) for k in ("iss", "sub", "aud"))
    exp = claims.get("exp")
    check.details = {"source": source, "issuer": iss, "subject": sub, "audience": aud,
                     "expires": exp}  # fmt: skip
    check.add(Verdict.OK, f"ID token from {source} (not verified here): issuer {iss}, "
              f"subject {sub}, audience {aud}")  # fmt: skip
    if isinstance(exp, int | float):
        left = exp - now
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(exp))
        if left <= 0:
            check.add(Verdict.FAIL, f"it expired at {when} ({-left / 60:.0f} min ago)",
                      "use a fresh token: Spacelift's lives one hour from the run's "
                      "start")  # fmt: skip
        else:
            check.add(Verdict.OK, f"it expires at {when} (in {left / 60:.0f} min)")
    pattern = re.sub(r":run_type:[^:]+:scope:[^:]+$", ":run_type:*:scope:*", sub)
    check.add(Verdict.OK, f"in Tailscale, the federated identity of this client needs issuer "
              f"{iss}, subject {pattern} (or exactly {sub}) and audience {aud}: the token is "
              "presented as it is, so TS_AUDIENCE cannot change it")  # fmt: skip


def write_credential_check(env: Mapping[str, str]) -> Check | None:
    """In a phase whose Spacelift token has scope read, a stored secret that the write scope
    would use (TS_AUTHKEY_WRITE, or the plain one beside a *_READ one) can be read from the
    environment by whatever the plan runs, which then joins with the write tags. None outside a
    read-scope phase (or when its token cannot be read: the other checks and `up` say why)."""

    try:
        token = id_token(env)
        scope = token_scope(token) if token is not None else None
    except ConfigError:
        return None
    if scope is not Scope.READ:
        return None
    check = Check("least privilege", details={"scope": scope.value})
    secrets = ("TS_AUTHKEY", "TS_CLIENT_SECRET")
    read = {View(env, Scope.READ).get(base)[0] for base in secrets}
    held = [name for name, value in map(View(env, Scope.WRITE).get, secrets) if value]
    held = [name for name in held if name not in read]
    check.details["write_credentials"] = held
    if not held:
        return check.add(Verdict.OK, "scope read: no credential of the write scope in this phase")
    return check.add(
        Verdict.WARN, f"scope read, yet {' and '.join(held)} (the write scope's credential) is in "
        "this phase's environment: whatever the plan runs can read it and join with the write "
        "tags", "give the write scope workload identity (TS_CLIENT_ID_WRITE): no secret to read, "
        "and Tailscale refuses it a read-scope token")  # fmt: skip
