"""Ready means the service answers: after Running, `up` and `wait` also wait for the peers
(`--peer`: `tailscale ping`) and the targets (`--wait-for`/`--target HOST:PORT`: a TCP connection
through the tailnet), asking each again until it answers or the one deadline (`--timeout`, shared
with the login) has passed; then the message names every one that never answered, with its last
error.

A node reports Running seconds before its peers see it (3 to 33 s, tailscale/github-action#191),
and a ping answered by a peer says nothing of the database behind it. So a target is dialled as
`nc` dials it, through the manager's SOCKS5 proxy with tailscale's own resolver as the fallback
for split-DNS names."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path

from spacetail.config import hostport
from spacetail.console import say
from spacetail.errors import OperationFailed
from spacetail.progress import Progress
from spacetail.state.status import Status
from spacetail.tailnet.socks5 import Dialer

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TextIO

Target = tuple[str, int]
# One try within the seconds left: None when it answered, else why not in its own words.
Try = Callable[[float], "str | None"]

TRY_AT_MOST = 3.0  # one dial's bound: a target that never completes its handshake is asked again
PAUSE = 0.5  # between rounds: a service coming up is seen within this, without a spin


def wait_beyond_running(
    status: Status,
    *,
    peers: tuple[str, ...],
    targets: tuple[Target, ...],
    deadline: float,
    env: Mapping[str, str],
    progress: Progress,
    out: TextIO | None = None,
) -> None:
    """The peers, then the targets, of a node the manager says is Running; a line on OUT for
    each kind that answered."""
    if peers:
        wait_for_peers(status, peers, deadline, env, progress)
        if out is not None:
            say(out, f"peers answer: {', '.join(peers)}")
    if targets:
        wait_for_targets(status, targets, deadline, progress)
        if out is not None:
            names = ", ".join(hostport.format(h, p) for h, p in targets)
            say(out, f"targets answer: {names}")


def each_answers(
    what: str,
    tries: Mapping[str, Try],
    deadline: float,
    progress: Progress,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, str]:
    """Ask each of TRIES, a round every PAUSE, until every one has answered or DEADLINE has
    passed (a try is never given time beyond it); the last words of those that never answered
    (empty when all did)."""
    pending = dict(tries)
    last = dict.fromkeys(pending, "no answer yet")
    while True:
        for name, attempt in list(pending.items()):
            left = deadline - clock()
            if left <= 0:
                break
            why = attempt(left)
            if why is None:
                del pending[name]
            else:
                last[name] = why
        left = deadline - clock()
        if not pending:
            return {}
        if left <= 0:
            return {name: last[name] for name in pending}
        progress.pending(what, {name: last[name] for name in pending}, deadline)
        sleep(min(PAUSE, left))


def wait_for_peers(
    status: Status,
    peers: tuple[str, ...],
    deadline: float,
    env: Mapping[str, str],
    progress: Progress,
) -> None:
    """Until each peer answers `tailscale ping` (a relayed answer counts), through the one-shot
    runner the doctor uses: no pty, a hard timeout, and no secret in its environment."""
    from spacetail.tailnet.oneshot import ping, sh_runner

    run = sh_runner(env)
    tailscale, sock = Path(str(status.tailscale)), Path(str(status.tailscaled_socket))

    def pinged(peer: str) -> Try:
        def once(left: float) -> str | None:
            # tailscale ping counts its --timeout in whole seconds, 1 at least
            result = ping(run, tailscale, sock, peer, max(1.0, min(TRY_AT_MOST, left)))
            return None if result.answered else (result.problem or "no answer")

        return once

    missing = each_answers("peers", {p: pinged(p) for p in peers}, deadline, progress)
    if missing:
        details = "; ".join(f"{peer}: {why}" for peer, why in missing.items())
        raise OperationFailed(f"peer(s) did not answer in time: {details}")


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
        from spacetail.tailnet.dial import tailnet_from_status

        dialer = tailnet_from_status(status)[0]
    chosen = dialer

    def dialled(name: str, host: str, port: int) -> Try:
        def once(left: float) -> str | None:
            chosen.timeout = min(TRY_AT_MOST, left)
            try:
                chosen.dial(host, port).close()
            except OSError as exc:  # a DialError: tailscale's reason, or the resolver's
                return (str(exc) or type(exc).__name__).removeprefix(f"cannot reach {name}: ")
            return None

        return once

    names = {hostport.format(h, p): (h, p) for h, p in targets}
    tries = {name: dialled(name, h, p) for name, (h, p) in names.items()}
    missing = each_answers("targets", tries, deadline, progress, clock=clock, sleep=sleep)
    if missing:
        raise OperationFailed(_failure(missing))


def _failure(missing: Mapping[str, str]) -> str:
    named = "; ".join(f"{name}: {why}" for name, why in missing.items())
    return (
        f"no TCP connection through the tailnet in time to {named}\n"
        "  what to do: check that the service listens there and that the tailnet's policy lets "
        "this node reach it (`spacetail doctor --target HOST:PORT` checks each step), or raise "
        "--timeout"
    )
