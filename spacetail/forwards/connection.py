"""One forwarded connection: a client socket, its target socket, and one bounded direction each
way.

Half-close goes one way only. The target's EOF becomes shutdown(SHUT_WR) towards the client,
whose own direction stays open. The client's EOF is not passed on: tailscaled's proxies (1.96.4)
close both directions when their client half-closes, so passing it would lose the reply to a
request-then-EOF client (`nc -N`, `ncat --send-only`). The connection ends when the target has
closed and the client has said EOF too (or either fails). A client that closed for good looks
the same as one that only half-closed, so the kept EOF is passed on after all once the target
has said nothing for a while (the relay's EOF_GRACE), or at once when the target already said
EOF itself.

A direction moves bytes with splice(2) through a pipe of its own when it can: the bytes stay in
the kernel, bounded by the pipe's capacity (CHUNK), and never enter user space. Where a pipe
cannot be had (no os.splice, or out of file descriptors) it falls back to recv/send with at most
one CHUNK held in user space."""

from __future__ import annotations

import fcntl
import os
import selectors
import socket
import threading
from dataclasses import dataclass

from spacetail.forwards.spec import ForwardSpec

CHUNK = 64 * 1024  # the most one direction holds that its destination has not taken yet
READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
CLIENT, TARGET = 0, 1
_SPLICE = getattr(os, "splice", None)
_SPLICE_FLAGS = getattr(os, "SPLICE_F_NONBLOCK", 0) | getattr(os, "SPLICE_F_MOVE", 0)
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_F_GETPIPE_SZ = getattr(fcntl, "F_GETPIPE_SZ", 1032)


@dataclass
class Stats:
    open: int = 0
    total: int = 0
    refused: int = 0
    refused_other_uid: int = 0  # another local user's connections, closed at once
    bytes_sent: int = 0  # client -> target
    bytes_received: int = 0  # target -> client
    buffered: int = 0  # read from one side, not yet taken by the other (<= 2 chunks a conn)
    last_error: str | None = None
    accept_paused: bool = False  # out of descriptors: not accepting for a moment
    accept_pauses: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "open": self.open,
            "total": self.total,
            "refused": self.refused,
            "refused_other_uid": self.refused_other_uid,
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
            "buffered": self.buffered,
            "last_error": self.last_error,
            "accept_paused": self.accept_paused,
            "accept_pauses": self.accept_pauses,
        }


class Direction:
    """Bytes read from one side waiting for the other, in user space: one chunk at most."""

    def __init__(self) -> None:
        self.chunk: memoryview | None = None
        self.eof = False  # the source said EOF
        self.shut = False  # ... and the destination was told (shutdown SHUT_WR)

    @property
    def pending(self) -> int:
        return len(self.chunk) if self.chunk is not None else 0

    def wants_read(self) -> bool:
        return not self.eof and self.chunk is None

    def fill(self, src: socket.socket) -> int:
        """Read once from SRC: the byte count, 0 at EOF; BlockingIOError when nothing is there."""
        data = src.recv(CHUNK)
        if data:
            self.chunk = memoryview(data)
        return len(data)

    def drain(self, dst: socket.socket) -> int:
        """Write what is held to DST once: the byte count; BlockingIOError when DST is full."""
        assert self.chunk is not None
        sent = dst.send(self.chunk)
        rest = self.chunk[sent:]
        self.chunk = rest if len(rest) else None
        return sent

    def close(self) -> None:
        self.chunk = None


class SpliceDirection(Direction):
    """The same through a pipe with splice(2): the bytes never enter user space."""

    def __init__(self) -> None:
        super().__init__()
        self.r, self.w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            fcntl.fcntl(self.w, _F_SETPIPE_SZ, CHUNK)
        except OSError:
            pass  # over the user's pipe quota (pipe-user-pages-soft) pipes stay small
        # What the pipe really holds: reading more than fits would spin on a readable socket.
        self.capacity = min(CHUNK, int(fcntl.fcntl(self.w, _F_GETPIPE_SZ)))
        self.held = 0
        # The pipe can also fill up by its slots (one per socket buffer spliced in) before its
        # bytes reach capacity; then splice says EAGAIN on a readable socket, and reading again
        # before the pipe drains would spin.
        self.full = False

    @property
    def pending(self) -> int:
        return self.held

    def wants_read(self) -> bool:
        return not self.eof and not self.full and self.held < self.capacity

    def fill(self, src: socket.socket) -> int:
        assert _SPLICE is not None
        try:
            n = int(_SPLICE(src.fileno(), self.w, self.capacity - self.held, flags=_SPLICE_FLAGS))
        except BlockingIOError:
            # With bytes in the pipe, EAGAIN may be the pipe's: wait for a drain (WRITE on the
            # other side is armed while bytes are held). An empty pipe is never full.
            self.full = self.held > 0
            raise
        self.held += n
        return n

    def drain(self, dst: socket.socket) -> int:
        assert _SPLICE is not None
        n = int(_SPLICE(self.r, dst.fileno(), self.held, flags=_SPLICE_FLAGS))
        self.held -= n
        self.full = False
        return n

    def close(self) -> None:
        self.held = 0
        for fd in (self.r, self.w):
            os.close(fd)
        self.r = self.w = -1


def new_direction(use_splice: bool) -> Direction:
    if use_splice and _SPLICE is not None:
        try:
            return SpliceDirection()
        except OSError:
            pass  # EMFILE/ENFILE: this connection relays through user space instead
    return Direction()


class Connection:
    """Client and target sockets plus their two directions; driven by the selector loop."""

    def __init__(self, spec: ForwardSpec, stats: Stats, client: socket.socket) -> None:
        self.spec = spec
        self.stats = stats
        self.client = client
        self.target: socket.socket | None = None
        # dirs[s] carries bytes read from side s to the other side.
        self.dirs: tuple[Direction, Direction] = (Direction(), Direction())
        self.registered = [0, 0]
        self.error: str | None = None
        self.eof_passed = False  # the client's EOF went on to the target after all

    def attach(self, target: socket.socket, *, use_splice: bool = True) -> None:
        self.client.setblocking(False)
        target.setblocking(False)
        self.target = target
        self.dirs = (new_direction(use_splice), new_direction(use_splice))

    def sockets(self) -> tuple[socket.socket, socket.socket]:
        assert self.target is not None
        return self.client, self.target

    def events(self, side: int) -> int:
        """What to wait for on SIDE: readable while its direction has room, writable while the
        other direction has bytes for it."""
        events = 0
        if self.dirs[side].wants_read():
            events |= READ
        if self.dirs[1 - side].pending:
            events |= WRITE
        return events

    def service(self, side: int, mask: int, lock: threading.Lock) -> None:
        if mask & WRITE:
            self._flush(1 - side, lock)
        if mask & READ and self.dirs[side].wants_read():
            self._read(side, lock)

    def _read(self, side: int, lock: threading.Lock) -> None:
        direction = self.dirs[side]
        try:
            n = direction.fill(self.sockets()[side])
        except (BlockingIOError, InterruptedError):
            return
        if n == 0:
            direction.eof = True
        else:
            with lock:
                self.stats.buffered += n
        self._flush(side, lock)  # most writes succeed at once: no extra round through select

    def _flush(self, side: int, lock: threading.Lock) -> None:
        """Send what SIDE's direction holds to the other side; once drained, pass the target's
        EOF on to the client (the client's is kept, see the module's docstring)."""
        direction = self.dirs[side]
        dst = self.sockets()[1 - side]
        if direction.pending:
            try:
                sent = direction.drain(dst)
            except (BlockingIOError, InterruptedError):
                return
            with lock:
                self.stats.buffered -= sent
                if side == CLIENT:
                    self.stats.bytes_sent += sent
                else:
                    self.stats.bytes_received += sent
        if not direction.pending and direction.eof and not direction.shut:
            direction.shut = True
            if side == TARGET:
                dst.shutdown(socket.SHUT_WR)
        if self.dirs[CLIENT].shut and self.dirs[TARGET].shut and not self.eof_passed:
            self.pass_client_eof()  # the target said all it had: nothing more to lose

    def holding_eof(self) -> bool:
        """The client said EOF and it was kept from a target that may still answer."""
        return self.dirs[CLIENT].shut and not self.eof_passed

    def pass_client_eof(self) -> None:
        self.eof_passed = True
        assert self.target is not None
        self.target.shutdown(socket.SHUT_WR)

    def finished(self) -> bool:
        return self.error is not None or (self.dirs[0].shut and self.dirs[1].shut)

    def close(self, lock: threading.Lock) -> None:
        with lock:  # what was never delivered is no longer held
            for direction in self.dirs:
                self.stats.buffered -= direction.pending
        for direction in self.dirs:
            direction.close()
        self.client.close()
        if self.target is not None:
            self.target.close()
