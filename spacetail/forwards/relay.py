"""The forwarders' data plane: one thread with one selector carries every accepted connection to
its target; each dial (the SOCKS5 handshake with tailscaled's proxy, and a question to
tailscale's resolver when the proxy cannot resolve a split-DNS name) runs in a short-lived
thread of its own.

Why a thread per dial, and no shared pool: a pool of N workers is exhausted by N connections
to a target that never completes its TCP handshake, and every other forward's connections then
wait behind them (8 such dials delayed a healthy forward by 5 to 10 s). A thread per dial has
nothing to exhaust: there is at most one per open connection, so the connection cap bounds
them. Non-blocking handshakes in the selector would avoid the threads, but the resolver
fallback is an HTTP request over the LocalAPI socket that would need its own non-blocking
client, for no gain a user would see. Each dial is bounded in time by the selector loop
(DIAL_TIMEOUT): past it the client is closed and the forward's last_error says so, whatever
the dial thread is still waiting for; what it brings back later is closed.

Descriptors are bounded: each forward's cap comes from fdbudget (the soft RLIMIT_NOFILE is
raised or the cap lowered to fit), and when accept still fails for lack of descriptors
(EMFILE, ENFILE) the forward stops accepting for ACCEPT_PAUSE and logs one line, rather than
spinning on a listener that stays readable.

Memory is bounded per connection: a direction holds at most CHUNK bytes that its destination has
not taken yet (in a pipe, moved with splice(2), or failing that in user space), and its source
is not read while that is full (backpressure: a client that never reads stalls its target, not
our memory). An idle connection holds no bytes at all. Idle connections are never closed here;
one whose client said EOF is, after EOF_GRACE of silence from its target (relay_conn says why),
or at once when its forward is full and a new client arrives.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import queue
import resource
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from spacetail.forwards.connection import CHUNK, Connection, Stats
from spacetail.forwards.fdbudget import Budget
from spacetail.forwards.spec import ForwardSpec
from spacetail.state import sockets
from spacetail.state.status import Forward

if TYPE_CHECKING:
    from spacetail.config.loader import Config
    from spacetail.tailnet.tailscale import LocalAPI

MAX_OPEN = 256
DIAL_TIMEOUT = 10.0
EOF_GRACE = 10.0  # a client's kept EOF goes on after this long without a byte from the target
ACCEPT_PAUSE = 0.5  # out of descriptors: stop accepting this long instead of spinning
STOP_TIMEOUT = 5.0
_OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)

__all__ = ["CHUNK", "DIAL_TIMEOUT", "MAX_OPEN", "Dials", "Forwarder"]


class Dials(Protocol):
    def dial(self, host: str, port: int) -> socket.socket: ...


@dataclass(eq=False)  # a key of the paused timer: one per listener, by identity
class _Forward:
    spec: ForwardSpec
    listener: socket.socket
    stats: Stats = field(default_factory=Stats)


@dataclass(frozen=True)
class Timing:
    dial_timeout: float = DIAL_TIMEOUT
    eof_grace: float = EOF_GRACE
    accept_pause: float = ACCEPT_PAUSE


class Forwarder:
    """Serves SPECS on their LISTENERS (bound, from forward.bind_listeners) through DIALER, each
    forward holding BUDGET.max_open connections at most."""

    def __init__(
        self,
        specs: Sequence[ForwardSpec],
        listeners: Sequence[socket.socket],
        dialer: Dials,
        *,
        log: Callable[[str], None],
        budget: Budget | None = None,
        timing: Timing = Timing(),
        clock: Callable[[], float] = time.monotonic,
        splice: bool = True,
    ) -> None:
        if len(specs) != len(listeners):
            raise ValueError("one listener per spec")
        self._forwards = [_Forward(s, sock) for s, sock in zip(specs, listeners, strict=True)]
        self._dialer = dialer
        self._log = log
        self.budget = budget or Budget(MAX_OPEN, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        self.timing = timing
        self.clock = clock
        self._splice = splice
        self.uid = os.getuid()  # whose forwards these are: root's connections are let in too
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._dialed: queue.SimpleQueue[tuple[Connection, socket.socket | OSError]] = (
            queue.SimpleQueue()
        )
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._thread = threading.Thread(target=self._run, name="spacetail-forward", daemon=True)
        self._loop = _Loop(self)

    # --- public ---------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Close every listener and connection and join the data-plane thread (STOP_TIMEOUT at
        most). Dial threads still inside a handshake finish on their own (each dial has its own
        timeout) and close what they get."""
        self._stopping.set()
        self._wake()
        if self._thread.is_alive():
            self._thread.join(STOP_TIMEOUT)
        else:
            self._loop.close_all()

    def snapshot(self) -> tuple[Forward, ...]:
        """Each forward as the status shows it."""
        with self._lock:
            return tuple(
                Forward.from_json({"listen": f.spec.listen, "target": f.spec.target,
                                   **f.stats.as_dict(), **self.budget.as_dict()})
                for f in self._forwards
            )  # fmt: skip

    # --- dial threads ---------------------------------------------------------------------------

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # already awake (buffer full) or shut down

    def _start_dial(self, conn: Connection) -> None:
        thread = threading.Thread(target=self._dial, args=(conn,), name="spacetail-dial",
                                  daemon=True)  # fmt: skip
        thread.start()

    def _dial(self, conn: Connection) -> None:
        result: socket.socket | OSError
        try:
            result = self._dialer.dial(conn.spec.target_host, conn.spec.target_port)
        except OSError as exc:
            result = exc
        if self._stopping.is_set():
            if isinstance(result, socket.socket):
                result.close()
            return
        self._dialed.put((conn, result))
        self._wake()

    def _run(self) -> None:
        try:
            self._loop.run()
        except Exception as exc:  # a bug must not kill the manager silently
            self._log(f"forwarders stopped on an internal error: {exc!r}")
        finally:
            self._loop.close_all()


class _Loop:
    """The selector loop; its state is touched by the data-plane thread only (and by stop()
    after that thread has ended). Three timers, each a dict in deadline order (entries are
    added with a constant delay, so the first is always the next due): dials in flight,
    forwards whose accepting is paused, connections holding their client's EOF."""

    def __init__(self, owner: Forwarder) -> None:
        import selectors

        self.o = owner
        self.sel = selectors.DefaultSelector()
        self.conns: set[Connection] = set()
        self.dialing: dict[Connection, float] = {}  # -> give up at
        self.paused: dict[_Forward, float] = {}  # -> accept again at
        self.holding: dict[Connection, float] = {}  # -> pass the client's EOF on at
        self.closed = False
        self.rounds = 0  # select() wake-ups: a relay that spins shows here

    def run(self) -> None:
        o = self.o
        self.sel.register(o._wake_r, 1, None)
        for fwd in o._forwards:
            self.sel.register(fwd.listener, 1, fwd)
        while not o._stopping.is_set():
            events = self.sel.select(self._timeout())
            self.rounds += 1
            for key, mask in events:
                data = key.data
                if data is None:
                    self._drain_wake()
                elif isinstance(data, _Forward):
                    self._accept(data)
                else:
                    conn, side = data
                    if conn in self.conns:
                        self._service(conn, side, mask)
            self._expire(o.clock())

    def _timeout(self) -> float | None:
        due = [next(iter(d.values())) for d in (self.dialing, self.paused, self.holding) if d]
        return max(0.0, min(due) - self.o.clock()) if due else None

    def _expire(self, now: float) -> None:
        while self.dialing and (first := next(iter(self.dialing.items())))[1] <= now:
            conn = first[0]
            del self.dialing[conn]
            conn.client.close()
            self._gone(conn)
            self._fail(conn.stats, f"{conn.spec.target}: no connection within "
                       f"{self.o.timing.dial_timeout:g} s (tailscale's proxy neither connected "
                       "nor refused: is the host up, and may this node reach it?)")  # fmt: skip
        while self.paused and (fwd_due := next(iter(self.paused.items())))[1] <= now:
            fwd = fwd_due[0]
            del self.paused[fwd]
            with self.o._lock:
                fwd.stats.accept_paused = False
            self.sel.register(fwd.listener, 1, fwd)
            self._accept(fwd)
        while self.holding and (held := next(iter(self.holding.items())))[1] <= now:
            conn = held[0]
            del self.holding[conn]
            try:
                conn.pass_client_eof()
            except OSError as exc:
                conn.error = str(exc)
            self._after_service(conn)

    def _drain_wake(self) -> None:
        try:
            while self.o._wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass
        while True:
            try:
                conn, result = self.o._dialed.get_nowait()
            except queue.Empty:
                return
            self._dialed(conn, result)

    def _accept(self, fwd: _Forward) -> None:
        for _ in range(64):  # a burst of connects; the rest on the next round
            try:
                client, stranger = self._take(fwd)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _OUT_OF_DESCRIPTORS:
                    self._pause(fwd, exc)
                    return
                continue  # ECONNABORTED and friends: that client is gone, not the listener
            if stranger:
                client.close()
                with self.o._lock:
                    fwd.stats.refused_other_uid += 1
                continue
            if not self._room(fwd):
                client.close()
                continue
            conn = Connection(fwd.spec, fwd.stats, client)
            self.dialing[conn] = self.o.clock() + self.o.timing.dial_timeout
            self.o._start_dial(conn)

    def _take(self, fwd: _Forward) -> tuple[socket.socket, bool]:
        """The next client, and whether it is a stranger. Out of descriptors, for the accept or
        for the question whose the client is, raises as accept does (the client closed)."""
        client, peer = fwd.listener.accept()
        try:
            return client, self._stranger(client, peer)
        except OSError:
            client.close()
            raise

    def _stranger(self, client: socket.socket, peer: tuple[str, int]) -> bool:
        """Whether CLIENT is another local user's (not this uid, not root): the uid of its socket,
        asked of the kernel once per accept (state/sockets.py). A loopback client whose socket is
        not there (gone already) is refused too; a client of another host has none and is let
        in (its forward listens beyond loopback on purpose). OSError when no descriptor is left
        to ask with: the caller pauses as for accept's own."""
        try:
            uid = sockets.peer_uid(peer[:2], client.getsockname()[:2])
        except OSError as exc:
            if exc.errno in _OUT_OF_DESCRIPTORS:
                raise
            return True
        except ValueError:
            return True
        if uid is None:
            ip = ipaddress.ip_address(peer[0].split("%", 1)[0])
            mapped = getattr(ip, "ipv4_mapped", None)
            return (mapped or ip).is_loopback
        return uid not in (self.o.uid, 0)

    def _pause(self, fwd: _Forward, exc: OSError) -> None:
        """The listener stays readable while the backlog waits: accepting again at once would
        spin. Stop for a moment, say so once; the backlog keeps the clients waiting."""
        self.sel.unregister(fwd.listener)
        self.paused[fwd] = self.o.clock() + self.o.timing.accept_pause
        with self.o._lock:
            fwd.stats.accept_paused = True
            fwd.stats.accept_pauses += 1
        self._fail(fwd.stats, f"accept on {fwd.spec.listen}: {exc.strerror or exc}; not "
                   f"accepting for {self.o.timing.accept_pause:g} s")  # fmt: skip

    def _room(self, fwd: _Forward) -> bool:
        """Count a new connection in, or refuse it when the forward is full and none of its
        connections is only holding a client's EOF (the oldest such one gives way)."""
        with self.o._lock:
            full = fwd.stats.open >= self.o.budget.max_open
        if full:
            oldest = next((c for c in self.holding if c.stats is fwd.stats), None)
            if oldest is None:
                with self.o._lock:
                    fwd.stats.refused += 1
                return False
            self._close(oldest)
        with self.o._lock:
            fwd.stats.open += 1
            fwd.stats.total += 1
        return True

    def _dialed(self, conn: Connection, result: socket.socket | OSError) -> None:
        if self.dialing.pop(conn, None) is None:  # given up on already
            if isinstance(result, socket.socket):
                result.close()
            return
        if isinstance(result, OSError):
            conn.client.close()
            self._gone(conn)
            self._fail(conn.stats, f"{conn.spec.target}: {result}")
            return
        try:
            conn.attach(result, use_splice=self.o._splice)
        except OSError as exc:
            result.close()
            conn.client.close()
            self._gone(conn)
            self._fail(conn.stats, f"{conn.spec.target}: {exc}")
            return
        self.conns.add(conn)
        self._update(conn)

    def _gone(self, conn: Connection) -> None:
        with self.o._lock:
            conn.stats.open -= 1

    def _fail(self, stats: Stats, message: str) -> None:
        with self.o._lock:
            stats.last_error = message
        self.o._log(f"forward: {message}")

    def _service(self, conn: Connection, side: int, mask: int) -> None:
        try:
            conn.service(side, mask, self.o._lock)
        except OSError as exc:
            conn.error = str(exc)
        self._after_service(conn)

    def _after_service(self, conn: Connection) -> None:
        if conn.finished():
            self._close(conn)
            return
        self._update(conn)
        if conn.holding_eof():  # any event on it restarts the target's grace
            self.holding.pop(conn, None)
            self.holding[conn] = self.o.clock() + self.o.timing.eof_grace
        else:
            self.holding.pop(conn, None)

    def _update(self, conn: Connection) -> None:
        for side, sock in enumerate(conn.sockets()):
            events = conn.events(side)
            registered = conn.registered[side]
            if events and not registered:
                self.sel.register(sock, events, (conn, side))
            elif events and registered != events:
                self.sel.modify(sock, events, (conn, side))
            elif not events and registered:
                self.sel.unregister(sock)
            conn.registered[side] = events

    def _close(self, conn: Connection) -> None:
        for side, sock in enumerate(conn.sockets()):
            if conn.registered[side]:
                self.sel.unregister(sock)
                conn.registered[side] = 0
        conn.close(self.o._lock)
        self.conns.discard(conn)
        self.holding.pop(conn, None)
        self._gone(conn)

    def close_all(self) -> None:
        if self.closed:
            return
        self.closed = True
        for conn in list(self.conns):
            self._close(conn)
        for conn in self.dialing:
            conn.client.close()
        self.dialing.clear()
        for fwd in self.o._forwards:
            fwd.listener.close()
        self.sel.close()
        self.o._wake_r.close()
        self.o._wake_w.close()


def forwards(
    cfg: Config, listeners: Sequence[socket.socket], api: LocalAPI, log: Callable[[str], None]
) -> Forwarder | None:
    """The manager's forwards, if it has any: dialing through tailscaled's SOCKS5 proxy, and
    asking tailscale's resolver for names the proxy cannot resolve (split DNS, tailscale#4677);
    the descriptor limit raised, or the cap lowered, to fit (fdbudget)."""
    if not listeners:
        return None
    from spacetail.config import hostport
    from spacetail.forwards import fdbudget
    from spacetail.tailnet.dns import tailnet_resolver
    from spacetail.tailnet.socks5 import Dialer

    dialer = Dialer(hostport.parse(cfg.socks5), tailnet_resolver(api), timeout=DIAL_TIMEOUT)
    budget = fdbudget.budget(len(cfg.forwards), MAX_OPEN)
    if budget.raised_from is not None:
        log(f"forwards: descriptor limit raised from {budget.raised_from} to {budget.fd_limit}")
    if budget.max_open < MAX_OPEN:
        log(f"forwards: at most {budget.max_open} connections each: the descriptor limit is "
            f"{budget.fd_limit} (the hard limit); raise it to allow {MAX_OPEN}")  # fmt: skip
    return Forwarder(cfg.forwards, listeners, dialer, log=log, budget=budget)
