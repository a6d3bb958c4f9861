"""Every secret a manager (or the `up` that starts it) knows, for the one redaction of what it
says (log.Redactor): the credential it logs in with (an auth key, an OAuth client secret, an ID
token), the values of every credential variable it was given, the passwords of the proxy
variables, and the userinfo of TS_LOGIN_SERVER's URL (tailscale quotes that URL whole, in its
errors and in its Prefs log line)."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from urllib.parse import unquote

from spacetail.config.credentials import SECRET_VARIABLES
from spacetail.config.loader import Config
from spacetail.config.proxyurl import secret
from spacetail.errors import ConfigError
from spacetail.state.proxyenv import PROXY_VARIABLES


def known_secrets(cfg: Config, env: Mapping[str, str]) -> tuple[str, ...]:
    """What a manager (and its `up`) knows: ENV's, and the credential CFG logs in with."""
    found = list(env_secrets(env, cfg.login_server))
    if cfg.auth is not None:
        with contextlib.suppress(ConfigError, OSError):  # a file gone: nothing of it to hide
            found.append(cfg.auth.secret.read())
    return tuple(found)


def env_secrets(env: Mapping[str, str], login_server: str | None = None) -> tuple[str, ...]:
    """What ENV alone gives away, for a command that loads no configuration (`logs`): the
    credential variables' values, the proxies' passwords, TS_LOGIN_SERVER's userinfo."""
    found = [env.get(name, "").strip() for name in SECRET_VARIABLES]
    urls = [env.get(name, "") for name in PROXY_VARIABLES]
    urls += [login_server or env.get("TS_LOGIN_SERVER", "").strip()]
    for url in urls:
        hidden = secret(url)
        if hidden:
            found += [hidden, unquote(hidden)]
    return tuple(s for s in found if s and not s.startswith("file:"))
