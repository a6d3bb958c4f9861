"""The control socket: one JSON object per line over a unix stream socket, with the peer's
credentials checked and hard limits on size and time so that no client can stall the manager.
The server side (`ControlServer`, in the manager) and the client side (`ControlClient`, in every
command) live here together, so the protocol is written down once."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import selectors
import socket
import struct
import time
from pathlib import Path

from spacetail.errors import OperationFailed

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


MAX_MESSAGE = 64 * 1024
CLIENT_TIMEOUT = 5.0  # a client that sends no full request line within this is dropped
ACCEPT_PAUSE = 0.5  # out of descriptors: stop accepting this long instead of spinning
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
                self._check_server(sock)
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

    def _check_server(self, sock: socket.socket) -> None:
        """A manager runs as this uid (or root): a socket another user serves where ours should
        be (planted between a folder's check and this connect) is never listened to. Root, who
        may look at any user's manager, trusts every server, as every server lets root in."""
        uid = peer_uid(sock)
        me = os.getuid()
        if uid not in (me, 0) and me != 0:
            sock.close()
            raise OperationFailed(
                f"{self.path} is served by uid {uid}, not by you (uid {me}): another user put "
                "it there, and nothing it says is used; set XDG_RUNTIME_DIR and SPACETAIL_DIR to "
                "folders of your own"
            )

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
    except RecursionError:  # "[[[[..." nested past the interpreter's limit: not a ValueError
        raise ControlUnavailable("unreadable reply from the manager: nested too deeply") from None
    if not isinstance(data, dict):
        raise ControlUnavailable("unreadable reply from the manager")
    return data


# --- the server ---------------------------------------------------------------------------


class Request:
    """One client's request. The handler answers now (`reply`), later (keep the request and
    reply when ready), or keeps the connection open until the manager exits (`reply(...,
    close=False)` and keep the request: its close is then the client's "all gone" signal)."""

    def __init__(self, conn: socket.socket, message: dict[str, Any]) -> None:
        self.conn = conn
        self.message = message

    @property
    def cmd(self) -> str:
        return str(self.message["cmd"])

    def reply(self, message: dict[str, Any], close: bool = True) -> None:
        with contextlib.suppress(OSError):
            self.conn.setblocking(False)
            self.conn.send(encode(message))
        if close:
            self.conn.close()

    def close(self) -> None:
        self.conn.close()


class _Client:
    __slots__ = ("allowed", "buf", "conn", "deadline")

    def __init__(self, conn: socket.socket, deadline: float, allowed: bool) -> None:
        self.conn = conn
        self.deadline = deadline
        self.buf = b""
        self.allowed = allowed


class ControlServer:
    """Accepts clients on the manager's selector, reads one request line from each (within size
    and time limits), refuses other users, and hands the request to the handler registered for
    its command. The manager never touches socket bytes."""

    def __init__(
        self,
        listener: socket.socket,
        sel: selectors.BaseSelector,
        *,
        clock: Callable[[], float],
        log: Callable[[str], None],
    ) -> None:
        self.listener = listener
        self.sel = sel
        self.clock = clock
        self.log = log
        self.handlers: dict[str, Callable[[Request], None]] = {}
        self._clients: dict[int, _Client] = {}
        self._paused_until: float | None = None
        listener.setblocking(False)
        sel.register(listener, selectors.EVENT_READ, self._accept)

    def on(self, cmd: str, handler: Callable[[Request], None]) -> None:
        self.handlers[cmd] = handler

    def next_deadline(self) -> float | None:
        deadlines = [c.deadline for c in self._clients.values()]
        if self._paused_until is not None:
            deadlines.append(self._paused_until)
        return min(deadlines, default=None)

    def expire(self, now: float) -> None:
        for client in [c for c in self._clients.values() if now >= c.deadline]:
            self._drop(client)
        if self._paused_until is not None and now >= self._paused_until:
            self._paused_until = None
            self.sel.register(self.listener, selectors.EVENT_READ, self._accept)

    def stop_listening(self) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(self.listener)
        self._paused_until = None

    def close(self) -> None:
        self.stop_listening()
        for client in list(self._clients.values()):
            self._drop(client)
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE):
                    # The backlog keeps the client waiting; accepting again at once would spin.
                    self.log(f"out of file descriptors: not accepting for {ACCEPT_PAUSE}s")
                    self.stop_listening()
                    self._paused_until = self.clock() + ACCEPT_PAUSE
                return
            conn.setblocking(False)
            # Another user's client is read like any other, then refused: answering before its
            # request arrived would reset the connection and lose the refusal.
            client = _Client(conn, self.clock() + CLIENT_TIMEOUT, peer_allowed(conn))
            self._clients[conn.fileno()] = client
            self.sel.register(conn, selectors.EVENT_READ, lambda c=client: self._read(c))

    def _drop(self, client: _Client, close: bool = True) -> None:
        self._clients.pop(client.conn.fileno(), None)
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(client.conn)
        if close:
            client.conn.close()

    def _read(self, client: _Client) -> None:
        try:
            chunk = client.conn.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._drop(client)
            return
        client.buf += chunk
        if b"\n" not in client.buf:
            if len(client.buf) > MAX_MESSAGE:
                self._drop(client, close=False)
                Request(client.conn, {}).reply({"ok": False, "error": "message too long"})
            return
        line = client.buf.split(b"\n", 1)[0]
        self._drop(client, close=False)
        self._dispatch(client, line)

    def _dispatch(self, client: _Client, line: bytes) -> None:
        if not client.allowed:
            Request(client.conn, {}).reply({"ok": False, "error": "permission denied"})
            self.log("refused a control client of another user")
            return
        try:
            request = Request(client.conn, decode(line))
        except (ValueError, UnicodeDecodeError) as exc:
            Request(client.conn, {}).reply({"ok": False, "error": f"bad request: {exc}"})
            return
        handler = self.handlers.get(request.cmd)
        if handler is None:
            request.reply({"ok": False, "error": f"unknown command {request.cmd!r}"})
            return
        handler(request)
