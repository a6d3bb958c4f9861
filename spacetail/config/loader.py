"""Settings from the environment and the command line, checked up front: a bad value is one line
that names the setting, says what is wrong and how to fix it, before anything starts."""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from spacetail.config import hostport
from spacetail.config.credentials import Auth, Choice, auth_from_env
from spacetail.config.scope import Scope
from spacetail.config.settings import BY_KEY, CREDENTIAL_UP_FLAGS, UP_FLAGS, Setting
from spacetail.errors import ConfigError
from spacetail.forwards.spec import ForwardSpec, parse_forwards
from spacetail.log import holds_secret, redact

# Each setting's default is written once, in its row of settings.UP (its --help shows it); the
# Config below has none of its own, so a value the user did not give is always the table's.
DEFAULT_SOCKS5 = BY_KEY["socks5-server"].default
DEFAULT_HTTP_PROXY = BY_KEY["http-proxy"].default

_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_TAG = re.compile(r"^tag:[a-zA-Z][a-zA-Z0-9-]*$")
_DIGITS = re.compile(r"^[0-9]+$")  # str.isdigit() also accepts "²", which int() refuses
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True, kw_only=True)
class Config:
    """The checked settings. No field has a default of its own: load() gives each setting's
    value, or its default from the settings table (settings.UP)."""

    auth: Auth | None
    hostname: str
    tags: tuple[str, ...]
    accept_routes: bool
    accept_dns: bool
    exit_node: str | None
    login_server: str | None
    ephemeral: bool
    extra_args: tuple[str, ...]
    tailscaled_extra_args: tuple[str, ...]
    socks5: str
    http_proxy: str
    log_upload: bool
    persist_node: bool
    timeout: float
    peers: tuple[str, ...]
    wait_for: tuple[tuple[str, int], ...]  # (host, port): up is ready once each answers
    progress: bool  # a line on stderr every few seconds while up or wait waits
    watch_shell: bool
    watch_pid: int | None
    max_lifetime: float  # Spacelift's run timeout is 70 minutes: the default is well before
    forwards: tuple[ForwardSpec, ...]
    scope: Scope | None = None  # of the phase's Spacelift token, when it was read
    scope_note: str | None = None  # why the per-scope settings were not used (`up` says it)

    @property
    def proxies(self) -> dict[str, str]:
        return {"http": f"http://{self.http_proxy}", "socks5": f"socks5://{self.socks5}"}


_TAILSCALED_FLAGS = {
    "tun": "spacetail always uses --tun=userspace-networking (no root, no /dev/net/tun)",
    "socket": "spacetail puts the LocalAPI socket in its state folder",
    "state": "set SPACETAIL_NODE_STATE=workspace to keep the node's state",
    "statedir": "set SPACETAIL_NODE_STATE=workspace to keep the node's state",
    "socks5-server": "set TS_SOCKS5_SERVER instead",
    "outbound-http-proxy-listen": "set TS_OUTBOUND_HTTP_PROXY_LISTEN instead",
}


def parse_bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name}: {raw!r} is not a boolean; use true or false")


def parse_seconds(name: str, raw: str, *, allow_zero: bool = False, maximum: float = 1e7) -> float:
    text = raw.strip().lower()
    scale = 1.0
    for suffix, factor in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if text.endswith(suffix) and text[: -len(suffix)].replace(".", "", 1).isdigit():
            text, scale = text[: -len(suffix)], factor
            break
    try:
        seconds = float(text) * scale
    except ValueError:
        seconds = -1.0
    if math.isnan(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        least = "0 or more" if allow_zero else "more than 0"
        raise ConfigError(
            f"{name}: {raw!r} is not a duration; give seconds ({least}) or e.g. 500ms, 90s, 2m, 1h"
        )
    if seconds > maximum:
        raise ConfigError(f"{name}: {raw!r} is too long; at most {maximum:g} seconds")
    return seconds


def parse_address(name: str, raw: str) -> str:
    """host:port with a numeric port; a bare :port means localhost only."""
    try:
        host, port = hostport.parse(raw.strip(), default_host="127.0.0.1")
    except ValueError as exc:
        raise ConfigError(
            f"{name}: {raw!r} is not an address host:port ({exc}); use e.g. 127.0.0.1:1080"
        ) from None
    return hostport.format(host, port)


def parse_targets(name: str, raw: str) -> tuple[tuple[str, int], ...]:
    """HOST:PORT targets separated by commas or spaces, each once, in order."""
    targets: dict[tuple[str, int], None] = {}
    for text in re.split(r"[,\s]+", raw.strip()):
        if not text:
            continue
        try:
            targets[hostport.parse(text)] = None
        except ValueError as exc:
            raise ConfigError(
                f"{name}: {exc} (a target is HOST:PORT, e.g. db.example.ts.net:5432)"
            ) from None
    return tuple(targets)


def check_loopback(name: str, address: str) -> None:
    """A proxy on another address serves whoever reaches it: the whole network, into the
    tailnet. Only loopback, unless SPACETAIL_PROXY_PUBLIC says so."""
    host = hostport.split(address)[0].lower()
    if host in ("localhost", "::1") or re.match(r"^127\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$", host):
        return
    raise ConfigError(
        f"{name}: {address} is not a loopback address, so anyone who can reach it could use the "
        "proxy into your tailnet; use 127.0.0.1:PORT, or set SPACETAIL_PROXY_PUBLIC=true"
    )


def check_hostname(name: str, raw: str) -> str:
    value = raw.strip().lower()
    if not _LABEL.match(value):
        raise ConfigError(
            f"{name}: {raw!r} is not a valid DNS label; use 1-63 letters, digits and "
            "hyphens, not starting or ending with a hyphen"
        )
    return value


def dns_label(raw: str) -> str:
    """Lowercase RAW and squeeze it into a valid DNS label of at most 63 characters."""
    label = re.sub(r"[^a-z0-9-]+", "-", raw.lower())
    label = re.sub(r"-{2,}", "-", label).strip("-")
    return label[:63].rstrip("-") or "spacetail"


def default_hostname(env: Mapping[str, str], scope: Scope | None = None) -> str:
    run_id = env.get("TF_VAR_spacelift_run_id", "").strip()
    if run_id:
        stack = dns_label(env.get("TF_VAR_spacelift_stack_id", "") or "stack")
        # The scope tells a plan awaiting approval (read) from its apply (write) in the admin
        # console; the run id is what makes the name unique: cut the stack name, never those.
        run = dns_label(f"{run_id}-{scope.value}" if scope else run_id)
        room = max(1, 63 - len("spacelift--") - len(run))
        return dns_label(f"spacelift-{stack[:room].rstrip('-')}-{run}")
    import socket

    return dns_label(f"spacetail-{socket.gethostname()}")


def parse_tags(name: str, raw: str) -> tuple[str, ...]:
    tags = tuple(t.strip() for t in raw.split(",") if t.strip())
    for tag in tags:
        if not _TAG.match(tag):
            raise ConfigError(
                f"{name}: {tag!r} is not a tag; tags look like tag:ci (comma-separated)"
            )
    return tags


def split_args(name: str, raw: str) -> list[str]:
    try:
        args = shlex.split(raw)
    except ValueError as exc:
        raise ConfigError(
            f"{name}: cannot split {redact(raw)!r} like a shell ({exc}); fix the quotes"
        ) from exc
    return args


def refuse_secrets(name: str, args: list[str]) -> None:
    """A key or token anywhere in ARGS (a bare word, or any flag's value) would be on a
    command line, where every process can read it: refused, and never echoed."""
    if any(holds_secret(arg) for arg in args):
        raise ConfigError(
            f"{name}: holds what looks like a key or token, which would be on a command line; "
            "remove it and set TS_AUTHKEY, TS_CLIENT_SECRET or TS_ID_TOKEN instead"
        )


def _flag(arg: str) -> tuple[str, str | None] | None:
    if not arg.startswith("-") or arg in ("-", "--"):
        return None
    name, eq, value = arg.lstrip("-").partition("=")
    return name, (value if eq else None)


def _take_up_flags(args: list[str]) -> tuple[dict[str, str], list[str]]:
    """Pull the flags spacetail manages out of TS_EXTRA_ARGS; return them and the rest."""
    managed: dict[str, str] = {}
    rest: list[str] = []
    i = 0
    while i < len(args):
        parsed = _flag(args[i])
        if parsed is None:
            rest.append(args[i])
            i += 1
            continue
        name, value = parsed
        if name in CREDENTIAL_UP_FLAGS:
            raise ConfigError(
                f"TS_EXTRA_ARGS: --{name} would put a secret on a command line; "
                f"set {CREDENTIAL_UP_FLAGS[name]} instead"
            )
        if name in UP_FLAGS:
            boolean = name in ("accept-routes", "accept-dns")
            if value is None and not boolean:
                if i + 1 >= len(args):
                    raise ConfigError(f"TS_EXTRA_ARGS: --{name} needs a value")
                value = args[i + 1]
                i += 1
            managed[name] = "true" if value is None else value
        else:
            rest.append(args[i])
        i += 1
    return managed, rest


def _check_tailscaled_args(args: list[str]) -> None:
    for arg in args:
        parsed = _flag(arg)
        if parsed and parsed[0] in _TAILSCALED_FLAGS:
            raise ConfigError(
                f"TS_TAILSCALED_EXTRA_ARGS: --{parsed[0]} conflicts with a flag spacetail sets; "
                f"{_TAILSCALED_FLAGS[parsed[0]]}"
            )


class _Values:
    """The raw settings, each with the name to blame in a message, and the flags that
    TS_EXTRA_ARGS holds for settings spacetail manages."""

    def __init__(
        self, env: Mapping[str, str], flags: Mapping[str, str | None], spelled: tuple[Setting, ...]
    ) -> None:
        from spacetail.config.settings import UP, raw_values

        self.env = env
        # A command that spells a setting's flag otherwise (wait --target) is blamed by its name.
        own = {s.key: s for s in spelled}
        self.raw = raw_values(tuple(own.get(s.key, s) for s in UP), env, flags)
        extra = split_args("TS_EXTRA_ARGS", env.get("TS_EXTRA_ARGS", ""))
        self.from_extra, self.extra_rest = _take_up_flags(extra)
        refuse_secrets("TS_EXTRA_ARGS", extra)
        self.tailscaled_extra = split_args(
            "TS_TAILSCALED_EXTRA_ARGS", env.get("TS_TAILSCALED_EXTRA_ARGS", "")
        )
        _check_tailscaled_args(self.tailscaled_extra)
        refuse_secrets("TS_TAILSCALED_EXTRA_ARGS", self.tailscaled_extra)

    def get(self, key: str) -> tuple[str, str]:
        """(name, raw) for KEY; a flag of TS_EXTRA_ARGS counts when nothing else set it, and
        conflicts when something did."""
        name, value = self.raw[key]
        extra_name = _EXTRA_NAME.get(key, key)
        if extra_name in self.from_extra:
            if value.strip() and value.strip() != self.from_extra[extra_name]:
                raise ConfigError(
                    f"TS_EXTRA_ARGS: --{extra_name} conflicts with {name}; set it in one place"
                )
            return "TS_EXTRA_ARGS", self.from_extra[extra_name]
        return name, value

    def given(self, key: str) -> tuple[str, str]:
        """get(), or the setting's default from the table (and its variable's name) when it
        was not given."""
        name, raw = self.get(key)
        return (name, raw) if raw.strip() else (BY_KEY[key].env, BY_KEY[key].default)

    def boolean(self, key: str) -> bool:
        return parse_bool(*self.given(key))

    def duration(self, key: str, *, allow_zero: bool = False) -> float:
        name, raw = self.given(key)
        return parse_seconds(name, raw, allow_zero=allow_zero, maximum=MAX_DURATION)


# Flags of TS_EXTRA_ARGS named otherwise than the setting they stand for.
_EXTRA_NAME = {"tags": "advertise-tags"}
MAX_DURATION = 86400.0


def load(
    env: Mapping[str, str],
    flags: Mapping[str, str | None] | None = None,
    *,
    need_auth: bool = True,
    spelled: tuple[Setting, ...] = (),
) -> Config:
    """Build the configuration; FLAGS (from the command line) win over ENV; SPELLED are the
    command's own spellings of settings' flags. Raises ConfigError."""
    v = _Values(env, flags or {}, spelled)
    choice = _choice(v, need_auth=need_auth)
    return Config(
        auth=choice.auth,
        tags=choice.tags,
        scope=choice.scope,
        scope_note=choice.note,
        extra_args=tuple(v.extra_rest),
        tailscaled_extra_args=tuple(v.tailscaled_extra),
        **_node_settings(v, choice.scope),
        **_local_settings(v),
    )


def choose_credential(
    env: Mapping[str, str], flags: Mapping[str, str | None] | None = None
) -> Choice:
    """The credential decision `up` makes, alone, with its words: `doctor`'s first check."""
    return _choice(_Values(env, flags or {}, ()), need_auth=True)


def _choice(v: _Values, *, need_auth: bool) -> Choice:
    tags: dict[Scope | None, tuple[str, tuple[str, ...]]] = {}
    for scope, key in ((None, "tags"), (Scope.READ, "tags-read"), (Scope.WRITE, "tags-write")):
        name, raw = v.get(key)
        tags[scope] = (name, parse_tags(name, raw))
    choice = auth_from_env(v.env, tags)
    if choice.auth is None and need_auth:
        raise ConfigError(
            "TS_AUTHKEY: no credentials; set TS_AUTHKEY (an auth key), TS_CLIENT_SECRET with "
            "SPACETAIL_TAGS (OAuth), or TS_CLIENT_ID (workload identity)"
        )
    return choice


def _node_settings(v: _Values, scope: Scope | None) -> dict[str, Any]:
    """How the node logs in and what it uses of the tailnet."""
    name, raw = v.get("hostname")
    hostname = check_hostname(name, raw) if raw.strip() else default_hostname(v.env, scope)
    _, exit_node = v.get("exit-node")
    name, login_server = v.get("login-server")
    if login_server.strip() and not re.match(r"^https?://[^\s/]+", login_server.strip()):
        raise ConfigError(
            f"{name}: {login_server!r} is not a URL; use e.g. https://headscale.example.com"
        )
    name, raw = v.get("peer")
    peers = tuple(p.strip() for p in re.split(r"[,\s]+", raw) if p.strip())
    for peer in peers:
        if not re.match(r"^[A-Za-z0-9.:_-]+$", peer):
            raise ConfigError(f"{name}: {peer!r} is not a host name or IP address")
    name, raw = v.get("wait-for")
    return {
        "wait_for": parse_targets(name, raw),
        "hostname": hostname,
        "accept_routes": v.boolean("accept-routes"),
        "accept_dns": v.boolean("accept-dns"),
        "exit_node": exit_node.strip() or None,
        "login_server": login_server.strip() or None,
        "ephemeral": v.boolean("ephemeral"),
        "timeout": v.duration("timeout"),
        "peers": peers,
        "progress": v.boolean("progress"),
    }


def _local_settings(v: _Values) -> dict[str, Any]:
    """What runs on this machine: the proxies, the state, the manager's lifetime."""
    socks5 = parse_address(*v.given("socks5-server"))
    http_proxy = parse_address(*v.given("http-proxy"))
    if not v.boolean("proxy-public"):
        for key, address in (("socks5-server", socks5), ("http-proxy", http_proxy)):
            check_loopback(v.get(key)[0], address)
    name, raw = v.given("node-state")
    mode = raw.strip().lower()
    if mode not in ("memory", "workspace"):
        raise ConfigError(f"{name}: {raw!r} is not memory or workspace; pick one")
    name, raw = v.get("watch-pid")
    watch_pid = None
    if raw.strip():
        if not _DIGITS.match(raw.strip()) or int(raw) < 1:
            raise ConfigError(f"{name}: {raw!r} is not a process id")
        watch_pid = int(raw)
    name, raw = v.get("forward")
    public = v.boolean("forward-public")
    forwards = parse_forwards(name, raw, public=public) if raw.strip() else ()
    return {
        "forwards": forwards,
        "socks5": socks5,
        "http_proxy": http_proxy,
        "log_upload": v.boolean("log-upload"),
        "persist_node": mode == "workspace",
        "watch_shell": v.boolean("watch-shell"),
        "watch_pid": watch_pid,
        "max_lifetime": v.duration("max-lifetime", allow_zero=True),
    }
