"""Every setting once: its variable, its flag, its help. The command line is built from this table
(cli.py), the configuration reads it (loader.py), and a flag always wins over its variable, for
every command that takes it (as tox 4 merges each option with its environment variable once)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace


class Kind(enum.Enum):
    TEXT = "text"
    SWITCH = "switch"  # --x / --no-x
    FLAG = "flag"  # --x only, meaning the value given in `when_set`
    LIST = "list"  # repeatable flag, comma- or space-separated variable


@dataclass(frozen=True)
class Setting:
    key: str  # the flag's name without dashes; the configuration's key
    env: str
    help: str
    default: str = ""
    kind: Kind = Kind.TEXT
    metavar: str | None = None
    flag: str | None = None  # when the flag is not --KEY (e.g. --no-watch)
    when_set: str = "true"  # for Kind.FLAG: the value the flag stands for
    choices: tuple[str, ...] = ()

    @property
    def option(self) -> str:
        return self.flag or f"--{self.key}"

    def describe(self) -> str:
        default = f", default {self.default}" if self.default else ""
        return f"{self.help} ({self.env}{default})"


DURATION = "DURATION"
DURATIONS_HELP = (
    "DURATION is seconds (60, 1.5) or a number with a unit: 500ms, 90s, 2m, 1h. "
    "--timeout is at most 24h; --max-lifetime at most 24h, 0 means never."
)

# The tailscale and manager settings taken by up, run, manager and env.
UP: tuple[Setting, ...] = (
    Setting("timeout", "SPACETAIL_TIMEOUT", "how long to wait for Running (and the peers)",
            "60", metavar=DURATION),
    Setting("hostname", "TS_HOSTNAME", "node name, a DNS label", "spacelift-<stack>-<run>"),
    Setting("tags", "SPACETAIL_TAGS", "comma-separated tags, e.g. tag:ci"),
    Setting("tags-read", "SPACETAIL_TAGS_READ", "the tags of a phase whose Spacelift token has "
            "scope read (a plan awaiting approval, a proposed run), instead of --tags"),
    Setting("tags-write", "SPACETAIL_TAGS_WRITE", "the tags of a phase whose Spacelift token has "
            "scope write (an approved apply, a task), instead of --tags"),
    Setting("accept-routes", "TS_ACCEPT_ROUTES", "use subnet routes", "on", Kind.SWITCH),
    # On by default: in userspace mode tailscaled never touches the system's DNS (its OS
    # configurator is a no-op there), and without the tailnet's DNS settings its own resolver
    # knows no split-DNS route, so `resolve`, `nc` and the forwards could not reach those names.
    Setting("accept-dns", "TS_ACCEPT_DNS", "use the tailnet's DNS settings", "on", Kind.SWITCH),
    Setting("exit-node", "TS_EXIT_NODE", "route internet traffic through this exit node"),
    Setting("login-server", "TS_LOGIN_SERVER", "control server URL (Headscale...)", metavar="URL"),
    Setting("ephemeral", "SPACETAIL_EPHEMERAL", "nodes minted from an OAuth secret are ephemeral",
            "on", Kind.SWITCH),
    Setting("socks5-server", "TS_SOCKS5_SERVER", "SOCKS5 proxy address", "127.0.0.1:1080",
            metavar="ADDR"),
    Setting("http-proxy", "TS_OUTBOUND_HTTP_PROXY_LISTEN", "HTTP proxy address",
            "127.0.0.1:8080", metavar="ADDR"),
    Setting("proxy-public", "SPACETAIL_PROXY_PUBLIC", "let the proxies listen beyond loopback",
            "off", Kind.SWITCH),
    Setting("log-upload", "SPACETAIL_LOG_UPLOAD", "upload tailscaled's logs to Tailscale", "off",
            Kind.SWITCH),
    Setting("node-state", "SPACETAIL_NODE_STATE", "where the node's state lives", "memory",
            choices=("memory", "workspace")),
    Setting("peer", "SPACETAIL_PEERS", "also wait until this peer answers a ping (repeatable)",
            kind=Kind.LIST, metavar="HOST"),
    Setting("wait-for", "SPACETAIL_WAIT_FOR", "also wait until a TCP connection through the "
            "tailnet to HOST:PORT succeeds (repeatable; the variable takes targets separated by "
            "commas or spaces)", kind=Kind.LIST, metavar="HOST:PORT"),
    Setting("progress", "SPACETAIL_PROGRESS", "while waiting, print a line on stderr every 5 s: "
            "the state, the login attempt, the last error, the time left", "on", Kind.SWITCH),
    Setting("watch-shell", "SPACETAIL_WATCH_SHELL", "outlive the calling shell", "on",
            Kind.FLAG, flag="--no-watch", when_set="false"),
    Setting("watch-pid", "SPACETAIL_WATCH_PID", "stop when this process exits instead",
            metavar="PID"),
    Setting("max-lifetime", "SPACETAIL_MAX_LIFETIME", "stop after this long", "1h",
            metavar=DURATION),
    Setting("forward", "SPACETAIL_FORWARDS", "listen on ADDR:LPORT (127.0.0.1) and carry each "
            "connection to HOST:PORT through the tailnet (repeatable; the variable takes specs "
            "separated by commas or spaces)", kind=Kind.LIST, metavar="[ADDR:]LPORT=HOST:PORT"),
    Setting("forward-public", "SPACETAIL_FORWARD_PUBLIC", "let a forward listen on a "
            "non-loopback address (other hosts could use it)", "off", Kind.FLAG),
)  # fmt: skip

BY_KEY = {s.key: s for s in UP}

# The flags of `tailscale up` that spacetail passes itself, and the setting each comes from: one
# of them in TS_EXTRA_ARGS is taken as that setting (config/loader.py), and tailscale's complaint
# about one names that setting (tailnet/failures.py).
UP_FLAGS: dict[str, str] = {
    "hostname": "TS_HOSTNAME",
    "advertise-tags": "SPACETAIL_TAGS",
    "accept-routes": "TS_ACCEPT_ROUTES",
    "accept-dns": "TS_ACCEPT_DNS",
    "exit-node": "TS_EXIT_NODE",
    "login-server": "TS_LOGIN_SERVER",
    "timeout": "SPACETAIL_TIMEOUT",
}
# The flags that carry a credential or pick one: refused in TS_EXTRA_ARGS (a secret would be on
# a command line), and named by their variable when tailscale refuses one.
CREDENTIAL_UP_FLAGS: dict[str, str] = {
    "auth-key": "TS_AUTHKEY",
    "authkey": "TS_AUTHKEY",
    "client-secret": "TS_CLIENT_SECRET",
    "id-token": "TS_ID_TOKEN",
    "client-id": "TS_CLIENT_ID",
    "audience": "TS_AUDIENCE",
}

# `wait` and `env` take these of the same settings, with the same variables; `wait` spells the
# targets' flag --target.
WAIT = (BY_KEY["timeout"], BY_KEY["peer"], replace(BY_KEY["wait-for"], flag="--target"),
        BY_KEY["progress"])  # fmt: skip
PROXIES = (BY_KEY["socks5-server"], BY_KEY["http-proxy"])

# install-tailscale's settings: the stock-image hook line passes none, so a Spacelift context
# sets them as variables (a mirror, another version with its sha256, a longer deadline).
INSTALL: tuple[Setting, ...] = (
    Setting("version", "SPACETAIL_TAILSCALE_VERSION", "tailscale version", "the pinned one",
            metavar="V"),
    Setting("sha256", "SPACETAIL_TAILSCALE_SHA256", "the package's sha256, as Tailscale "
            "publishes it (needed for a version spacetail pins no sum for)", metavar="HEX"),
    Setting("trust-server-checksum", "SPACETAIL_TAILSCALE_TRUST_SERVER_CHECKSUM", "without "
            "--sha256, take the sum from the .sha256 the same server sends (proves only that "
            "the download is whole)", "off", Kind.FLAG),
    Setting("base-url", "SPACETAIL_TAILSCALE_MIRROR", "package server or mirror",
            "https://pkgs.tailscale.com/stable", metavar="URL"),
    Setting("timeout", "SPACETAIL_INSTALL_TIMEOUT", "give up after this long in all", "5m",
            metavar=DURATION),
)  # fmt: skip

# Credentials are variables only: a flag would put a secret on a command line.
CREDENTIALS: tuple[tuple[str, str], ...] = (
    ("TS_AUTHKEY", "an auth key (tskey-auth-...), or file:PATH; TS_AUTH_KEY is read too"),
    ("TS_CLIENT_SECRET", "an OAuth client secret, or file:PATH; needs SPACETAIL_TAGS; with "
     "TS_CLIENT_ID, that OAuth client (as containerboot)"),
    ("TS_CLIENT_ID", "workload identity federation client id (with TS_CLIENT_SECRET: the OAuth "
     "client's id); needs SPACETAIL_TAGS"),
    ("TS_ID_TOKEN", "the ID token for TS_CLIENT_ID, or file:PATH (default: Spacelift's OIDC)"),
    ("TS_AUDIENCE", "refused with an ID token (TS_ID_TOKEN, SPACELIFT_OIDC_TOKEN, "
     "spacelift.oidc), as containerboot refuses it: tailscale uses it only to request a token "
     "itself, and spacetail always gives it one"),
    # Per scope of the phase's Spacelift token: used instead of the plain one when set; a read
    # phase never uses a *_WRITE one.
    ("TS_CLIENT_ID_READ", "TS_CLIENT_ID of a phase whose Spacelift token has scope read"),
    ("TS_CLIENT_ID_WRITE", "TS_CLIENT_ID of a phase whose Spacelift token has scope write"),
    ("TS_AUTHKEY_READ", "TS_AUTHKEY for scope read (a stored secret: only workload identity "
     "keeps the write one out of a read phase's reach)"),
    ("TS_AUTHKEY_WRITE", "TS_AUTHKEY for scope write"),
    ("TS_CLIENT_SECRET_READ", "TS_CLIENT_SECRET for scope read (the same caveat)"),
    ("TS_CLIENT_SECRET_WRITE", "TS_CLIENT_SECRET for scope write"),
)  # fmt: skip
PASSTHROUGH: tuple[tuple[str, str], ...] = (
    ("TS_EXTRA_ARGS", "more `tailscale up` flags, split like a shell does"),
    ("TS_TAILSCALED_EXTRA_ARGS", "more `tailscaled` flags"),
    ("SPACETAIL_DIR", "the state folder (or `spacetail --dir DIR COMMAND`, before the command)"),
)


def raw_values(
    settings: tuple[Setting, ...], env: Mapping[str, str], flags: Mapping[str, str | None]
) -> dict[str, tuple[str, str]]:
    """key -> (where it came from, raw text): the flag when given, else the variable."""
    values = {}
    for s in settings:
        given = flags.get(s.key)
        if given is not None:
            values[s.key] = (s.option if s.kind is not Kind.SWITCH else f"--{s.key}", given)
        else:
            values[s.key] = (s.env, env.get(s.env, ""))
    return values
