"""Settings from the environment and the command line, checked up front: a bad value is one line
that names the setting, says what is wrong and how to fix it, before anything starts."""

from __future__ import annotations

import math
import os
import re
import shlex
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from spacetail.errors import ConfigError

DEFAULT_SOCKS5 = "127.0.0.1:1080"
DEFAULT_HTTP_PROXY = "127.0.0.1:8080"
DEFAULT_TIMEOUT = 60.0
# Spacelift's run timeout is 70 minutes; the manager must be gone well before it.
DEFAULT_MAX_LIFETIME = 3600.0

_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_TAG = re.compile(r"^tag:[a-zA-Z][a-zA-Z0-9-]*$")
_DIGITS = re.compile(r"^[0-9]+$")  # str.isdigit() also accepts "²", which int() refuses
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

AuthKind = Literal["authkey", "oauth", "wif"]


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


@dataclass(frozen=True)
class Config:
    auth: Auth | None
    hostname: str
    tags: tuple[str, ...] = ()
    accept_routes: bool = True
    accept_dns: bool = False
    exit_node: str | None = None
    login_server: str | None = None
    ephemeral: bool = True
    extra_args: tuple[str, ...] = ()
    tailscaled_extra_args: tuple[str, ...] = ()
    socks5: str = DEFAULT_SOCKS5
    http_proxy: str = DEFAULT_HTTP_PROXY
    log_upload: bool = False
    persist_node: bool = False
    timeout: float = DEFAULT_TIMEOUT
    peers: tuple[str, ...] = ()
    watch_shell: bool = True
    watch_pid: int | None = None
    max_lifetime: float = DEFAULT_MAX_LIFETIME

    @property
    def proxies(self) -> dict[str, str]:
        return {"http": f"http://{self.http_proxy}", "socks5": f"socks5://{self.socks5}"}


# Flags of `tailscale up` that spacetail sets itself, and the setting to use instead.
_UP_FLAGS = {
    "hostname": "TS_HOSTNAME",
    "advertise-tags": "SPACETAIL_TAGS",
    "accept-routes": "TS_ACCEPT_ROUTES",
    "accept-dns": "TS_ACCEPT_DNS",
    "exit-node": "TS_EXIT_NODE",
    "login-server": "TS_LOGIN_SERVER",
    "timeout": "SPACETAIL_TIMEOUT",
}
_SECRET_FLAGS = {
    "auth-key": "TS_AUTHKEY",
    "authkey": "TS_AUTHKEY",
    "client-secret": "TS_CLIENT_SECRET",
    "id-token": "TS_ID_TOKEN",
    "client-id": "TS_CLIENT_ID",
    "audience": "TS_AUDIENCE",
}
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


def parse_seconds(name: str, raw: str, *, allow_zero: bool = False) -> float:
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
    if math.isnan(seconds) or seconds < 0 or (seconds == 0 and not allow_zero) or seconds > 1e7:
        least = "0 or more" if allow_zero else "more than 0"
        raise ConfigError(f"{name}: {raw!r} is not a duration; give seconds ({least}), e.g. 60")
    return seconds


def parse_address(name: str, raw: str) -> str:
    """host:port with a numeric port; a bare :port means localhost only."""
    text = raw.strip()
    host, sep, port = text.rpartition(":")
    if text.startswith(":"):
        host, sep = "127.0.0.1", ":"
    if host.startswith("[") and host.endswith("]"):
        inner = host[1:-1]
        valid_host = bool(inner) and ":" in inner
    else:
        valid_host = bool(host) and ":" not in host and " " not in host
    if not sep or not valid_host or not _DIGITS.match(port) or not 0 < int(port) < 65536:
        raise ConfigError(f"{name}: {raw!r} is not an address host:port; use e.g. 127.0.0.1:1080")
    return f"{host}:{int(port)}"


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


def default_hostname(env: Mapping[str, str]) -> str:
    run_id = env.get("TF_VAR_spacelift_run_id", "").strip()
    if run_id:
        stack = dns_label(env.get("TF_VAR_spacelift_stack_id", "") or "stack")
        run = dns_label(run_id)
        # The run id is what makes the name unique: cut the stack name, never the run id.
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


def secret_from(name: str, raw: str, *, check_mode: bool = True) -> Secret:
    """A value, or `file:PATH` naming a file that exists and that others cannot read."""
    if not raw.startswith("file:"):
        return Secret(name, value=raw)
    try:
        path = Path(raw[len("file:") :]).expanduser()
    except RuntimeError:  # ~user of a user that does not exist
        raise ConfigError(
            f"{name}: cannot expand {raw[len('file:') :]!r}; give the file's full path"
        ) from None
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


def split_args(name: str, raw: str) -> list[str]:
    try:
        return shlex.split(raw)
    except ValueError as exc:
        raise ConfigError(
            f"{name}: cannot split {raw!r} like a shell ({exc}); fix the quotes"
        ) from exc


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
        if name in _SECRET_FLAGS:
            raise ConfigError(
                f"TS_EXTRA_ARGS: --{name} would put a secret on a command line; "
                f"set {_SECRET_FLAGS[name]} instead"
            )
        if name in _UP_FLAGS:
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


def _auth(env: Mapping[str, str], tags: tuple[str, ...]) -> Auth | None:
    for name in ("TS_AUTHKEY", "TS_AUTH_KEY"):
        raw = env.get(name, "").strip()
        if raw:
            secret = secret_from(name, raw)
            if secret.value is not None and secret.value.startswith("tskey-client-") and not tags:
                raise _oauth_without_tags(name)
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


def load(
    env: Mapping[str, str], flags: Mapping[str, str | None] | None = None, *, need_auth: bool = True
) -> Config:
    """Build the configuration; FLAGS (from the command line) win over ENV. Raises ConfigError."""
    flags = {k: v for k, v in (flags or {}).items() if v is not None}

    def get(flag: str, var: str, default: str = "") -> tuple[str, str]:
        if flag in flags:
            return f"--{flag}", str(flags[flag])
        return var, env.get(var, default)

    extra = split_args("TS_EXTRA_ARGS", env.get("TS_EXTRA_ARGS", ""))
    from_extra, extra_rest = _take_up_flags(extra)
    tailscaled_extra = split_args(
        "TS_TAILSCALED_EXTRA_ARGS", env.get("TS_TAILSCALED_EXTRA_ARGS", "")
    )
    _check_tailscaled_args(tailscaled_extra)

    def merged(flag: str, var: str, extra_name: str) -> tuple[str, str]:
        name, value = get(flag, var)
        if extra_name in from_extra:
            if value.strip() and value.strip() != from_extra[extra_name]:
                raise ConfigError(
                    f"TS_EXTRA_ARGS: --{extra_name} conflicts with {name}; set it in one place"
                )
            return "TS_EXTRA_ARGS", from_extra[extra_name]
        return name, value

    name, raw = merged("tags", "SPACETAIL_TAGS", "advertise-tags")
    tags = parse_tags(name, raw)
    name, raw = merged("hostname", "TS_HOSTNAME", "hostname")
    hostname = check_hostname(name, raw) if raw.strip() else default_hostname(env)
    name, raw = merged("accept-routes", "TS_ACCEPT_ROUTES", "accept-routes")
    accept_routes = parse_bool(name, raw) if raw.strip() else True
    name, raw = merged("accept-dns", "TS_ACCEPT_DNS", "accept-dns")
    accept_dns = parse_bool(name, raw) if raw.strip() else False
    _, exit_node = merged("exit-node", "TS_EXIT_NODE", "exit-node")
    name, login_server = merged("login-server", "TS_LOGIN_SERVER", "login-server")
    if login_server.strip() and not re.match(r"^https?://[^\s/]+", login_server.strip()):
        raise ConfigError(
            f"{name}: {login_server!r} is not a URL; use e.g. https://headscale.example.com"
        )
    name, raw = get("ephemeral", "SPACETAIL_EPHEMERAL")
    ephemeral = parse_bool(name, raw) if raw.strip() else True
    name, raw = get("socks5-server", "TS_SOCKS5_SERVER")
    socks5 = parse_address(name, raw) if raw.strip() else DEFAULT_SOCKS5
    name, raw = get("http-proxy", "TS_OUTBOUND_HTTP_PROXY_LISTEN")
    http_proxy = parse_address(name, raw) if raw.strip() else DEFAULT_HTTP_PROXY
    name, raw = get("log-upload", "SPACETAIL_LOG_UPLOAD")
    log_upload = parse_bool(name, raw) if raw.strip() else False
    name, raw = get("node-state", "SPACETAIL_NODE_STATE")
    mode = raw.strip().lower() or "memory"
    if mode not in ("memory", "workspace"):
        raise ConfigError(f"{name}: {raw!r} is not memory or workspace; pick one")
    name, raw = get("timeout", "SPACETAIL_TIMEOUT")
    timeout = parse_seconds(name, raw) if raw.strip() else DEFAULT_TIMEOUT
    if "timeout" in from_extra and "timeout" not in flags and not env.get("SPACETAIL_TIMEOUT"):
        timeout = parse_seconds("TS_EXTRA_ARGS --timeout", from_extra["timeout"])
    name, raw = get("peer", "SPACETAIL_PEERS")
    peers = tuple(p.strip() for p in re.split(r"[,\s]+", raw) if p.strip())
    for peer in peers:
        if not re.match(r"^[A-Za-z0-9.:_-]+$", peer):
            raise ConfigError(f"{name}: {peer!r} is not a host name or IP address")
    name, raw = get("watch-shell", "SPACETAIL_WATCH_SHELL")
    watch_shell = parse_bool(name, raw) if raw.strip() else True
    name, raw = get("watch-pid", "SPACETAIL_WATCH_PID")
    watch_pid = None
    if raw.strip():
        if not _DIGITS.match(raw.strip()) or int(raw) < 1:
            raise ConfigError(f"{name}: {raw!r} is not a process id")
        watch_pid = int(raw)
    name, raw = get("max-lifetime", "SPACETAIL_MAX_LIFETIME")
    max_lifetime = (
        parse_seconds(name, raw, allow_zero=True) if raw.strip() else DEFAULT_MAX_LIFETIME
    )
    if socks5 == http_proxy and env.get("TS_SOCKS5_SERVER") and not flags.get("http-proxy"):
        pass  # one address may serve both protocols: tailscaled supports it.

    auth = _auth(env, tags)
    if auth is None and need_auth:
        raise ConfigError(
            "TS_AUTHKEY: no credentials; set TS_AUTHKEY (an auth key), TS_CLIENT_SECRET with "
            "SPACETAIL_TAGS (OAuth), or TS_CLIENT_ID (workload identity)"
        )
    return Config(
        auth=auth,
        hostname=hostname,
        tags=tags,
        accept_routes=accept_routes,
        accept_dns=accept_dns,
        exit_node=exit_node.strip() or None,
        login_server=login_server.strip() or None,
        ephemeral=ephemeral,
        extra_args=tuple(extra_rest),
        tailscaled_extra_args=tuple(tailscaled_extra),
        socks5=socks5,
        http_proxy=http_proxy,
        log_upload=log_upload,
        persist_node=mode == "workspace",
        timeout=timeout,
        peers=peers,
        watch_shell=watch_shell,
        watch_pid=watch_pid,
        max_lifetime=max_lifetime,
    )
