"""A proxy variable's value as curl and Go read it, far enough to print it without its password.

What they accept is wider than a URL:
- No scheme at all (`user:pw@proxy:3128`): Go's httpproxy parses the value again with `http://`
  in front when its scheme is not http, https or socks5; curl takes a proxy without a scheme
  as http, and one or three slashes after a scheme as two.
- The userinfo ends at an `@`: Go takes the last `@` of the authority, curl the first. The
  password is what follows the userinfo's first `:` in both.
- A password that holds what the URL grammar reserves (an unencoded `@`, `/`, `?`, `#`) is
  refused or misread by one of them, but it is still a password, and the messages that quote
  the value (Go's `invalid proxy address "…"`, Python's `proxy URL with no authority: '…'`)
  print it whole.

So the mask is wider than either parser: everything before the value's last `@` is userinfo,
and everything in it after the first `:` is the password. A userinfo without `:` may be a
token used as a user name: it is masked whole.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import unquote

from spacetail.state.proxyenv import PROXY_VARIABLES

MASK = "***"
# Leading blanks and a proxy scheme are kept as written, with any number of slashes (curl
# takes `http:/host` too). Another word before a `:` is a user name: `user:pw@proxy` has no
# scheme, and reading `user:` as one would show the password's first part as the user.
_PREFIX = re.compile(r"\s*(?:(?i:https?|socks4a?|socks5h?):/*)?")
# Shorter secrets are not replaced in free text: a 3-letter password would garble every word
# that holds it. They are masked wherever the value itself is printed.
_MIN_FREE_TEXT = 4


def _parts(value: str) -> tuple[str, str, str] | None:
    """(prefix, userinfo, rest) when VALUE carries a userinfo, else None."""
    prefix = _PREFIX.match(value)
    start = prefix.end() if prefix else 0
    at = value.rfind("@", start)
    if at < 0:
        return None
    return value[:start], value[start:at], value[at + 1 :]


def secret(value: str) -> str | None:
    """The part of VALUE that may be a secret (the password, or a userinfo with no `:`)."""
    parts = _parts(value)
    if parts is None:
        return None
    userinfo = parts[1]
    _user, colon, password = userinfo.partition(":")
    return password if colon else userinfo


def mask(value: str) -> str:
    """VALUE with its password replaced by ***: `http://user:***@proxy:3128`."""
    parts = _parts(value)
    if parts is None:
        return value
    prefix, userinfo, rest = parts
    user, colon, _password = userinfo.partition(":")
    shown = f"{user}:{MASK}" if colon else MASK
    return f"{prefix}{shown}@{rest}"


def mask_in(text: str, env: Mapping[str, str]) -> str:
    """TEXT with every proxy variable's value of ENV masked wherever it appears, and its secret
    too (as written and percent-decoded), for text that quotes them in its own way. One pass,
    longest first: a masked value is never searched again for its secret."""
    table: dict[str, str] = {}
    for name in PROXY_VARIABLES:
        value = env.get(name, "")
        hidden = secret(value)
        if hidden is None:
            continue
        table[value] = mask(value)
        for form in (hidden, unquote(hidden)):
            if len(form) >= _MIN_FREE_TEXT:
                table.setdefault(form, MASK)
    if not table:
        return text
    needles = sorted(table, key=len, reverse=True)
    pattern = "|".join(map(re.escape, needles))
    return re.sub(pattern, lambda m: table[m.group(0)], text)
