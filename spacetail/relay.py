"""The forwarders' data plane: one thread with one selector carries every accepted connection to
its target, and a few dial threads do the blocking part (the SOCKS5 handshake, and a question to
tailscale's resolver when the proxy cannot resolve a split-DNS name).

Why dial threads rather than a non-blocking handshake in the selector: the fallback to the tailnet
resolver is an HTTP request over the LocalAPI socket, and doing that non-blocking too would double
this module for no gain. The pool is small and fixed (DIAL_WORKERS), a dial never touches the
selector, and the connected socket comes back through a queue plus a wake-up byte, so a slow
dial never delays the relay of other connections.

Memory is bounded per connection: a direction holds at most CHUNK bytes that its destination has
not taken yet (in a pipe, moved with splice(2), or failing that in user space), and its source
is not read while that is full (backpressure: a client that never reads stalls its target, not
our memory). An idle connection holds no bytes at all. Idle connections are never closed here.
"""

from __future__ import annotations

import queue
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from spacetail.forward import ForwardSpec
from spacetail.relay_conn import CHUNK, Connection, Stats

if TYPE_CHECKING:
    from spacetail.config import Config
    from spacetail.tailscale import LocalAPI

MAX_OPEN = 256
DIAL_WORKERS = 8
STOP_TIMEOUT = 5.0

__all__ = ["CHUNK", "DIAL_WORKERS", "MAX_OPEN", "Dials", "Forwarder"]


class Dials(Protocol):
    def dial(self, host: str, port: int) -> socket.socket: ...


@dataclass
class _Forward:
    spec: ForwardSpec
    listener: socket.socket
    stats: Stats = field(default_factory=Stats)


class Forwarder:
    """Serves SPECS on their LISTENERS (bound, from forward.bind_listeners) through DIALER."""

    def __init__(
        self,
        specs: Sequence[ForwardSpec],
        listeners: Sequence[socket.socket],
        dialer: Dials,
        *,
        log: Callable[[str], None],
        max_open: int = MAX_OPEN,
        dial_workers: int = DIAL_WORKERS,
        splice: bool = True,
    ) -> None:
        if len(specs) != len(listeners):
            raise ValueError("one listener per spec")
        self._forwards = [_Forward(s, sock) for s, sock in zip(specs, listeners, strict=True)]
        self._dialer = dialer
        self._log = log
        self._max_open = max_open
        self._splice = splice
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._jobs: queue.SimpleQueue[Connection | None] = queue.SimpleQueue()
        self._dialed: queue.SimpleQueue[tuple[Connection, socket.socket | OSError]] = (
            queue.SimpleQueue()
        )
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._thread = threading.Thread(target=self._run, name="spacetail-forward", daemon=True)
        self._workers = [
            threading.Thread(target=self._dial_loop, name=f"spacetail-dial-{i}", daemon=True)
            for i in range(dial_workers)
        ]
        self._loop = _Loop(self)

    # --- public ---------------------------------------------------------------------------------

    def start(self) -> None:
        for worker in self._workers:
            worker.start()
        self._thread.start()

    def stop(self) -> None:
        """Close every listener and connection and join the data-plane thread (STOP_TIMEOUT at
        most). Dial threads still inside a handshake finish on their own (each dial has its own
        timeout) and close what they get."""
        self._stopping.set()
        for _ in self._workers:
            self._jobs.put(None)
        self._wake()
        if self._thread.is_alive():
            self._thread.join(STOP_TIMEOUT)
        else:
            self._loop.close_all()
        for worker in self._workers:
            worker.join(0.05)

    def snapshot(self) -> list[dict[str, object]]:
        """One object per forward, for status --json."""
        with self._lock:
            return [{"listen": f.spec.listen, "target": f.spec.target, **f.stats.as_dict()}
                    for f in self._forwards]  # fmt: skip

    # --- dial threads ---------------------------------------------------------------------------

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # already awake (buffer full) or shut down

    def _dial_loop(self) -> None:
        while True:
            conn = self._jobs.get()
            if conn is None:
                return
            if self._stopping.is_set():
                conn.client.close()
                continue
            spec = conn.spec
            result: socket.socket | OSError
            try:
                result = self._dialer.dial(spec.target_host, spec.target_port)
            except OSError as exc:
                result = exc
            if self._stopping.is_set():
                if isinstance(result, socket.socket):
                    result.close()
                conn.client.close()
                continue
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
    after that thread has ended)."""

    def __init__(self, owner: Forwarder) -> None:
        import selectors

        self.o = owner
        self.sel = selectors.DefaultSelector()
        self.conns: set[Connection] = set()
        self.closed = False
        self.rounds = 0  # select() wake-ups: a relay that spins shows here

    def run(self) -> None:
        o = self.o
        self.sel.register(o._wake_r, 1, None)
        for fwd in o._forwards:
            self.sel.register(fwd.listener, 1, fwd)
        while not o._stopping.is_set():
            events = self.sel.select()
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
                client, _addr = fwd.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and friends: keep serving the open ones
                self._fail(fwd.stats, f"accept on {fwd.spec.listen}: {exc}")
                return
            with self.o._lock:
                if fwd.stats.open >= self.o._max_open:
                    fwd.stats.refused += 1
                    refuse = True
                else:
                    fwd.stats.open += 1
                    fwd.stats.total += 1
                    refuse = False
            if refuse:
                client.close()
                continue
            conn = Connection(fwd.spec, fwd.stats, client)
            self.o._jobs.put(conn)

    def _dialed(self, conn: Connection, result: socket.socket | OSError) -> None:
        if isinstance(result, OSError):
            conn.client.close()
            with self.o._lock:
                conn.stats.open -= 1
            self._fail(conn.stats, f"{conn.spec.target}: {result}")
            return
        try:
            conn.attach(result, use_splice=self.o._splice)
        except OSError as exc:
            result.close()
            conn.client.close()
            with self.o._lock:
                conn.stats.open -= 1
            self._fail(conn.stats, f"{conn.spec.target}: {exc}")
            return
        self.conns.add(conn)
        self._update(conn)

    def _fail(self, stats: Stats, message: str) -> None:
        with self.o._lock:
            stats.last_error = message
        self.o._log(f"forward: {message}")

    def _service(self, conn: Connection, side: int, mask: int) -> None:
        try:
            conn.service(side, mask, self.o._lock)
        except OSError as exc:
            conn.error = str(exc)
        if conn.finished():
            self._close(conn)
        else:
            self._update(conn)

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
        with self.o._lock:
            conn.stats.open -= 1

    def close_all(self) -> None:
        if self.closed:
            return
        self.closed = True
        for conn in list(self.conns):
            self._close(conn)
        for fwd in self.o._forwards:
            fwd.listener.close()
        self.sel.close()
        self.o._wake_r.close()
        self.o._wake_w.close()


def forwards(
    cfg: Config, listeners: Sequence[socket.socket], api: LocalAPI, log: Callable[[str], None]
) -> Forwarder | None:
    """The manager's forwards, if it has any: dialing through tailscaled's SOCKS5 proxy, and
    asking tailscale's resolver for names the proxy cannot resolve (split DNS, tailscale#4677)."""
    if not listeners:
        return None
    from spacetail import hostport
    from spacetail.socks5 import Dialer
    from spacetail.tailnet_dns import tailnet_resolver

    dialer = Dialer(hostport.parse(cfg.socks5), tailnet_resolver(api))
    return Forwarder(cfg.forwards, listeners, dialer, log=log)
