"""nc's stdin/stdout relay on a socketpair and pipes (the end-to-end runs with ssh and Ansible
through the real tailscaled are in tests/integration/test_forward_real.py)."""

from __future__ import annotations

import os
import socket
import struct
import threading

import pytest

from spacetail.commands.nc import relay_stdio
from spacetail.tailnet.dns import candidates


def read_to_eof(fd: int) -> bytes:
    out = b""
    while chunk := os.read(fd, 65536):
        out += chunk
    return out


@pytest.mark.parametrize("send_eof", [False, True], ids=["default", "-N"])
def test_the_end_of_stdin_is_passed_on_only_with_send_eof(send_eof: bool) -> None:
    ours, peer = socket.socketpair()
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    lines: list[str] = []
    result: list[int] = []
    runner = threading.Thread(target=lambda: result.append(
        relay_stdio(ours, in_r, out_w, send_eof=send_eof, err=lines.append)))  # fmt: skip
    runner.start()
    os.write(in_w, b"x" * 200_000)
    os.close(in_w)  # stdin's EOF ...
    got = b""
    while len(got) < 200_000:
        got += peer.recv(65536)
    assert got == b"x" * 200_000
    if send_eof:
        assert peer.recv(1) == b""  # ... reaches the peer as EOF with -N
    else:  # ... and without, the connection stays open: no EOF however long one waits
        peer.settimeout(0.2)
        with pytest.raises(TimeoutError):
            peer.recv(1)
    peer.sendall(b"answer after EOF")  # the other direction still carries
    peer.close()
    assert read_to_eof(out_r) == b"answer after EOF"  # and stdout is closed at the end
    runner.join(10)
    assert result == [0] and lines == []
    os.close(in_r)
    os.close(out_r)


def test_a_reset_connection_is_one_line_and_exit_1() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:  # TCP: a unix socket cannot reset
        ours = socket.create_connection(server.getsockname())
        peer, _ = server.accept()
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    peer.sendall(b"partial")
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.close()  # RST
    lines: list[str] = []
    assert relay_stdio(ours, in_r, out_w, err=lines.append) == 1
    assert len(lines) == 1 and lines[0].startswith("the connection failed: ")
    assert read_to_eof(out_r) in (b"", b"partial")
    for fd in (in_r, in_w, out_r):
        os.close(fd)


def test_short_names_also_try_the_magicdns_suffix() -> None:
    assert candidates("db", "tail-abc.ts.net") == ["db", "db.tail-abc.ts.net"]
    assert candidates("db.", ".tail-abc.ts.net.") == ["db", "db.tail-abc.ts.net"]
    assert candidates("db.internal", "tail-abc.ts.net") == ["db.internal"]
    assert candidates("db", None) == ["db"]
