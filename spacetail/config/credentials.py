"""Credentials, decided once: which way of logging in the settings choose (auth key, OAuth client,
workload identity), under containerboot's own rules for which settings go together; for which
scope of Spacelift's OIDC token (scope.py); and where the secret is (a value, or a file that
only its owner can read or write, read by secrets.py's one guarded reader). Nothing downstream
looks at a secret's text to decide anything again."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from spacetail.config.scope import (
    CREDENTIALS,
    TAGS,
    Scope,
    View,
    decode_claims,
    scope_claim,
    scoped_settings,
)
from spacetail.config.secrets import SPACELIFT_FILE, Secret
from spacetail.errors import ConfigError
from spacetail.log import holds_secret

AuthKind = Literal["authkey", "oauth", "wif"]
# Every variable that may hold a credential: never passed to a child process of spacetail's own
# (tailscaled, the tailscale CLI).
SECRET_VARIABLES = (
    "TS_AUTHKEY", "TS_AUTH_KEY", "TS_CLIENT_SECRET", "TS_ID_TOKEN", "SPACELIFT_OIDC_TOKEN",
    "TS_AUTHKEY_READ", "TS_AUTHKEY_WRITE", "TS_CLIENT_SECRET_READ", "TS_CLIENT_SECRET_WRITE",
)  # fmt: skip
# The command `spacetail run` starts needs the tailnet, not the key that joined it: these are
# dropped from its environment. Spacelift's own token is not spacetail's to take away: Spacelift
# gives it to every program of the phase (and writes it to the workspace), and a Vault or cloud
# login in the command may read it.
TAILNET_CREDENTIALS = tuple(v for v in SECRET_VARIABLES if v != "SPACELIFT_OIDC_TOKEN")


@dataclass(frozen=True)
class Auth:
    kind: AuthKind
    secret: Secret  # auth key, OAuth client secret, or ID token
    client_id: str | None = None  # workload identity's, or an OAuth client's (containerboot)
    # The `tailscale up` flag that reads the secret's file: auth-key, client-secret, id-token.
    file_flag: str = "auth-key"


def secret_from(name: str, raw: str) -> Secret:
    """A value, or `file:PATH` naming a file that read_secret_file accepts: one that others can
    neither read nor write (read once here, so that a bad file is refused before anything
    starts)."""
    if not raw.startswith("file:"):
        return Secret(name, value=raw)
    text = raw[len("file:") :]
    if holds_secret(text):
        # The key itself after file: (a mistyped value): name the mistake, never the value.
        raise ConfigError(
            f"{name}: what follows file: looks like a key, not a path; "
            f"set {name} to the key itself, or to file:PATH"
        )
    try:
        path = Path(text).expanduser()
    except RuntimeError:  # ~user of a user that does not exist
        raise ConfigError(f"{name}: cannot expand {text!r}; give the file's full path") from None
    secret = Secret(name, path=path)
    secret.read()
    return secret


def id_token(env: Mapping[str, str]) -> Secret | None:
    """Workload identity's ID token, where `up` takes it from, in order: TS_ID_TOKEN (a value
    or file:), SPACELIFT_OIDC_TOKEN, the workspace's spacelift.oidc. None when there is none;
    ConfigError for a file that cannot be a token."""
    token = env.get("TS_ID_TOKEN", "").strip()
    if token:
        return secret_from("TS_ID_TOKEN", token)
    spacelift_token = env.get("SPACELIFT_OIDC_TOKEN", "").strip()
    if spacelift_token:
        return Secret("SPACELIFT_OIDC_TOKEN", value=spacelift_token)
    token_file = spacelift_token_file(env)
    if token_file is None or not os.path.lexists(token_file):
        return None
    secret = Secret(SPACELIFT_FILE, path=token_file, spacelift_file=True)
    secret.read()
    return secret


def spacelift_token_file(env: Mapping[str, str]) -> Path | None:
    """Where Spacelift writes the run's OIDC token (None outside Spacelift)."""
    root = env.get("TF_VAR_spacelift_workspace_root", "").strip()
    return Path(root) / SPACELIFT_FILE if root else None


def token_scope(token: Secret) -> Scope | None:
    """The scope claim of TOKEN (decoded, not verified); ConfigError for a token that is not a
    JWT, never quoting it."""
    try:
        return scope_claim(decode_claims(token.read()))
    except ValueError as exc:
        fix = (
            "set it to an OIDC ID token (a JWT), or file:PATH"
            if token.source == "TS_ID_TOKEN"
            else "Spacelift writes a JWT there: check that nothing in the stack overrides it"
        )
        raise ConfigError(
            f"{token.source}: the ID token is {exc}, so the phase's scope cannot be read (the "
            f"token is not shown); {fix}"
        ) from None


# Which tags each scope would advertise: scope (None: the plain setting) -> (setting, tags).
TagSettings = Mapping[Scope | None, tuple[str, tuple[str, ...]]]


@dataclass(frozen=True)
class Choice:
    """What one phase logs in with: the credential, the scope it was chosen for, the tags."""

    auth: Auth | None
    scope: Scope | None = None
    tags: tuple[str, ...] = ()
    # Why the per-scope settings were not used, or that a write phase presents the read
    # identity: for `up` to say.
    note: str | None = None


def auth_from_env(env: Mapping[str, str], tags: TagSettings) -> Choice:
    """The credential of this phase: the scope of its Spacelift token selects the per-scope
    settings (config/scope.py), then containerboot's rules say which of them go together. Raises
    ConfigError: one line naming the settings and the fix."""
    scoped = any(env.get(s.name_of(b), "").strip() for b in CREDENTIALS for s in Scope) or any(
        tags[s][1] for s in Scope
    )
    token, scope, why = _phase_scope(env, scoped)
    view = View(env, scope)
    _refuse_missing_scope(env, view, scope, why)
    refuse_pairs(view, env)
    tag_name, tag_values = tags[scope] if scope is not None and tags[scope][1] else tags[None]
    note = None
    if scope is Scope.READ:
        _refuse_write_identity(env, view)
        _refuse_write_tags(tags, tag_name, tag_values)
    elif scope is Scope.WRITE and (same := _same_identity(env, view, Scope.READ)):
        note = (
            f"scope write, yet {same[0]} holds the same value as {same[1]}: this write phase "
            f"presents the read identity; set {Scope.WRITE.name_of(same[2])} to the write one"
        )
    tag_hint = scope.name_of(TAGS) if scope is not None and scoped else TAGS
    auth = _auth(view, env, token, tag_values, tag_hint)
    if why is not None:
        unused = [*scoped_settings(env), *(tags[s][0] for s in Scope if tags[s][1])]
        note = f"{why}: using the plain settings, not {', '.join(dict.fromkeys(unused))}"
    return Choice(auth, scope, tag_values, note)


def _phase_scope(
    env: Mapping[str, str], scoped: bool
) -> tuple[Secret | None, Scope | None, str | None]:
    """(the ID token, its scope, why the plain settings are used): read with workload identity,
    or when a per-scope setting asks for a scope."""
    if not (scoped or any(View(env, s).get("TS_CLIENT_ID")[1] for s in (None, *Scope))):
        return None, None, None
    token = id_token(env)
    if token is None:
        why = "there is no Spacelift token (SPACELIFT_OIDC_TOKEN) to tell this phase's scope"
        return None, None, why if scoped else None
    scope = token_scope(token)
    if scope is None and scoped:
        return token, None, f"the ID token in {token.source} has no scope claim"
    return token, scope, None


def _refuse_missing_scope(
    env: Mapping[str, str], view: View, scope: Scope | None, note: str | None
) -> None:
    """A phase whose scope has no credential of its own, nor a plain one, while the other scope
    has one: it fails here, before anything starts, and never borrows the other's."""
    if view.has_credential():
        return
    for base in CREDENTIALS:
        if scope is None:
            given = [s.name_of(base) for s in Scope if env.get(s.name_of(base), "").strip()]
            if given:
                raise ConfigError(
                    f"{base}: not set, and {' and '.join(given)} need a phase scope, but {note}; "
                    f"set {base}, or run where Spacelift gives the phase its OIDC token"
                )
        elif env.get(scope.other.name_of(base), "").strip():
            mine, theirs = scope.name_of(base), scope.other.name_of(base)
            never = " (a read-scope phase never presents the write one)" * (scope is Scope.READ)
            raise ConfigError(
                f"{mine}: this phase's Spacelift token has scope {scope.value}, and only "
                f"{theirs} is set{never}; set {mine}, or {base} for every phase"
            )


def _presented(base: str, name: str, raw: str, *, strict: bool) -> str | None:
    """What the setting NAME (of BASE) gives tailscale: a file's contents, without the options
    tailscale reads after `?` (`?ephemeral=false`). With STRICT a file that cannot be read
    raises (the phase would fail on it anyway); else it is None: nothing to compare."""
    try:
        value = secret_from(name, raw).read() if base != "TS_CLIENT_ID" else raw
    except ConfigError:
        if strict:
            raise
        return None
    return value.partition("?")[0].strip() or None


def _same_identity(env: Mapping[str, str], view: View, other: Scope) -> tuple[str, str, str] | None:
    """(the setting this phase presents, the setting of scope OTHER with the same value, the
    base of the one presented) when one credential this phase would present is one of OTHER's,
    compared by value: an OAuth client secret given as an auth key, a file holding the key, the
    key with options appended are the same identity. None when none is."""
    theirs: dict[str, str] = {}
    for base in CREDENTIALS:
        name = other.name_of(base)
        raw = env.get(name, "").strip()
        value = _presented(base, name, raw, strict=False) if raw else None
        if value is not None:
            theirs.setdefault(value, name)
    for base in CREDENTIALS:
        name, raw = view.get(base)
        if name == other.name_of(base) or not raw:
            continue
        value = _presented(base, name, raw, strict=True)
        if value is not None and value in theirs:
            return name, theirs[value], base
    return None


def _refuse_write_identity(env: Mapping[str, str], view: View) -> None:
    """What a read-scope phase would present must not be a write credential, by value."""
    same = _same_identity(env, view, Scope.WRITE)
    if same is not None:
        name, write, base = same
        raise ConfigError(
            f"{name}: holds the same value as {write} (compared as tailscale would get them, "
            f"file contents and ?options included; neither is shown), which a read-scope phase "
            f"never presents; set {Scope.READ.name_of(base)} to the identity for scope read"
        )


def _refuse_write_tags(tags: TagSettings, name: str, presented: tuple[str, ...]) -> None:
    """A read-scope phase never advertises a tag that only the write scope's tags have (the
    write tags, less the read scope's own), whichever setting it came from."""
    write_name, write = tags[Scope.WRITE]
    only_write = set(write) - set(tags[Scope.READ][1])
    bad = [tag for tag in presented if tag in only_write]
    if bad:
        raise ConfigError(
            f"{name}: {', '.join(bad)} is among the write scope's tags ({write_name}), which a "
            f"read-scope phase never advertises; set {Scope.READ.name_of(TAGS)} to the tags for "
            "scope read"
        )


def refuse_pairs(view: View, env: Mapping[str, str]) -> None:
    """containerboot's rules (cmd/containerboot/settings.go), with the names this phase reads:
    an ID token or an audience only with a client ID; an ID token never with a client secret or
    an audience; an audience never with a client secret; an auth key alone."""
    key, secret, client = (view.get(b) for b in ("TS_AUTHKEY", "TS_CLIENT_SECRET", "TS_CLIENT_ID"))
    token = ("TS_ID_TOKEN", env.get("TS_ID_TOKEN", "").strip())
    audience = ("TS_AUDIENCE", env.get("TS_AUDIENCE", "").strip())
    for given in (token, audience):
        if given[1] and not client[1]:
            raise ConfigError(
                f"{given[0]}: set, but {client[0]} is not; {given[0]} is for workload identity: "
                f"set {client[0]} (the federated identity's client ID), or unset {given[0]}"
            )
    for first, second, why in (
        (token, secret, "an OAuth client takes no ID token"),
        (token, audience, "the audience is for requesting a token, and one is given"),
        (audience, secret, "an OAuth client takes no audience"),
    ):
        if first[1] and second[1]:
            raise ConfigError(
                f"{second[0]}: set together with {first[0]} ({why}); unset one of them"
            )
    if key[1]:
        other = next((n for n, v in (client, secret, token, audience) if v), None)
        if other is not None:
            raise ConfigError(
                f"{key[0]}: set together with {other}; an auth key is used alone: unset "
                f"{other}, or unset {key[0]} and use the OAuth client or workload identity"
            )


def _auth(
    view: View,
    env: Mapping[str, str],
    token: Secret | None,
    tags: tuple[str, ...],
    tag_hint: str,
) -> Auth | None:
    key_name, key = view.get("TS_AUTHKEY")
    secret_name, secret = view.get("TS_CLIENT_SECRET")
    id_name, client_id = view.get("TS_CLIENT_ID")
    if key:
        found = secret_from(key_name, key)
        # Decided here, once: an OAuth client secret given as an auth key mints a key.
        if found.read().startswith("tskey-client-"):
            if not tags:
                raise _oauth_without_tags(key_name, tag_hint)
            return Auth("oauth", found)
        return Auth("authkey", found)
    if secret:
        if not tags:
            raise _oauth_without_tags(secret_name, tag_hint)
        found = secret_from(secret_name, secret)
        return Auth("oauth", found, client_id or None, file_flag="client-secret")
    if not client_id:
        return None
    if not tags:
        raise ConfigError(
            f"{id_name}: workload identity needs tags; set {tag_hint}=tag:ci "
            "(tags the federated identity may assign)"
        )
    token = token or id_token(env)
    if token is None:
        raise ConfigError(
            f"{id_name}: set, but there is no ID token; set TS_ID_TOKEN, or run on a "
            "Spacelift account with OIDC (SPACELIFT_OIDC_TOKEN)"
        )
    if env.get("TS_AUDIENCE", "").strip():
        # containerboot refuses TS_ID_TOKEN with TS_AUDIENCE; tailscale reads --audience only
        # to request a token when it is given none, and spacetail always gives it one.
        raise ConfigError(
            f"TS_AUDIENCE: set together with the ID token in {token.source} (the audience is "
            "for requesting a token, and one is given, so it would do nothing); unset TS_AUDIENCE"
        )
    return Auth("wif", token, client_id, file_flag="id-token")


def _oauth_without_tags(name: str, tag_hint: str) -> ConfigError:
    return ConfigError(
        f"{name}: an OAuth client secret needs tags; set {tag_hint}=tag:ci "
        "(tags the OAuth client may assign)"
    )
