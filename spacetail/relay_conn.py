"""One forwarded connection: a client socket, its target socket, and one bounded direction each
way, with half-close (EOF on one side becomes shutdown(SHUT_WR) on the other)."""

from __future__ import annotations

import selectors
import socket
import threading
from dataclasses import dataclass

from spacetail.forward import ForwardSpec

CHUNK = 64 * 1024  # the most one direction holds that its destination has not taken yet
READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
CLIENT, TARGET = 0, 1


@dataclass
class Stats:
    open: int = 0
    total: int = 0
    refused: int = 0
    bytes_sent: int = 0  # client -> target
    bytes_received: int = 0  # target -> client
    buffered: int = 0  # read from one side, not yet taken by the other (<= 2 chunks a conn)
    last_error: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "open": self.open,
            "total": self.total,
            "refused": self.refused,
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
            "buffered": self.buffered,
            "last_error": self.last_error,
        }


class Direction:
    """Bytes read from one side waiting for the other; at most one chunk, never more."""

    __slots__ = ("eof", "pending", "shut")

    def __init__(self) -> None:
        self.pending: memoryview | None = None
        self.eof = False  # the source said EOF
        self.shut = False  # ... and the destination was told (shutdown SHUT_WR)

    def wants_read(self) -> bool:
        return not self.eof and self.pending is None

    def done(self) -> bool:
        return self.shut


class Connection:
    """Client and target sockets plus their two directions; driven by the selector loop."""

    def __init__(self, spec: ForwardSpec, stats: Stats, client: socket.socket, since: float):
        self.spec = spec
        self.stats = stats
        self.client = client
        self.target: socket.socket | None = None
        self.since = since
        # dirs[s] carries bytes read from side s to the other side.
        self.dirs = (Direction(), Direction())
        self.registered = [0, 0]
        self.error: str | None = None

    def attach(self, target: socket.socket) -> None:
        self.client.setblocking(False)
        target.setblocking(False)
        self.target = target

    def sockets(self) -> tuple[socket.socket, socket.socket]:
        assert self.target is not None
        return self.client, self.target

    def events(self, side: int) -> int:
        """What to wait for on SIDE: readable while its direction has room, writable while the
        other direction has bytes for it."""
        events = 0
        if self.dirs[side].wants_read():
            events |= READ
        if self.dirs[1 - side].pending is not None:
            events |= WRITE
        return events

    def service(self, side: int, mask: int, lock: threading.Lock) -> None:
        if mask & WRITE:
            self._flush(1 - side, lock)
        if mask & READ and self.dirs[side].wants_read():
            self._read(side, lock)

    def _read(self, side: int, lock: threading.Lock) -> None:
        src = self.sockets()[side]
        try:
            data = src.recv(CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        direction = self.dirs[side]
        if not data:
            direction.eof = True
        else:
            direction.pending = memoryview(data)
            with lock:
                self.stats.buffered += len(data)
        self._flush(side, lock)  # most writes succeed at once: no extra round through select

    def _flush(self, side: int, lock: threading.Lock) -> None:
        """Send what SIDE's direction holds to the other side; pass its EOF on once drained."""
        direction = self.dirs[side]
        dst = self.sockets()[1 - side]
        if direction.pending is not None:
            try:
                sent = dst.send(direction.pending)
            except (BlockingIOError, InterruptedError):
                return
            with lock:
                self.stats.buffered -= sent
                if side == CLIENT:
                    self.stats.bytes_sent += sent
                else:
                    self.stats.bytes_received += sent
            rest = direction.pending[sent:]
            direction.pending = rest if len(rest) else None
        if direction.pending is None and direction.eof and not direction.shut:
            direction.shut = True
            dst.shutdown(socket.SHUT_WR)

    def finished(self) -> bool:
        return self.error is not None or (self.dirs[0].done() and self.dirs[1].done())

    def close(self, lock: threading.Lock) -> None:
        with lock:  # what was never delivered is no longer held
            for direction in self.dirs:
                if direction.pending is not None:
                    self.stats.buffered -= len(direction.pending)
                    direction.pending = None
        self.client.close()
        if self.target is not None:
            self.target.close()
