"""The forwarders' data plane on its own: a Forwarder whose dialer connects directly (the
tailscaled-backed runs are in tests/integration/test_forward_real.py)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from spacetail.forwards.relay import CHUNK, MAX_OPEN, Forwarder, Timing
from spacetail.forwards.spec import bind_listeners, parse_forwards
from spacetail.tailnet.socks5 import DialError
from tests.loopback import Target, blackhole, echo, free_port, recv_all
from tests.waiting import poll

# The echo targets wait for their client's EOF, which the forwarder keeps for EOF_GRACE: short.
QUICK = Timing(eof_grace=0.3)


class DirectDialer:
    """Connects straight to the target; HOLD names targets whose dial waits for RELEASE."""

    def __init__(self) -> None:
        self.hold: set[str] = set()
        self.release = threading.Event()

    def dial(self, host: str, port: int) -> socket.socket:
        if host in self.hold:
            self.release.wait(30)
            host = "127.0.0.1"
        try:
            return socket.create_connection((host, port), timeout=5)
        except OSError as exc:
            raise DialError(f"cannot reach {host}:{port}: {exc.strerror}") from exc


SPLICE = [True]


@pytest.fixture(autouse=True, params=["splice", "userspace"])
def relay_mode(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test runs with both ways of moving bytes: splice(2) and user-space chunks."""
    SPLICE[0] = request.param == "splice"
    yield
    SPLICE[0] = True


@contextmanager
def forwarding(
    spec_text: str, dialer: DirectDialer | None = None, timing: Timing = QUICK
) -> Iterator[tuple[Forwarder, list[int]]]:
    specs = parse_forwards("--forward", spec_text, public=False)
    logged: list[str] = []
    fwd = Forwarder(specs, bind_listeners(specs), dialer or DirectDialer(), log=logged.append,
                    splice=SPLICE[0], timing=timing)  # fmt: skip
    fwd.start()
    try:
        yield fwd, [s.listen_port for s in specs]
    finally:
        fwd.stop()


def test_round_trip_and_counters() -> None:
    target = Target(echo)
    with forwarding(f"{free_port()}=127.0.0.1:{target.port}") as (fwd, [port]):
        payload = bytes(range(256)) * 4096  # 1 MiB
        with socket.create_connection(("127.0.0.1", port)) as c:

            def send() -> None:
                c.sendall(payload)
                c.shutdown(socket.SHUT_WR)

            sender = threading.Thread(target=send)
            sender.start()
            assert recv_all(c) == payload
            sender.join()
        poll(lambda: fwd.snapshot()[0].open == 0, 20, "the connection to be closed")
        [snap] = fwd.snapshot()
        assert snap.to_json() == {
            "listen": f"127.0.0.1:{port}", "target": f"127.0.0.1:{target.port}",
            "open": 0, "total": 1, "refused": 0, "refused_other_uid": 0, "bytes_sent": len(payload),
            "bytes_received": len(payload), "buffered": 0, "last_error": None,
            "accept_paused": False, "accept_pauses": 0, "max_open": MAX_OPEN,
            "fd_limit": fwd.budget.fd_limit, "fd_limit_raised_from": None,
        }  # fmt: skip
    target.close()


def test_half_close_from_the_client_is_kept_and_the_reply_flows() -> None:
    """The client sends its request and says EOF; the target answers 0.2 s later, then
    closes. The client's EOF is not passed on (tailscaled's proxies would end the reply with
    it), the reply arrives, and the target's close ends the connection."""
    eof_seen: list[bool] = []

    def answer_later(conn: socket.socket) -> None:
        got = b""
        while len(got) < 100_000:
            got += conn.recv(65536)
        time.sleep(0.2)  # the server's own pace, not a synchronization
        try:
            eof_seen.append(conn.recv(1, socket.MSG_DONTWAIT) == b"")
        except BlockingIOError:
            eof_seen.append(False)
        conn.sendall(b"read %d bytes" % len(got))
        conn.close()

    target = Target(answer_later)
    spec = f"{free_port()}=127.0.0.1:{target.port}"
    with forwarding(spec, timing=Timing(eof_grace=10)) as (fwd, [port]):
        c = socket.create_connection(("127.0.0.1", port))
        c.sendall(b"x" * 100_000)
        c.shutdown(socket.SHUT_WR)
        c.settimeout(10)
        assert recv_all(c) == b"read 100000 bytes"
        c.close()
        assert eof_seen == [False]
        poll(lambda: fwd.snapshot()[0].open == 0, 20, "the connection to be closed")
    target.close()


def test_half_close_from_the_target() -> None:
    """The target says EOF first; the client still sends, and the target reads it."""
    received: list[bytes] = []

    def greet_then_read(conn: socket.socket) -> None:
        conn.sendall(b"hello")
        conn.shutdown(socket.SHUT_WR)
        received.append(recv_all(conn))
        conn.close()

    target = Target(greet_then_read)
    with forwarding(f"{free_port()}=127.0.0.1:{target.port}") as (fwd, [port]):
        with socket.create_connection(("127.0.0.1", port)) as c:
            assert recv_all(c) == b"hello"  # EOF reached the client...
            c.sendall(b"still talking")  # ...and its direction is still open
            c.shutdown(socket.SHUT_WR)
            poll(lambda: bool(received), 20, "the target to read to EOF")
            assert received == [b"still talking"]
            assert c.recv(10) == b""
        poll(lambda: fwd.snapshot()[0].open == 0, 20, "the connection to be closed")
    target.close()


def test_the_257th_connection_is_closed_at_once_and_counted() -> None:
    target = Target(echo)
    clients: list[socket.socket] = []
    with forwarding(f"{free_port()}=127.0.0.1:{target.port}") as (fwd, [port]):
        try:
            for _ in range(MAX_OPEN):
                clients.append(socket.create_connection(("127.0.0.1", port)))
            poll(lambda: fwd.snapshot()[0].open == MAX_OPEN, 20, "256 open connections")
            with socket.create_connection(("127.0.0.1", port)) as extra:
                extra.settimeout(10)
                assert extra.recv(1) == b""  # closed by us, not left hanging
            poll(lambda: fwd.snapshot()[0].refused == 1, 20, "the refusal to be counted")
            # The 256 keep working, and closing one makes room for a new one.
            clients[0].sendall(b"ping")
            assert clients[0].recv(4) == b"ping"
            clients.pop().close()
            poll(lambda: fwd.snapshot()[0].open == MAX_OPEN - 1, 20, "one to close")
            with socket.create_connection(("127.0.0.1", port)) as again:
                again.sendall(b"pong")
                assert again.recv(4) == b"pong"
            snap = fwd.snapshot()[0]
            assert snap.total == MAX_OPEN + 1 and snap.refused == 1
        finally:
            for c in clients:
                c.close()
    target.close()


@pytest.mark.parametrize("block", [65536, 100], ids=["large-writes", "small-writes"])
def test_a_client_that_never_reads_holds_at_most_one_chunk(block: int) -> None:
    """The target pushes 256 MiB at a client that reads nothing: the target stalls once the
    kernel's buffers and our one chunk are full; nothing piles up in the forwarder. Small
    writes fill a pipe by its slots long before its bytes: that must not make it spin."""
    pushed: list[int] = []

    def firehose(conn: socket.socket) -> None:
        conn.settimeout(2)  # a send that makes no progress for 2 s ends the push
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        data, sent = b"z" * block, 0
        try:
            while sent < 256 << 20:
                sent += conn.send(data)
        except TimeoutError:
            pass
        pushed.append(sent)
        conn.shutdown(socket.SHUT_WR)

    target = Target(firehose)
    with forwarding(f"{free_port()}=127.0.0.1:{target.port}") as (fwd, [port]):
        rss_before = rss_kib()
        with socket.create_connection(("127.0.0.1", port)) as c:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            poll(lambda: bool(pushed), 60, "the target to stall")
            buffered = fwd.snapshot()[0].buffered
            assert (
                isinstance(buffered, int) and 0 < buffered <= CHUNK
            )  # one chunk waits; nothing else is ours
            assert pushed[0] < 128 << 20, "backpressure did not stop the target"
            # Stalled, a relay that polls a full pipe or buffer wakes up thousands of times a
            # second; one that waits for the client wakes up for nothing. Half a second of the
            # stall, measured (a window, not a synchronization):
            stalled_at = fwd._loop.rounds
            window = time.monotonic() + 0.5
            while time.monotonic() < window:
                time.sleep(0.05)
            assert fwd._loop.rounds - stalled_at < 20, "the relay spins on a full buffer"
            # And while the data flowed: a few rounds per chunk, not a spin (a loaded machine
            # splits small writes more finely, hence the room).
            assert fwd._loop.rounds < 32 * (pushed[0] // 4096 + 100)
            assert rss_kib() - rss_before < 16 << 10
            c.shutdown(socket.SHUT_WR)
            c.settimeout(30)
            assert len(recv_all(c)) == pushed[0]  # and nothing was lost
        poll(lambda: fwd.snapshot()[0].open == 0, 20, "the connection to close")
        assert fwd.snapshot()[0].buffered == 0
    target.close()


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_an_unreachable_target_closes_the_client_and_the_forward_keeps_serving() -> None:
    good = Target(echo)
    dead = free_port()
    text = f"{free_port()}=127.0.0.1:{dead} {free_port()}=127.0.0.1:{good.port}"
    with forwarding(text) as (fwd, [bad_port, good_port]):
        with socket.create_connection(("127.0.0.1", bad_port)) as c:
            c.settimeout(10)
            assert c.recv(1) == b""
        poll(lambda: fwd.snapshot()[0].last_error is not None, 20, "last_error")
        bad = fwd.snapshot()[0]
        assert "Connection refused" in str(bad.last_error)
        assert bad.open == 0 and bad.total == 1
        with socket.create_connection(("127.0.0.1", good_port)) as c:  # the other one works
            c.sendall(b"hi")
            c.shutdown(socket.SHUT_WR)
            c.settimeout(10)
            assert recv_all(c) == b"hi"
        with socket.create_connection(("127.0.0.1", bad_port)) as c:  # and this one still accepts
            c.settimeout(10)
            assert c.recv(1) == b""
        poll(lambda: fwd.snapshot()[0].total == 2, 20, "the second attempt to count")
    good.close()


def test_a_slow_dial_does_not_hold_up_other_connections() -> None:
    target = Target(echo)
    dialer = DirectDialer()
    dialer.hold.add("slow.example")
    text = f"{free_port()}=slow.example:{target.port} {free_port()}=127.0.0.1:{target.port}"
    with forwarding(text, dialer) as (fwd, [slow_port, fast_port]):
        with socket.create_connection(("127.0.0.1", slow_port)) as slow:
            slow.sendall(b"first")
            with socket.create_connection(("127.0.0.1", fast_port)) as fast:
                fast.sendall(b"second")
                fast.settimeout(10)
                assert fast.recv(6) == b"second"
            dialer.release.set()
            slow.settimeout(10)
            assert slow.recv(5) == b"first"
        assert fwd.snapshot()[0].total == 1
    target.close()


def test_stop_closes_listeners_and_connections_promptly() -> None:
    target = Target(echo)
    with forwarding(f"{free_port()}=127.0.0.1:{target.port}") as (fwd, [port]):
        c = socket.create_connection(("127.0.0.1", port))
        c.sendall(b"x")
        assert c.recv(1) == b"x"
        started = time.monotonic()
        fwd.stop()
        assert time.monotonic() - started < 2
        c.settimeout(10)
        assert c.recv(1) == b""
        c.close()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5)
        fwd.stop()  # twice is harmless
    target.close()


def test_blackholed_dials_do_not_delay_another_forward_and_end_in_time() -> None:
    """Twelve connections to a target that never completes the TCP handshake (more than any
    pool of dial workers), then one to a healthy forward: answered at once; the twelve end
    after the dial timeout, each closed, with the reason in last_error."""
    target = Target(echo)
    with blackhole() as dead:
        text = f"{free_port()}=127.0.0.1:{dead} {free_port()}=127.0.0.1:{target.port}"
        timing = Timing(dial_timeout=1.5, eof_grace=0.3)
        with forwarding(text, timing=timing) as (fwd, [bad_port, good_port]):
            stuck = [socket.create_connection(("127.0.0.1", bad_port)) for _ in range(12)]
            poll(lambda: fwd.snapshot()[0].total == 12, 20, "12 dials under way")
            started = time.monotonic()
            with socket.create_connection(("127.0.0.1", good_port)) as c:
                c.sendall(b"hi")
                c.settimeout(10)
                assert c.recv(2) == b"hi"
            assert time.monotonic() - started < 0.5  # against 1.5 s, the blackholed dials' time
            assert fwd.snapshot()[0].last_error is None  # not one of them has ended yet
            for s in stuck:
                s.settimeout(10)
                assert s.recv(1) == b""  # closed by the forwarder, not left hanging
                s.close()
            # (the count drops just after the client is closed: wait for it, not race it)
            poll(lambda: fwd.snapshot()[0].open == 0, 20, "the twelve to be counted closed")
            bad = fwd.snapshot()[0]
            assert f"127.0.0.1:{dead}: no connection within 1.5 s" in str(bad.last_error)
    target.close()


def test_a_client_gone_for_good_reaches_the_target_after_the_grace() -> None:
    """A client that sends and closes looks like one that half-closed: its EOF is kept while
    the target may answer, then passed on, so a target that waits for it still ends."""
    seen: list[bytes] = []

    def read_to_eof(conn: socket.socket) -> None:
        seen.append(recv_all(conn))
        conn.close()

    target = Target(read_to_eof)
    with forwarding(f"{free_port()}=127.0.0.1:{target.port}") as (fwd, [port]):
        with socket.create_connection(("127.0.0.1", port)) as c:
            c.sendall(b"bye")
        poll(lambda: seen == [b"bye"], 20, "the target to see EOF")
        poll(lambda: fwd.snapshot()[0].open == 0, 20, "the connection to close")
    target.close()


def test_a_full_forward_gives_the_oldest_held_eof_way_to_a_new_client() -> None:
    """Connections that only hold their client's EOF do not lock a full forward."""
    target = Target(echo)
    clients: list[socket.socket] = []
    spec = f"{free_port()}=127.0.0.1:{target.port}"
    with forwarding(spec, timing=Timing(eof_grace=60)) as (fwd, [port]):
        try:
            for _ in range(MAX_OPEN):
                c = socket.create_connection(("127.0.0.1", port))
                c.sendall(b"x")
                assert c.recv(1) == b"x"
                clients.append(c)
            clients[0].shutdown(socket.SHUT_WR)  # the one that only holds an EOF now
            clients[1].shutdown(socket.SHUT_WR)
            poll(lambda: len(fwd._loop.holding) == 2, 20, "two held EOFs")
            with socket.create_connection(("127.0.0.1", port)) as new:
                new.sendall(b"y")
                new.settimeout(10)
                assert new.recv(1) == b"y"
            clients[0].settimeout(10)
            assert clients[0].recv(1) == b""  # the oldest held one gave way
            snap = fwd.snapshot()[0]
            assert snap.refused == 0 and snap.total == MAX_OPEN + 1
        finally:
            for c in clients:
                c.close()
    target.close()
