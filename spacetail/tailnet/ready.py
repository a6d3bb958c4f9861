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

import copy
import functools
import math
import queue
import threading
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
# Runs one try's work, in a thread of its own (a test's runs it at once, in its own thread).
Start = Callable[[Callable[[], None]], None]

TRY_AT_MOST = 3.0  # one dial's bound: a target that never completes its handshake is asked again
PAUSE = 0.5  # between one's tries: a service coming up is seen within this, without a spin
AT_ONCE = 16  # tries in flight at most: a hook's list of targets, never a flood of threads
GRACE = 1.5  # for tries in flight at the deadline to say why (a ping takes 1 s at least)


def wait_beyond_running(
    status: Status,
    *,
    peers: tuple[str, ...],
    targets: tuple[Target, ...],
    deadline: float,
    env: Mapping[str, str],
    progress: Progress,
    out: TextIO | None = None,
    check: Callable[[], None] | None = None,
) -> None:
    """The peers, then the targets, of a node the manager says is Running; a line on OUT for
    each kind that answered. CHECK, before each try, raises when the manager has ended."""
    if peers:
        wait_for_peers(status, peers, deadline, env, progress, check=check)
        if out is not None:
            say(out, f"peers answer: {', '.join(peers)}")
    if targets:
        wait_for_targets(status, targets, deadline, progress, check=check)
        if out is not None:
            names = ", ".join(hostport.format(h, p) for h, p in targets)
            say(out, f"targets answer: {names}")


class _Asking:
    """The tries of one wait: which are pending, in flight, due again when; their answers come
    back on a queue from the threads that ask them."""

    def __init__(self, tries: Mapping[str, Try], clock: Callable[[], float], start: Start) -> None:
        self.tries = dict(tries)
        self.pending = dict.fromkeys(tries, True)  # insertion order: the order given
        self.last = dict.fromkeys(tries, "no answer yet")
        self.due_at = dict.fromkeys(tries, clock())
        self.flying: set[str] = set()
        self.answers: queue.SimpleQueue[tuple[str, str | Exception | None]] = queue.SimpleQueue()
        self.clock = clock
        self.start = start

    def launch(self, deadline: float) -> None:
        """Start every try that is due, AT_ONCE in flight at most, each given what is left."""
        now = self.clock()
        for name in self.pending:
            if len(self.flying) >= AT_ONCE:
                return
            if name not in self.flying and self.due_at[name] <= now:
                self.flying.add(name)
                self.start(functools.partial(self._ask, name, deadline - now))

    def _ask(self, name: str, left: float) -> None:
        why: str | Exception | None
        try:
            why = self.tries[name](left)
        except Exception as exc:  # raised again in the waiting thread, never lost with this one
            why = exc
        self.answers.put((name, why))

    def settle(self, wait: float = 0.0) -> bool:
        """Take the answers that have come, waiting up to WAIT for a first one; whether any came."""
        came = False
        while True:
            try:
                name, why = (
                    self.answers.get(timeout=wait) if wait > 0 else self.answers.get_nowait()
                )
            except queue.Empty:
                return came
            came, wait = True, 0.0
            self.flying.discard(name)
            if isinstance(why, Exception):
                raise why
            if why is None:
                del self.pending[name]
            else:
                self.last[name] = why
                self.due_at[name] = self.clock() + PAUSE

    def next_due(self) -> float:
        """When a try not in flight is next due (infinity when none can be started now)."""
        if len(self.flying) >= AT_ONCE:
            return math.inf
        return min((self.due_at[n] for n in self.pending if n not in self.flying), default=math.inf)

    def finish(self, grace: float) -> None:
        """Wait up to GRACE for the tries still in flight (given time until the deadline, they
        end there) to say why."""
        end = time.monotonic() + grace
        while self.flying and (wait := end - time.monotonic()) > 0:
            self.settle(wait)

    def silent(self) -> dict[str, str]:
        return {name: self.last[name] for name in self.pending}


def _in_a_thread(work: Callable[[], None]) -> None:
    threading.Thread(target=work, name="spacetail-try", daemon=True).start()


def each_answers(
    what: str,
    tries: Mapping[str, Try],
    deadline: float,
    progress: Progress,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    start: Start = _in_a_thread,
    check: Callable[[], None] | None = None,
) -> dict[str, str]:
    """Ask each of TRIES, each in its own thread (START) and AT_ONCE at most at a time, again
    PAUSE after each failed try, until every one has answered or DEADLINE has passed (a try is
    never given time beyond it): a silent one never delays another, nor the progress line.
    CHECK, before tries are started, raises to end the wait at once (the manager has ended).
    The last words of those that never answered (empty when all did)."""
    asking = _Asking(tries, clock, start)
    while True:
        asking.settle()
        left = deadline - clock()
        if not asking.pending:
            return {}
        if left <= 0:
            asking.finish(GRACE)
            return asking.silent()
        if check is not None and asking.next_due() <= clock():
            check()
        asking.launch(deadline)
        if asking.settle():
            continue  # answered at once (a start that asks in this thread)
        progress.pending(what, asking.silent(), deadline)
        wait = min(progress.slice(left), left, max(0.0, asking.next_due() - clock()))
        if asking.flying:
            asking.settle(max(wait, 0.001))
        else:
            sleep(wait)


def wait_for_peers(
    status: Status,
    peers: tuple[str, ...],
    deadline: float,
    env: Mapping[str, str],
    progress: Progress,
    *,
    check: Callable[[], None] | None = None,
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

    tries = {p: pinged(p) for p in peers}
    missing = each_answers("peers", tries, deadline, progress, check=check)
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
    start: Start = _in_a_thread,
    check: Callable[[], None] | None = None,
    guard: Callable[[], str | None] | None = None,
) -> None:
    """Until a TCP connection through the tailnet to each of TARGETS succeeds (STATUS is the
    manager's, Running); OperationFailed at DEADLINE naming those that never answered. GUARD
    says why the proxy cannot be trusted now (None when it can), asked before and after each
    dial: by default, unless the dialer is a test's, its port must be held by the manager's
    tailscaled."""
    if dialer is None:
        from spacetail.tailnet.dial import tailnet_from_status

        dialer = tailnet_from_status(status)[0]
        guard = guard or proxy_guard(status, dialer.proxy)
    chosen = dialer

    def dialled(name: str, host: str, port: int) -> Try:
        def once(left: float) -> str | None:
            mine = copy.copy(chosen)  # tries run side by side: each its own timeout
            mine.timeout = min(TRY_AT_MOST, left)
            distrust = guard() if guard else None
            if distrust:
                return distrust
            try:
                mine.dial(host, port).close()
            except OSError as exc:  # a DialError: tailscale's reason, or the resolver's
                return (str(exc) or type(exc).__name__).removeprefix(f"cannot reach {name}: ")
            # The port may have changed hands while it was dialled: an answer counts only if
            # tailscaled still holds it.
            return guard() if guard else None

        return once

    names = {hostport.format(h, p): (h, p) for h, p in targets}
    tries = {name: dialled(name, h, p) for name, (h, p) in names.items()}
    missing = each_answers(
        "targets", tries, deadline, progress, clock=clock, sleep=sleep, start=start, check=check
    )
    if missing:
        raise OperationFailed(_failure(missing))


def proxy_guard(status: Status, proxy: tuple[str, int]) -> Callable[[], str | None]:
    """Why tailscale's SOCKS5 proxy at PROXY cannot be trusted now, or None: its listening socket
    must be held by the manager's tailscaled (the status's pid, or a later child of the manager
    after a restart). Once tailscaled is gone its port on loopback is anyone's to bind, and
    whoever binds it can answer every CONNECT."""
    from spacetail.state import sockets

    def why_not() -> str | None:
        host, port = proxy
        pids = [status.tailscaled_pid] if status.tailscaled_pid else []
        if sockets.listener_owned(host, port, pids):
            return None
        if status.manager_pid and sockets.listener_owned(
            host, port, sockets.children(status.manager_pid)
        ):
            return None
        return (
            f"tailscale's SOCKS5 proxy port {hostport.format(host, port)} is not held by the "
            f"manager's tailscaled (pid {status.tailscaled_pid}), so it was not trusted"
        )

    return why_not


def _failure(missing: Mapping[str, str]) -> str:
    named = "; ".join(f"{name}: {why}" for name, why in missing.items())
    return (
        f"no TCP connection through the tailnet in time to {named}\n"
        "  what to do: check that the service listens there and that the tailnet's policy lets "
        "this node reach it (`spacetail doctor --target HOST:PORT` checks each step), or raise "
        "--timeout"
    )
