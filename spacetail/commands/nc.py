"""`spacetail nc HOST PORT` (stdin/stdout to HOST:PORT through tailscale, for ssh's ProxyCommand
and Ansible) and what `spacetail resolve NAME` needs from the running manager.

The end of standard input is kept to ourselves by default: tailscaled's proxies (1.96.4) close
both directions when their client half-closes, so passing it on would lose every reply sent
after it (`echo PING | spacetail nc redis 6379`). nc keeps reading until the remote side
closes, as OpenBSD nc does; `-N` passes the EOF on for protocols whose server waits for it,
at the cost of the reply."""

from __future__ import annotations

import os
import socket
import sys
import threading
from collections.abc import Callable

from spacetail.tailnet.socks5 import Dialer

CHUNK = 64 * 1024


# --- stdin/stdout relay -------------------------------------------------------------------------


def _up(sock: socket.socket, stdin_fd: int, send_eof: bool) -> None:
    """stdin -> socket; with SEND_EOF, EOF on stdin becomes shutdown(SHUT_WR) (half-close),
    else the connection stays as it is and the reply keeps coming."""
    try:
        while data := os.read(stdin_fd, CHUNK):
            sock.sendall(data)
        if send_eof:
            sock.shutdown(socket.SHUT_WR)
    except OSError:
        _shutdown(sock, socket.SHUT_RDWR)


def _down(sock: socket.socket, stdout_fd: int, errors: list[str]) -> None:
    """socket -> stdout; EOF from the socket closes stdout, so the reader sees EOF too."""
    try:
        while data := sock.recv(CHUNK):
            view = memoryview(data)
            while view:
                view = view[os.write(stdout_fd, view) :]
    except OSError as exc:
        errors.append(f"the connection failed: {exc.strerror or exc}")
        _shutdown(sock, socket.SHUT_RDWR)
    finally:
        os.close(stdout_fd)


def _shutdown(sock: socket.socket, how: int) -> None:
    try:
        sock.shutdown(how)
    except OSError:
        pass


def relay_stdio(
    sock: socket.socket,
    stdin_fd: int = 0,
    stdout_fd: int = 1,
    *,
    send_eof: bool = False,
    err: Callable[[str], None] | None = None,
) -> int:
    """Carry STDIN_FD to SOCK and SOCK to STDOUT_FD; EOF on SOCK closes STDOUT_FD, EOF on stdin
    becomes shutdown(SHUT_WR) on SOCK only with SEND_EOF. Returns once SOCK's side has ended:
    0, or 1 (one line to ERR) when the connection failed. tailscaled's proxies end both
    directions at the first EOF, so nothing more could be sent then; a stdin read still
    pending is left to the daemon thread, which ends with the process. SOCK is closed."""
    errors: list[str] = []
    sock.settimeout(None)
    down = threading.Thread(target=_down, args=(sock, stdout_fd, errors), daemon=True)
    up = threading.Thread(target=_up, args=(sock, stdin_fd, send_eof), daemon=True)
    down.start()
    up.start()
    down.join()
    sock.close()  # a later stdin chunk meets a closed socket object (EBADF), not a reused fd
    if errors:
        (err or _stderr)(errors[0])
        return 1
    return 0


def _stderr(line: str) -> None:
    print(f"spacetail: error: {line}", file=sys.stderr, flush=True)


def nc(
    dialer: Dialer,
    host: str,
    port: int,
    *,
    send_eof: bool = False,
    err: Callable[[str], None] | None = None,
) -> int:
    """Dial HOST:PORT and relay stdin/stdout (relay_stdio's exit status). A failed dial raises
    DialError (an OperationFailed: one line with tailscale's reason, exit 1)."""
    return relay_stdio(dialer.dial(host, port), send_eof=send_eof, err=err)
