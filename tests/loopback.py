"""Loopback servers and small socket helpers for the forwarder tests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tests.helpers import free_port

__all__ = ["Target", "answer_later", "blackhole", "echo", "free_port", "recv_all"]

REQUEST = b"GET / HTTP/1.0\r\nHost: x\r\n\r\n"
REPLY = b"HTTP/1.0 200 OK\r\n\r\nlate but here"


class Target:
    """A loopback server running HANDLER(conn) in a thread per connection."""

    def __init__(self, handler: Callable[[socket.socket], None]) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.handler = handler
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            self.handler(conn)
        except OSError:
            pass

    def close(self) -> None:
        self.sock.close()
        for conn in self.conns:
            conn.close()


@contextmanager
def blackhole() -> Iterator[int]:
    """A loopback port whose TCP handshakes never complete: a listener with a backlog of one,
    filled by one connection and never accepted, so the kernel drops every later SYN (the
    client retransmits it, as it would towards a host that does not answer)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        with socket.create_connection(listener.getsockname(), timeout=5):  # the queue is full
            yield int(listener.getsockname()[1])


def answer_later(conn: socket.socket) -> None:
    """Read REQUEST, answer REPLY 0.2 s later (a server's own pace), then close: what a client
    that sends its request and says EOF must still receive."""
    got = b""
    while len(got) < len(REQUEST) and (chunk := conn.recv(len(REQUEST) - len(got))):
        got += chunk
    time.sleep(0.2)
    conn.sendall(REPLY if got == REQUEST else b"bad request " + got)
    conn.close()


def echo(conn: socket.socket) -> None:
    while data := conn.recv(65536):
        conn.sendall(data)
    conn.shutdown(socket.SHUT_WR)


def recv_all(sock: socket.socket) -> bytes:
    out = bytearray()
    while data := sock.recv(65536):
        out += data
    return bytes(out)
