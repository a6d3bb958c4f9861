"""The control socket's transport: private from the first instant, bounded, and parseable."""

from __future__ import annotations

import os
import socket
import stat
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spacetail.state import control


def test_listener_is_0600_and_replaces_a_stale_file(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    path.write_text("stale")  # left by an earlier container
    sock = control.bind_listener(path)
    try:
        mode = os.lstat(path).st_mode
        assert stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) == 0o600
        assert not list(tmp_path.glob(".control.sock.*"))
    finally:
        sock.close()


def test_listener_is_0600_from_the_moment_it_is_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under umask 0 (the caller's, whatever it is), the socket file is 0600 the instant bind()
    creates it: a chmod afterwards would leave a moment when another user could connect."""
    seen: list[tuple[str, int]] = []
    original = socket.socket.bind

    def bind_and_look(sock: socket.socket, address: object) -> None:
        original(sock, address)  # type: ignore[arg-type]
        name = os.fsdecode(address) if isinstance(address, (str, bytes)) else ""
        if name:
            seen.append((name, stat.S_IMODE(os.lstat(name).st_mode)))

    monkeypatch.setattr(socket.socket, "bind", bind_and_look)
    old_umask = os.umask(0)
    try:
        sock = control.bind_listener(tmp_path / "control.sock")
    finally:
        os.umask(old_umask)
    try:
        assert seen and all(mode == 0o600 for _name, mode in seen), seen
        assert stat.S_IMODE(os.lstat(tmp_path / "control.sock").st_mode) == 0o600
    finally:
        sock.close()


def test_request_reply_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "c.sock"
    listener = control.bind_listener(path)

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            assert control.peer_allowed(conn)
            line = conn.makefile("rb").readline()
            request = control.decode(line.strip())
            conn.sendall(control.encode({"ok": True, "echo": request["cmd"]}))

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        reply = control.ControlClient(path).request({"cmd": "status"}, timeout=5)
    finally:
        thread.join(5)
        listener.close()
    assert reply == {"ok": True, "echo": "status"}


def test_missing_socket_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(control.ControlUnavailable):
        control.ControlClient(tmp_path / "none.sock").request({"cmd": "status"}, timeout=1)


def test_silent_server_times_out(tmp_path: Path) -> None:
    path = tmp_path / "c.sock"
    listener = control.bind_listener(path)
    try:
        with pytest.raises(control.ControlUnavailable, match="did not answer"):
            control.ControlClient(path).request({"cmd": "status"}, timeout=0.3)
    finally:
        listener.close()


def test_peer_uid(tmp_path: Path) -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with a, b:
        assert control.peer_uid(a) == os.getuid()


@given(st.binary(max_size=2048))
@settings(max_examples=300, deadline=None)
def test_decode_never_crashes_on_garbage(data: bytes) -> None:
    try:
        result = control.decode(data)
    except (ValueError, UnicodeDecodeError):
        return
    assert isinstance(result, dict) and isinstance(result["cmd"], str)


def test_decode_rejects_oversized() -> None:
    with pytest.raises(ValueError, match="too long"):
        control.decode(b'{"cmd":"' + b"a" * control.MAX_MESSAGE + b'"}')
