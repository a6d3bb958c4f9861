"""Processes for the forwarder rows of the benchmark, one role each (run as a script):

    forward_host.py forward SPECS SOCKS_PORT   a Forwarder for SPACETAIL_FORWARDS-style SPECS
    forward_host.py source BYTES               sends BYTES to each client, then closes
    forward_host.py echo                       echoes every connection

Each prints its port (or "ready") on stdout once listening and runs until stdin closes."""

from __future__ import annotations

import socket
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from spacetail.forwards.relay import Forwarder  # noqa: E402
from spacetail.forwards.spec import bind_listeners, parse_forwards  # noqa: E402
from spacetail.tailnet.socks5 import Dialer  # noqa: E402

BLOCK = 1 << 20


def _source(conn: socket.socket, total: int) -> None:
    block = b"\0" * BLOCK
    with conn:
        while total > 0:
            n = min(total, BLOCK)
            conn.sendall(block[:n])
            total -= n


def _echo(conn: socket.socket) -> None:
    with conn:
        while data := conn.recv(65536):
            conn.sendall(data)


def serve(handler: str, total: int) -> None:
    server = socket.create_server(("127.0.0.1", 0), backlog=512)
    print(server.getsockname()[1], flush=True)

    def loop() -> None:
        while True:
            conn, _ = server.accept()
            args = (conn, total) if handler == "source" else (conn,)
            target = _source if handler == "source" else _echo
            threading.Thread(target=target, args=args, daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()
    sys.stdin.read()


def forward(spec_text: str, socks_port: str) -> None:
    specs = parse_forwards("SPACETAIL_FORWARDS", spec_text, public=False)
    fwd = Forwarder(specs, bind_listeners(specs), Dialer(("127.0.0.1", int(socks_port))),
                    log=lambda line: print(line, file=sys.stderr))  # fmt: skip
    fwd.start()
    print("ready", flush=True)
    sys.stdin.read()
    fwd.stop()


if __name__ == "__main__":
    role, *rest = sys.argv[1:]
    if role == "forward":
        forward(*rest)
    else:
        serve(role, int(rest[0]) if rest else 0)
