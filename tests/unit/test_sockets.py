"""Who holds a loopback socket, read from /proc/net/tcp and /proc/net/tcp6 (state/sockets.py):
a listener and the process that holds it, and the uid at the other end of a connection."""

from __future__ import annotations

import os
import socket

import pytest

from spacetail.state import sockets


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_a_listener_is_held_by_this_process_and_by_no_other(host: str) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.create_server((host, 0), family=family) as server:
        port = server.getsockname()[1]
        assert sockets.listener_owned(host, port, [os.getpid()])
        assert not sockets.listener_owned(host, port, [os.getppid()])
        assert not sockets.listener_owned(host, port, [])
    assert not sockets.listener_owned(host, port, [os.getpid()])  # closed: nobody's


def test_localhost_is_read_as_its_address() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        assert sockets.listener_owned("localhost", server.getsockname()[1], [os.getpid()])


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_the_uid_at_the_other_end_of_an_accepted_connection(host: str) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.create_server((host, 0), family=family) as server:
        client = socket.create_connection(server.getsockname()[:2])
        conn, peer = server.accept()
        with client, conn:
            assert sockets.peer_uid(peer[:2], conn.getsockname()[:2]) == os.getuid()
            gone = (peer[0], 1)  # no such client
            assert sockets.peer_uid(gone, conn.getsockname()[:2]) is None


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_the_kernel_and_the_table_agree_on_another_users_connection(host: str) -> None:
    """sock_diag answers for the one socket; the table is the fallback: both name uid 1983 for
    a client of that uid, and neither knows a client that is not there."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.create_server((host, 0), family=family) as server:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                os.close(read)
                os.setgid(1983)
                os.setuid(1983)
                client = socket.create_connection(server.getsockname()[:2])
                os.write(write, b"x")
                os.read(client.fileno(), 1)  # until the parent closes its end
            finally:
                os._exit(0)
        os.close(write)
        conn, peer = server.accept()
        with conn:
            here = conn.getsockname()[:2]
            assert os.read(read, 1) == b"x"
            assert sockets._diag_uid(peer[:2], here) == 1983
            assert sockets._table_uid(peer[:2], here) == 1983
            assert sockets._diag_uid((peer[0], 1), here) is None
        os.close(read)
        os.waitpid(pid, 0)
