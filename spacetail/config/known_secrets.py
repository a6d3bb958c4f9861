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
    found: list[str] = []
    if cfg.auth is not None:
        with contextlib.suppress(ConfigError, OSError):  # a file gone: nothing of it to hide
            found.append(cfg.auth.secret.read())
    found += [env.get(name, "").strip() for name in SECRET_VARIABLES]
    urls = [env.get(name, "") for name in PROXY_VARIABLES] + [cfg.login_server or ""]
    for url in urls:
        hidden = secret(url)
        if hidden:
            found += [hidden, unquote(hidden)]
    return tuple(s for s in found if s and not s.startswith("file:"))
