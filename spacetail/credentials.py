"""Credentials, decided once: which way of logging in the settings choose (auth key, OAuth client
secret, workload identity), and where the secret is (a value, or a file that only its owner can
read). Nothing downstream looks at a secret's text to decide anything again."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from spacetail.errors import ConfigError
from spacetail.log import holds_secret

AuthKind = Literal["authkey", "oauth", "wif"]
# Every variable that may hold a credential: never passed to a child process.
SECRET_VARIABLES = (
    "TS_AUTHKEY", "TS_AUTH_KEY", "TS_CLIENT_SECRET", "TS_ID_TOKEN", "SPACELIFT_OIDC_TOKEN",
)  # fmt: skip


@dataclass(frozen=True)
class Secret:
    """A secret value or a file holding one; never printed."""

    source: str  # the variable it came from, for messages
    value: str | None = field(default=None, repr=False)
    path: Path | None = None

    def read(self) -> str:
        if self.value is not None:
            return self.value.strip()
        assert self.path is not None
        try:
            return self.path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"{self.source}: cannot read {self.path} ({exc.strerror}); check the file"
            ) from exc

    def __repr__(self) -> str:
        where = f"file:{self.path}" if self.path else "<redacted>"
        return f"Secret({self.source}, {where})"


@dataclass(frozen=True)
class Auth:
    kind: AuthKind
    secret: Secret  # auth key, OAuth client secret, or ID token
    client_id: str | None = None
    audience: str | None = None


def secret_from(name: str, raw: str, *, check_mode: bool = True) -> Secret:
    """A value, or `file:PATH` naming a file that exists and that others cannot read."""
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
    try:
        st = path.stat()
    except OSError:
        raise ConfigError(
            f"{name}: file {path} does not exist; create it or fix the path after file:"
        ) from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{name}: {path} is not a regular file; point file: at the secret")
    if check_mode and st.st_mode & 0o044:
        raise ConfigError(
            f"{name}: {path} is readable by other users (mode {stat.S_IMODE(st.st_mode):o}); "
            f"run: chmod 600 {path}"
        )
    if not os.access(path, os.R_OK):
        raise ConfigError(f"{name}: {path} is not readable by uid {os.getuid()}; fix its owner")
    return Secret(name, path=path)


def auth_from_env(env: Mapping[str, str], tags: tuple[str, ...]) -> Auth | None:
    # Two ways of logging in at once is a mistake to name, not a precedence to guess at.
    given = [
        n for n in ("TS_AUTHKEY", "TS_CLIENT_SECRET", "TS_CLIENT_ID") if env.get(n, "").strip()
    ]
    if not given and env.get("TS_AUTH_KEY", "").strip():
        given = ["TS_AUTH_KEY"]
    if len(given) > 1:
        raise ConfigError(
            f"{given[1]}: set together with {given[0]}; set one credential and unset the other"
        )
    for name in ("TS_AUTHKEY", "TS_AUTH_KEY"):
        raw = env.get(name, "").strip()
        if raw:
            secret = secret_from(name, raw)
            # Decided here, once: an OAuth client secret given as an auth key mints a key.
            if secret.read().startswith("tskey-client-"):
                if not tags:
                    raise _oauth_without_tags(name)
                return Auth("oauth", secret)
            return Auth("authkey", secret)
    raw = env.get("TS_CLIENT_SECRET", "").strip()
    if raw:
        if not tags:
            raise _oauth_without_tags("TS_CLIENT_SECRET")
        return Auth("oauth", secret_from("TS_CLIENT_SECRET", raw))
    client_id = env.get("TS_CLIENT_ID", "").strip()
    if client_id:
        if not tags:
            raise ConfigError(
                "TS_CLIENT_ID: workload identity needs tags; set SPACETAIL_TAGS=tag:ci "
                "(tags the federated identity may assign)"
            )
        audience = env.get("TS_AUDIENCE", "").strip() or None
        token = env.get("TS_ID_TOKEN", "").strip()
        if token:
            return Auth("wif", secret_from("TS_ID_TOKEN", token), client_id, audience)
        spacelift_token = env.get("SPACELIFT_OIDC_TOKEN", "").strip()
        if spacelift_token:
            return Auth(
                "wif", Secret("SPACELIFT_OIDC_TOKEN", value=spacelift_token), client_id, audience
            )
        root = env.get("TF_VAR_spacelift_workspace_root", "").strip()
        if root and (Path(root) / "spacelift.oidc").is_file():
            # Spacelift writes this file itself; its mode is Spacelift's business.
            token_file = Path(root) / "spacelift.oidc"
            return Auth("wif", Secret("spacelift.oidc", path=token_file), client_id, audience)
        raise ConfigError(
            "TS_CLIENT_ID: set, but there is no ID token; set TS_ID_TOKEN, or run on a "
            "Spacelift account with OIDC (SPACELIFT_OIDC_TOKEN)"
        )
    return None


def _oauth_without_tags(name: str) -> ConfigError:
    return ConfigError(
        f"{name}: an OAuth client secret needs tags; set SPACETAIL_TAGS=tag:ci "
        "(tags the OAuth client may assign)"
    )
