"""The control socket: one JSON object per line over a unix stream socket, with the peer's
credentials checked and hard limits on size and time so that no client can stall the manager."""

from __future__ import annotations

import json
import os
import socket
import struct
import time
from pathlib import Path

from spacetail.errors import OperationFailed

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


MAX_MESSAGE = 64 * 1024
_PEERCRED = struct.Struct("3i")


class ControlUnavailable(Exception):
    """Nothing answers on the control socket (no file, refused, or silent)."""


def bind_listener(path: Path) -> socket.socket:
    """Bind PATH with mode 0600 from the first instant, then listen.

    The socket is bound under a temporary name with a umask that leaves only the owner's bits,
    then renamed over PATH, so there is no moment when it exists with looser permissions and a
    stale file from an earlier container is replaced atomically (as supervisord does).
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(os.fsencode(tmp))
    except OSError:
        sock.close()
        raise
    finally:
        os.umask(old)
    try:
        os.chmod(tmp, 0o600)
        sock.listen(64)
        os.rename(tmp, path)
    except OSError:
        sock.close()
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    sock.set_inheritable(False)
    return sock


def peer_uid(conn: socket.socket) -> int:
    raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    _pid, uid, _gid = _PEERCRED.unpack(raw)
    return int(uid)


def peer_allowed(conn: socket.socket) -> bool:
    """Our own uid only; root is let in because it can read the manager's memory anyway."""
    try:
        uid = peer_uid(conn)
    except OSError:
        return False
    return uid in (os.getuid(), 0)


def encode(message: dict[str, Any]) -> bytes:
    return (json.dumps(message, separators=(",", ":"), sort_keys=True) + "\n").encode()


def decode(line: bytes) -> dict[str, Any]:
    """Parse one request line; ValueError for anything that is not a JSON object with a cmd."""
    if len(line) > MAX_MESSAGE:
        raise ValueError("message too long")
    try:
        data = json.loads(line.decode("utf-8"))
    except RecursionError:  # "[[[[..." nested past the interpreter's limit: not a ValueError
        raise ValueError("nested too deeply") from None
    if not isinstance(data, dict) or not isinstance(data.get("cmd"), str):
        raise ValueError("expected a JSON object with a string 'cmd'")
    return data


class ControlClient:
    """A client of the manager's control socket."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def connect(self, timeout: float) -> socket.socket:
        deadline = time.monotonic() + timeout
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            try:
                sock.connect(os.fsencode(self.path))
                return sock
            except BlockingIOError as exc:
                # A full listen backlog: a unix socket says EAGAIN at once instead of waiting.
                sock.close()
                if time.monotonic() >= deadline:
                    raise ControlUnavailable(f"the manager is too busy ({exc})") from exc
                time.sleep(0.01)
            except OSError as exc:
                sock.close()
                raise ControlUnavailable(str(exc)) from exc

    def request(self, message: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
        """Send MESSAGE and return the first reply line."""
        deadline = time.monotonic() + timeout
        with self.connect(timeout) as sock:
            sock.sendall(encode(message))
            return read_reply(sock, deadline)

    def request_until_closed(
        self, message: dict[str, Any], timeout: float
    ) -> tuple[dict[str, Any], bool]:
        """Send MESSAGE, read the reply, then wait for the manager to close the connection (it does
        so by exiting). Returns the reply and whether the close came before TIMEOUT."""
        deadline = time.monotonic() + timeout
        with self.connect(min(timeout, 5.0)) as sock:
            sock.sendall(encode(message))
            reply = read_reply(sock, deadline)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return reply, False
                sock.settimeout(remaining)
                try:
                    if not sock.recv(4096):
                        return reply, True
                except TimeoutError:
                    return reply, False
                except OSError:
                    return reply, True


def read_reply(sock: socket.socket, deadline: float) -> dict[str, Any]:
    buf = b""
    while b"\n" not in buf:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ControlUnavailable("the manager did not answer in time")
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except TimeoutError as exc:
            raise ControlUnavailable("the manager did not answer in time") from exc
        except OSError as exc:
            raise ControlUnavailable(str(exc)) from exc
        if not chunk:
            raise ControlUnavailable("the manager closed the connection without answering")
        buf += chunk
        if len(buf) > MAX_MESSAGE:
            raise OperationFailed("the manager sent an oversized reply")
    line = buf.split(b"\n", 1)[0]
    try:
        data = json.loads(line)
    except ValueError as exc:
        raise ControlUnavailable(f"unreadable reply from the manager: {exc}") from exc
    if not isinstance(data, dict):
        raise ControlUnavailable("unreadable reply from the manager")
    return data
