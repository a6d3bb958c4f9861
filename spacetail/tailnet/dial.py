"""The tailnet as a running node's clients reach it: from the manager's status to a Dialer on
its SOCKS5 proxy with tailscale's own resolver behind it (MagicDNS, split DNS), for `nc`,
`resolve` and the waiting for targets."""

from __future__ import annotations

from pathlib import Path

from spacetail.config import hostport
from spacetail.errors import OperationFailed
from spacetail.state.status import Status
from spacetail.tailnet.dns import tailnet_resolver
from spacetail.tailnet.socks5 import Dialer
from spacetail.tailnet.tailscale import LocalAPI


def tailnet_from_status(
    status: Status, *, timeout: float = 10.0
) -> tuple[Dialer, LocalAPI, str | None]:
    """What `spacetail nc` and `spacetail resolve` need, from `lookup.status()`'s answer: a
    Dialer on the manager's SOCKS5 proxy with the tailnet resolver as its fallback, the
    LocalAPI, and the MagicDNS suffix for short names. OperationFailed when no manager runs or
    the node is not Running."""
    if not status.running:
        raise OperationFailed(f"no manager runs for {status.state_dir}; run `spacetail up` first")
    if status.foreign:
        raise OperationFailed(str(status.problem))
    state = status.backend_state
    if state != "Running":
        why = "; ".join(status.node.health) or "still logging in"
        raise OperationFailed(f"tailscale is {state}, not Running ({why}); see `spacetail status`")
    socks = status.proxies.socks5 if status.proxies else ""
    try:
        proxy = hostport.parse(socks.removeprefix("socks5://"))
    except ValueError:
        raise OperationFailed(f"the manager reports no SOCKS5 proxy address ({socks!r})") from None
    api = LocalAPI(Path(str(status.tailscaled_socket)))
    dns_name = status.node.dns_name or ""
    suffix = dns_name.split(".", 1)[1] if "." in dns_name else None
    dialer = Dialer(proxy, tailnet_resolver(api, suffix), timeout=timeout)
    return dialer, api, suffix
