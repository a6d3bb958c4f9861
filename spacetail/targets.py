"""Ready means the service answers: `up --wait-for HOST:PORT` and `wait --target HOST:PORT`
return once a TCP connection through the tailnet to every target succeeds.

A node reports Running seconds before its peers see it (3 to 33 s, tailscale/github-action#191),
and a ping answered by a peer says nothing of the database behind it. So each target is dialled
as `nc` dials it, through the manager's SOCKS5 proxy with tailscale's own resolver as the
fallback for split-DNS names, and asked again until it answers or the one deadline (`--timeout`,
shared with the login and the peers) has passed; then the message names every target that
never answered, with its last error."""

from __future__ import annotations

import time
from collections.abc import Callable

from spacetail import hostport
from spacetail.errors import OperationFailed
from spacetail.progress import Progress
from spacetail.socks5 import Dialer
from spacetail.status import Status

Target = tuple[str, int]

TRY_AT_MOST = 3.0  # one dial's bound: a target that never completes its handshake is asked again
PAUSE = 0.5  # between rounds: a service coming up is seen within this, without a spin


def wait_for_targets(
    status: Status,
    targets: tuple[Target, ...],
    deadline: float,
    progress: Progress,
    *,
    dialer: Dialer | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Until a TCP connection through the tailnet to each of TARGETS succeeds (STATUS is the
    manager's, Running); OperationFailed at DEADLINE naming those that never answered."""
    if dialer is None:
        from spacetail.nc import tailnet_from_status

        dialer = tailnet_from_status(status)[0]
    pending = {hostport.format(host, port): (host, port) for host, port in targets}
    last = dict.fromkeys(pending, "no answer yet")
    while True:
        for name, (host, port) in list(pending.items()):
            left = deadline - clock()
            if left <= 0:
                break
            dialer.timeout = min(TRY_AT_MOST, left)
            try:
                dialer.dial(host, port).close()
            except OSError as exc:  # a DialError: tailscale's reason, or the resolver's
                last[name] = _reason(name, exc)
            else:
                del pending[name]
        if not pending:
            return
        left = deadline - clock()
        if left <= 0:
            raise OperationFailed(_failure(pending, last))
        progress.pending("targets", {n: last[n] for n in pending}, deadline)
        sleep(min(PAUSE, left))


def _reason(name: str, exc: OSError) -> str:
    text = str(exc) or type(exc).__name__
    return text.removeprefix(f"cannot reach {name}: ")


def _failure(pending: dict[str, Target], last: dict[str, str]) -> str:
    named = "; ".join(f"{name}: {last[name]}" for name in pending)
    return (
        f"no TCP connection through the tailnet in time to {named}\n"
        "  what to do: check that the service listens there and that the tailnet's policy lets "
        "this node reach it (`spacetail doctor --target HOST:PORT` checks each step), or raise "
        "--timeout"
    )
