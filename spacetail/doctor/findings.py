"""The pieces a diagnosis is made of, apart from what is checked (checklist.py): findings and
their verdicts, targets, ID tokens decoded without verifying, and the checklist's text and JSON,
scrubbed of every secret. The one-shot runner of tailscale's CLI and its ping are
tailnet.oneshot's: the waiting for peers uses them too."""

from __future__ import annotations

import enum
import ipaddress
import json
import re
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spacetail.config import hostport
from spacetail.config.credentials import SECRET_VARIABLES
from spacetail.config.scope import decode_claims
from spacetail.errors import ConfigError
from spacetail.log import redact
from spacetail.state.status import Status as ManagerStatus
from spacetail.tailnet.failures import Failure, FailureClass

DNS_TIMEOUT = 5.0
TCP_TIMEOUT = 5.0
_TAILNET_V4 = ipaddress.ip_network("100.64.0.0/10")
_TAILNET_V6 = ipaddress.ip_network("fd7a:115c:a1e0::/48")


class Verdict(enum.Enum):
    OK = "ok"
    WARN = "warn"  # holds, with a caveat (slower, or unknown)
    FAIL = "fail"
    SKIP = "skip"  # could not be checked because something before it failed


_RANK = {Verdict.SKIP: 0, Verdict.OK: 1, Verdict.WARN: 2, Verdict.FAIL: 3}


@dataclass(frozen=True)
class Finding:
    """One line of a check: what holds or not, and the fix when it does not."""

    status: Verdict
    text: str
    fix: str | None = None


@dataclass
class Check:
    """One thing between the hook and the service, with its findings and machine-readable facts."""

    name: str
    findings: list[Finding] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def add(self, status: Verdict, text: str, fix: str | None = None) -> Check:
        self.findings.append(Finding(status, text, fix))
        return self

    @property
    def status(self) -> Verdict:
        return max((f.status for f in self.findings), key=_RANK.__getitem__, default=Verdict.SKIP)


# --- small protocols: targets, JWTs, DNS answers, SOCKS5 --------------------------------------


@dataclass(frozen=True)
class Target:
    host: str
    port: int

    def __str__(self) -> str:
        return hostport.format(self.host, self.port)


def parse_target(text: str) -> Target:
    """HOST:PORT (or [IPv6]:PORT), else ConfigError naming --target."""
    try:
        return Target(*hostport.parse(text.strip()))
    except ValueError as exc:
        raise ConfigError(
            f'--target: "{text}" is not HOST:PORT ({exc}); write e.g. db.example.ts.net:5432'
        ) from None


# The one decoder of a JWT's claims, NOT verified (config/scope.py): the doctor shows them.
decode_jwt = decode_claims


def dns_query(socket_path: Path, name: str, timeout: float = DNS_TIMEOUT) -> tuple[int, list[str]]:
    """Ask tailscale's own resolver (LocalAPI dns-query) for NAME: its rcode and addresses."""
    from spacetail.tailnet import dnsmsg
    from spacetail.tailnet.tailscale import LocalAPI

    message = dnsmsg.parse(LocalAPI(socket_path).dns_query(name, "A", timeout))
    return message.rcode, message.addresses(name)


def socks5_connect(proxy: str, target: Target, timeout: float = TCP_TIMEOUT) -> None:
    """Open a TCP connection to TARGET through the SOCKS5 proxy at host:port, then close it.
    The name goes to the proxy unresolved, so tailscaled resolves MagicDNS names. Raises
    OSError (socks5.DialError for the proxy's refusal)."""
    from spacetail.tailnet import socks5

    with socket.create_connection(hostport.parse(proxy), timeout=timeout) as sock:
        socks5.handshake(sock, target.host, target.port)


def rcode_text(rcode: int) -> str:
    from spacetail.tailnet import dnsmsg

    return dnsmsg.Message(rcode, ()).rcode_text


def no_proxy_excludes(no_proxy: str, host: str) -> str | None:
    """The NO_PROXY entry that sends HOST around the proxy, if any (Go's and curl's rules)."""
    for raw in no_proxy.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        bare = entry.rsplit(":", 1)[0] if entry.count(":") == 1 else entry
        if bare == "*" or host.lower() == bare.lstrip("."):
            return raw.strip()
        if host.lower().endswith("." + bare.lstrip(".")):
            return raw.strip()
        try:
            if ipaddress.ip_address(host) in ipaddress.ip_network(bare, strict=False):
                return raw.strip()
        except ValueError:
            continue
    return None


def fix_for(failure: Failure) -> str:
    """failures' advice, without its pointers to the doctor (this is the doctor)."""
    text = re.sub(r" \(`spacetail doctor`[^)]*\)", "", failure.advice)
    return re.sub(r",? or run `spacetail doctor`", "", text)


def version_tuple(text: str) -> tuple[int, ...]:
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", text.strip())
    return tuple(int(x) for x in m.groups(default="0")) if m else ()


def is_tailnet_ip(text: str) -> bool:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return False
    return ip in (_TAILNET_V4 if ip.version == 4 else _TAILNET_V6)


NETCHECK_ADVICE = {
    FailureClass.DNS_FAILURE: "this machine cannot resolve Tailscale's servers: check its DNS "
    "and network (a runner without network cannot join a tailnet)",
    FailureClass.CONTROL_UNREACHABLE: "Tailscale's servers cannot be reached from here: allow "
    "outbound HTTPS (443) and UDP (41641, 3478), or set the proxy tailscaled must use",
    None: "netcheck could not measure the network; the checks of the targets tell more",
}

# --- output -----------------------------------------------------------------------------------

_LABELS = {Verdict.OK: "ok", Verdict.WARN: "warn", Verdict.FAIL: "FAIL", Verdict.SKIP: "skip"}


def exit_code(checks: Iterable[Check]) -> int:
    return 1 if any(c.status is Verdict.FAIL for c in checks) else 0


def render_text(checks: Sequence[Check]) -> str:
    """A checklist: a heading per check, one line per finding, the fix under what fails."""
    lines = []
    for check in checks:
        lines.append(f"{check.name}")
        for f in check.findings:
            lines.append(f"  {_LABELS[f.status]:<5} {f.text}")
            if f.fix and f.status in (Verdict.FAIL, Verdict.WARN):
                lines.append(f"        fix: {f.fix}")
    fails = sum(f.status is Verdict.FAIL for c in checks for f in c.findings)
    warns = sum(f.status is Verdict.WARN for c in checks for f in c.findings)
    if fails:
        lines.append(f"{fails} problem{'s' * (fails != 1)}, {warns} warning{'s' * (warns != 1)}: "
                     "see the fixes above")  # fmt: skip
    else:
        lines.append(f"all checks hold ({warns} warning{'s' * (warns != 1)})")
    return "\n".join(lines) + "\n"


def render_json(checks: Sequence[Check]) -> str:
    return json.dumps({
        "ok": exit_code(checks) == 0,
        "checks": [{"name": c.name, "status": c.status.value, "details": c.details,
                    "findings": [{"status": f.status.value, "text": f.text, "fix": f.fix}
                                 for f in c.findings]} for c in checks],
    }, indent=2, default=str) + "\n"  # fmt: skip


def scrub(text: str, env: Mapping[str, str]) -> str:
    """Remove every secret value of ENV (and anything shaped like a key or token) from TEXT, and
    the passwords of its proxy variables (tailscale's own messages may quote them)."""
    from spacetail.config.proxyurl import mask_in

    for name in SECRET_VARIABLES:
        value = env.get(name, "").strip()
        if len(value) >= 8 and not value.startswith("file:"):
            text = text.replace(value, f"[{name}]")
    return redact(mask_in(text, env))


def manager_status(env: Mapping[str, str]) -> ManagerStatus | None:
    """The manager's status, as `spacetail status` reads it; None if it cannot be read."""
    from spacetail.errors import SpacetailError
    from spacetail.state import lookup
    from spacetail.state.paths import Paths

    try:
        return lookup.status(Paths.from_env(env))
    except (SpacetailError, OSError):
        return None
