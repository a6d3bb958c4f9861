"""The forwarders' tailnet resolver: tailscale's own DNS (MagicDNS and split DNS, through the
LocalAPI's dns-query) for the names tailscaled's proxies cannot resolve (tailscale#4677). The
relay's dials, `spacetail nc` and `spacetail resolve` ask it."""

from __future__ import annotations

from collections.abc import Sequence

from spacetail.errors import OperationFailed
from spacetail.tailnet import dnsmsg
from spacetail.tailnet.socks5 import Resolver, is_address
from spacetail.tailnet.tailscale import LocalAPI, LocalAPIError


class ResolveError(OSError, OperationFailed):
    """The tailnet's resolver could not be asked, or has no address for the name (an OSError
    for the Dialer's fallback, an OperationFailed for `spacetail resolve`: exit 1)."""


def _query(api: LocalAPI, name: str, qtype: str, timeout: float) -> dnsmsg.Message:
    try:
        return dnsmsg.parse(api.dns_query(name, qtype, timeout))
    except LocalAPIError as exc:
        raise ResolveError(f"cannot ask tailscale's resolver about {name}: {exc}") from exc
    except dnsmsg.DNSFormatError as exc:
        raise ResolveError(f"tailscale's resolver answered nonsense for {name}: {exc}") from exc


def candidates(name: str, magic_suffix: str | None) -> list[str]:
    """NAME, and for a short name NAME.<MagicDNS suffix> (what MagicDNS search domains do)."""
    name = name.rstrip(".")
    if "." not in name and magic_suffix:
        return [name, f"{name}.{magic_suffix.strip('.')}"]
    return [name]


def resolve(
    api: LocalAPI, name: str, *, magic_suffix: str | None = None, timeout: float = 5.0
) -> list[str]:
    """IPv4 then IPv6 addresses of NAME from tailscale's own resolver (MagicDNS and split DNS);
    an address is returned as it is. ResolveError names tailscale's answer when there is none."""
    if is_address(name):
        return [name]
    answer = "no answer"
    for candidate in candidates(name, magic_suffix):
        found: list[str] = []
        for qtype in ("A", "AAAA"):
            message = _query(api, candidate, qtype, timeout)
            found += [a for a in message.addresses(candidate) if a not in found]
            if message.rcode != dnsmsg.RCode.NOERROR:
                answer = message.rcode_text
        if found:
            return found
    raise ResolveError(f"tailnet DNS has no address for {name} ({answer})")


def tailnet_resolver(api: LocalAPI, magic_suffix: str | None = None) -> Resolver:
    """The Dialer's fallback: names tailscale's proxies cannot resolve, asked of its resolver."""

    def lookup(name: str) -> Sequence[str]:
        return resolve(api, name, magic_suffix=magic_suffix)

    return lookup
