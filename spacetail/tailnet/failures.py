"""What went wrong, in tailscale's own words, and what to do about it.

tailscale says why it failed, but among other lines: Go's flag error comes before the usage
text, tailscaled's reason comes before (or among) its shutdown chatter, and the log files hold
every earlier run as well. This module picks the line that explains, names its class, the
setting it is about and whether another attempt can help; advice.py says what to do.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from spacetail.config.settings import CREDENTIAL_UP_FLAGS, UP_FLAGS
from spacetail.state.kinds import FailureClass  # (its home: the status carries it)
from spacetail.tailnet.advice import advice_of

__all__ = [
    "FAIL_FAST_SECONDS", "RETRYABLE", "Failure", "FailureClass", "Program", "Settings",
    "classify_line", "diagnose", "diagnose_for", "excerpt", "is_chatter",
    "login_error", "meaningful_line", "strip_timestamp",
]  # fmt: skip


class Program(enum.Enum):
    """Which program's output is read: it decides whose extra arguments a flag error is about."""

    UP = "tailscale up"
    TAILSCALED = "tailscaled"


RETRYABLE = frozenset(
    {
        FailureClass.CONTROL_UNREACHABLE,
        FailureClass.DNS_FAILURE,
        FailureClass.TIMEOUT_STARTING,
        FailureClass.UNKNOWN,
        FailureClass.LOGGED_OUT,
        # an attempt cut short because its tailscaled exited: the next one asks the new one
        FailureClass.TAILSCALED_EXITED,
    }
)
# Whatever the deadline, a failure of these classes must be reported within this many seconds
# of the attempt that showed it: nothing will change on a second try.
FAIL_FAST_SECONDS = 5.0

_I = re.IGNORECASE
# Checked in this order; the first class whose pattern matches a line wins.
_PATTERNS: tuple[tuple[FailureClass, re.Pattern[str]], ...] = (
    (
        FailureClass.USAGE,
        re.compile(
            r"flag provided but not defined|can only be used with|flag needs an argument|"
            r"invalid (?:boolean )?value .* for (?:flag )?-|does not take non-flag arguments|"
            r"invalid hostname|unknown subcommand",
            _I,
        ),
    ),
    (
        FailureClass.LOCAL,
        re.compile(
            r"address already in use|cannot assign requested address|safesocket\.listen|"
            r"exec format error|\[errno 13\] permission denied|\[errno 8\]|fork/exec|"
            r"createengine|tstun\.new|listen (?:tcp|unix) \S+: bind:",
            _I,
        ),
    ),
    (
        FailureClass.TAGS_NOT_PERMITTED,
        re.compile(
            r"requested tags .* (?:are )?invalid|not permitted|tags? .*not allowed|"
            r"authkeys require",
            _I,
        ),
    ),
    (
        FailureClass.DNS_FAILURE,
        re.compile(
            r"no such host|server misbehaving|temporary failure in name resolution|"
            r"failed to resolve|no dns fallback candidates|name or service not known",
            _I,
        ),
    ),
    (
        FailureClass.CONTROL_UNREACHABLE,
        re.compile(
            r"connection refused|connection reset|timed out|i/o timeout|\btimeout\b(?! waiting)|"
            r"network is unreachable|no route to host|\beof\b|tls handshake|x509:|"
            r"\b5\d\d\b|bad gateway|service unavailable|context deadline",
            _I,
        ),
    ),
    (
        FailureClass.WIF_REJECTED,
        re.compile(r"exchange jwt|federated identity|id.token|audience|client.id", _I),
    ),
    (FailureClass.EXPIRED, re.compile(r"expired", _I)),
    (
        FailureClass.KEY_REJECTED,
        re.compile(
            r"invalid key|not valid|revoked|has been deleted|unauthorized|not authorized|"
            # Headscale's words (v0.29): an unknown key, a wrong secret, a malformed key, a
            # single-use key already used.
            r"invalid (?:pre )?auth ?key|failed to parse auth-?key|authkey already used|"
            r"forbidden|status 4\d\d|\(4\d\d\)|\b4\d\d (?:unauthorized|forbidden|bad request)|"
            r"unknown attribute|invalid argument|invalid value",
            _I,
        ),
    ),
    (
        FailureClass.TIMEOUT_STARTING,
        re.compile(r"timeout waiting for tailscale|not running after", _I),
    ),
)

_LOGIN_ERROR = re.compile(r"last login error was: (.+)$", _I)
_TIMESTAMP = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d(?:\.\d+)? ")
# What tailscaled says on every start and stop, whatever went wrong (captured from the real
# 1.96.4; see tests/fakes/reference/tailscaled-shutdown.log). It never explains a failure.
_CHATTER = re.compile(
    r"got signal .*; shutting down|logged out ephemeral node on shutdown|"
    r"control: client\.Shutdown|control: Client\.Shutdown done|Routine: exiting|"
    r"work queue shutdown failed|context canceled|^flushing log\.|^logger closing down|"
    r"policy requires hardware attestation|^TPM: |You have disabled logging|^logtail started|"
    r"^LogID: |^logpolicy|^dns: |^Program starting: |health\(warnable=[\w-]+\): ok|"
    r"^localapi: \[|^\[RATELIMIT\]|^blockEngineUpdates|error calling getent|^Start$|"
    r"^Backend: logs: |^Usage of |^  -|^    \t|^\s*$|failed to force-set UDP|"
    r"warnable=(?:warming-up|wantrunning-false)\): error|^Switching ipn state|"
    r"^control: (?:LoginInteractive|doLogin|client\.Login)|^StartLoginInteractiveAs",
)
# A line worth showing before any other: it names an error.
_ERROR_WORD = re.compile(r"error|fail|cannot|refused|denied|invalid|unable|not ", _I)
_FLAG = re.compile(r"(?<![\w-])--?([a-z][\w-]*)", _I)
_ADDRESS = re.compile(r"listen tcp (\S+): bind:")


@dataclass(frozen=True)
class Failure:
    """One failure, explained."""

    kind: FailureClass
    line: str  # tailscale's own words: the line that explains
    setting: str | None = None  # the user's setting it is about (USAGE and LOCAL only)

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE

    @property
    def exit_code(self) -> int:
        """2 (bad usage) when a setting of the user's caused it, else 1."""
        return 2 if self.setting is not None and not self.retryable else 1

    @property
    def advice(self) -> str:
        return advice_of(self.kind, self.line, self.setting)

    def message(self) -> str:
        """The two lines a person reads: what happened and what to do."""
        head = f"{self.setting}: {self.line}" if self.setting else self.line
        return f"{head}\n  what to do: {self.advice}"


def strip_timestamp(line: str) -> str:
    return _TIMESTAMP.sub("", line.rstrip())


def is_chatter(line: str) -> bool:
    """Whether a tailscaled or CLI line is routine start/stop noise that explains nothing."""
    return bool(_CHATTER.search(strip_timestamp(line)))


def classify_line(line: str) -> FailureClass:
    for kind, pattern in _PATTERNS:
        if pattern.search(line):
            return kind
    return FailureClass.UNKNOWN


def meaningful_line(output: str) -> str:
    """The line of a `tailscale up`'s or tailscaled's output that says why it failed.

    A flag error or a local error is the FIRST such line (Go prints the usage after it); a
    login error is taken from tailscale's "last login error was:"; otherwise the last line of
    a known class, else the last line that is not chatter.
    """
    lines = [strip_timestamp(x) for x in output.splitlines()]
    useful = [x for x in lines if x.strip() and not is_chatter(x)]
    for line in useful:
        if classify_line(line) in (FailureClass.USAGE, FailureClass.LOCAL):
            return line.strip()
    for line in reversed(useful):
        m = _LOGIN_ERROR.search(line)
        if m:
            return m.group(1).strip()
    for line in reversed(useful):
        if classify_line(line) is not FailureClass.UNKNOWN:
            return line.strip()
    return useful[-1].strip() if useful else ""


def _flag_in(flag: str, args: Sequence[str]) -> bool:
    return any(re.fullmatch(rf"--?{re.escape(flag)}(?:=.*)?", a, re.DOTALL) for a in args)


def _usage_setting(
    line: str, program: Program, extra_args: Sequence[str], tailscaled_extra_args: Sequence[str]
) -> str | None:
    m = re.search(r"non-flag arguments: \[(.*)\]", line)
    if m:
        return "TS_TAILSCALED_EXTRA_ARGS" if tailscaled_extra_args else None
    own, own_name = (
        (extra_args, "TS_EXTRA_ARGS")
        if program is Program.UP
        else (tailscaled_extra_args, "TS_TAILSCALED_EXTRA_ARGS")
    )
    # Go names the flag after the colon ("flag provided but not defined: -x") or before it
    # ('invalid value "x" for flag -hostname: ...').
    after = line.split(":", 1)[-1] if "flag" in line else line
    flags = _FLAG.findall(after) or _FLAG.findall(line.split(":", 1)[0])
    for flag in flags:
        if _flag_in(flag, own):
            return own_name
    if program is Program.UP:
        for flag in flags:
            setting = UP_FLAGS.get(flag) or CREDENTIAL_UP_FLAGS.get(flag)
            if setting:
                return setting
    return None


def _local_setting(line: str, socks5: str | None, http_proxy: str | None) -> str | None:
    m = _ADDRESS.search(line)
    if not m:
        return None
    address = m.group(1)
    # tailscaled names the listener: "SOCKS5 listener", "HTTP proxy listener", or "proxy
    # listener" when both share one address (then the fix is both settings).
    if "http proxy listener" in line.lower() and http_proxy == address:
        return "TS_OUTBOUND_HTTP_PROXY_LISTEN"
    if socks5 == address:
        return "TS_SOCKS5_SERVER"
    if http_proxy == address:
        return "TS_OUTBOUND_HTTP_PROXY_LISTEN"
    return None


def diagnose(
    output: str,
    program: Program = Program.UP,
    *,
    extra_args: Sequence[str] = (),
    tailscaled_extra_args: Sequence[str] = (),
    socks5: str | None = None,
    http_proxy: str | None = None,
) -> Failure:
    """Explain a failed `tailscale up` (or tailscaled run) from its output (or log excerpt).

    ``extra_args``/``tailscaled_extra_args`` are the user's TS_EXTRA_ARGS and
    TS_TAILSCALED_EXTRA_ARGS as split; ``socks5``/``http_proxy`` the proxy addresses passed to
    tailscaled. They decide which setting a usage or local error is about.
    """
    line = meaningful_line(output)
    kind = classify_line(line)
    setting = None
    if kind is FailureClass.USAGE:
        setting = _usage_setting(line, program, extra_args, tailscaled_extra_args)
    elif kind is FailureClass.LOCAL:
        setting = _local_setting(line, socks5, http_proxy)
    return Failure(kind, line or "(no output)", setting)


class Settings(Protocol):
    """The four fields of config.Config that decide whose setting a failure is about."""

    @property
    def extra_args(self) -> Sequence[str]: ...
    @property
    def tailscaled_extra_args(self) -> Sequence[str]: ...
    @property
    def socks5(self) -> str: ...
    @property
    def http_proxy(self) -> str: ...


def diagnose_for(output: str, program: Program, cfg: Settings) -> Failure:
    """diagnose() with the user's settings taken from a config.Config."""
    return diagnose(
        output,
        program,
        extra_args=cfg.extra_args,
        tailscaled_extra_args=cfg.tailscaled_extra_args,
        socks5=cfg.socks5,
        http_proxy=cfg.http_proxy,
    )


def excerpt(path: Path, offset: int = 0, limit: int = 10, max_bytes: int = 65536) -> list[str]:
    """The meaningful lines of one run from a log that accumulates runs.

    ``offset`` is the log's size when this run (this tailscaled, this login attempt) began; the
    caller records it (``path.stat().st_size``) before spawning. Lines before it belong to
    earlier runs; start and shutdown chatter is left out. At most ``limit`` lines, the last ones.
    """
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            start = offset if 0 <= offset <= size else 0  # a truncated log: read it all
            start = max(start, size - max_bytes)
            f.seek(start)
            data = f.read(size - start)
    except OSError:
        return []
    lines = data.decode("utf-8", "replace").splitlines()
    if start > offset and lines:
        lines = lines[1:]  # the first line read may be cut
    useful = [x.rstrip() for x in lines if not is_chatter(x)]
    errors = [x for x in useful if _explains(strip_timestamp(x))]
    return _last_distinct(errors or useful, limit)


def _explains(line: str) -> bool:
    return bool(_ERROR_WORD.search(line)) or classify_line(line) is not FailureClass.UNKNOWN


def _last_distinct(lines: list[str], limit: int) -> list[str]:
    """The last ``limit`` lines, each text once (at its last occurrence, timestamps aside)."""
    seen: set[str] = set()
    kept: list[str] = []
    for line in reversed(lines):
        text = strip_timestamp(line)
        if text in seen:
            continue
        seen.add(text)
        kept.append(line)
        if len(kept) == limit:
            break
    return kept[::-1]


# --- what the manager uses today ----------------------------------------------------------


def login_error(health: list[str]) -> str | None:
    """The last login error tailscale states in its Health messages, if any."""
    for item in health:
        m = _LOGIN_ERROR.search(item)
        if m:
            return m.group(1).strip()
    return None
