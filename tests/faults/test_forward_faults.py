"""The forwarders under pressure: out of file descriptors (a manager under `ulimit -n 1024` and
300 connections; a forwarder whose cap exceeds its limit), and targets that never complete the
TCP handshake (through a manager's forward and the fake tailscaled's proxy)."""

from __future__ import annotations

import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.faultkit import OTHER_UID, figure, logs, stopped_after, up_ok
from tests.helpers import SPACELIFT_UID, Userland, st, status
from tests.loopback import Target, blackhole, echo, free_port
from tests.waiting import poll

REPO = Path(__file__).resolve().parents[2]


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def ticks_over(pid: int, seconds: float) -> int:
    """The CPU PID used over a window of SECONDS (a measurement window, not a synchronization)."""
    before = cpu_ticks(pid)
    time.sleep(seconds)
    return cpu_ticks(pid) - before


def up_with_nofile(userland: Userland, env: dict[str, str], limit: int, *args: str) -> None:
    """`spacetail up ARGS` as the Spacelift user under `ulimit -n LIMIT` (soft and hard)."""
    result = subprocess.run(
        [str(userland.spacetail), "up", "--no-watch", *args], env=env, capture_output=True,
        text=True, timeout=60, check=False, cwd="/", stdin=subprocess.DEVNULL,
        user=SPACELIFT_UID, group=SPACELIFT_UID, extra_groups=[],
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit)),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + logs(userland, env)


def open_connections(port: int, n: int) -> list[socket.socket]:
    conns = []
    for _ in range(n):
        conns.append(socket.create_connection(("127.0.0.1", port), timeout=10))
    return conns


def test_ulimit_1024_and_300_connections_no_spin_bounded_log_status_answers(
    userland: Userland, fake_env: dict[str, str]
) -> None:
    target = Target(echo)
    local = free_port()
    conns: list[socket.socket] = []
    with stopped_after(userland, fake_env):
        up_with_nofile(userland, fake_env, 1024, "--forward", f"{local}=127.0.0.1:{target.port}")
        manager = int(status(userland, fake_env)["manager_pid"])
        try:
            conns = open_connections(local, 300)
            ticks = ticks_over(manager, 2.0)
            figure("manager CPU ticks over 2 s with 300 connections", ticks, " ticks")
            assert ticks < 40, f"the manager spins: {ticks} ticks in 2 s"
            forward = poll(lambda: status(userland, fake_env)["forwards"][0], 10, "status")
            cap = forward["max_open"]
            assert forward["fd_limit"] == 1024 and forward["fd_limit_raised_from"] is None
            assert 100 < cap < 256 and cap * 6 + 64 <= 1024
            poll(lambda: status(userland, fake_env)["forwards"][0]["refused"] == 300 - cap, 10,
                 lambda: f"{300 - cap} refused: {status(userland, fake_env)['forwards']}",
                 )  # fmt: skip
            for c in conns[:3]:  # the ones held still carry
                c.sendall(b"ok")
                assert c.recv(2) == b"ok"
            human = st(userland, fake_env, "status")
            assert human.returncode == 0
            assert f"{cap} open at most: the descriptor limit is 1024" in human.stdout
            log = logs(userland, fake_env)
            assert log.count("Too many open files") + log.count("file descriptors") < 20
        finally:
            for c in conns:
                c.close()
    target.close()


PAUSE_HOST = """
import resource, socket, sys
sys.path.insert(0, sys.argv[1])
from spacetail.forwards.fdbudget import Budget
from spacetail.forwards.spec import bind_listeners, parse_forwards
from spacetail.forwards.relay import Forwarder

class Direct:
    def dial(self, host, port):
        return socket.create_connection((host, port), timeout=5)

specs = parse_forwards("--forward", sys.argv[2], public=False)
listeners = bind_listeners(specs)
resource.setrlimit(resource.RLIMIT_NOFILE, (120, 120))
# A cap the limit cannot hold, so accept itself runs out of descriptors.
fwd = Forwarder(specs, listeners, Direct(), log=lambda line: print(line, file=sys.stderr,
                flush=True), budget=Budget(256, 120))
fwd.start()
print("ready", flush=True)
sys.stdin.read()
fwd.stop()
"""


def test_out_of_descriptors_the_forwarder_pauses_accepting_and_logs_once_a_pause(
    tmp_path: Path,
) -> None:
    target = Target(echo)
    local = free_port()
    log = tmp_path / "forwarder.log"
    with log.open("w") as err:
        host = subprocess.Popen(
            [sys.executable, "-c", PAUSE_HOST, str(REPO), f"{local}=127.0.0.1:{target.port}"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
        )  # fmt: skip
    conns: list[socket.socket] = []
    try:
        assert host.stdout is not None and host.stdout.readline() == "ready\n"
        conns = open_connections(local, 60)  # ~20 fit in 120 descriptors; the rest wait
        poll(lambda: "not accepting for" in log.read_text(), 10, "a pause")
        ticks = ticks_over(host.pid, 2.0)
        figure("forwarder CPU ticks over 2 s out of descriptors", ticks, " ticks")
        assert ticks < 40, f"the forwarder spins: {ticks} ticks in 2 s"
        lines = log.read_text().splitlines()
        pauses = [line for line in lines if "Too many open files; not accepting for 0.5 s" in line]
        assert 1 <= len(pauses) <= 12, lines[:5]  # one a pause of 0.5 s, over ~2.5 s
        # The rest: a connection accepted with the last descriptor, whose dial then found none.
        assert all(line.endswith("Too many open files") for line in set(lines) - set(pauses))
        assert len(lines) <= 2 * len(pauses) + 2
        conns[0].sendall(b"ok")  # the ones it holds still carry
        assert conns[0].recv(2) == b"ok"
    finally:
        for c in conns:
            c.close()
        assert host.stdin is not None
        host.stdin.close()
        host.wait(10)
    target.close()


def test_a_blackholed_target_does_not_delay_another_forward_of_the_manager(
    userland: Userland, fake_env: dict[str, str]
) -> None:
    """Eight connections (the old shared dial pool) and more to a target that never completes
    the handshake, through a manager's forward and the fake's proxy: a second forward answers
    at once."""
    target = Target(echo)
    slow, fast = free_port(), free_port()
    conns: list[socket.socket] = []
    with blackhole() as dead, stopped_after(userland, fake_env):
        up_ok(userland, fake_env, "--forward", f"{slow}=127.0.0.1:{dead}",
              "--forward", f"{fast}=127.0.0.1:{target.port}")  # fmt: skip
        try:
            conns = open_connections(slow, 12)
            poll(lambda: status(userland, fake_env)["forwards"][0]["total"] == 12, 10, "dials")
            started = time.monotonic()
            with socket.create_connection(("127.0.0.1", fast), timeout=10) as c:
                c.sendall(b"hi")
                assert c.recv(2) == b"hi"
            delay = time.monotonic() - started
            figure("healthy forward's round trip beside 12 blackholed dials", delay)
            assert delay < 1.0  # the old shared pool: 9.71 s
        finally:
            for c in conns:
                c.close()
    target.close()


# Another uid's client: it connects, says hello, and prints what came back before EOF.
KNOCK = """
import socket, sys
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10) as c:
    try:
        c.sendall(b"hi")
        print(repr(c.recv(2)))
    except ConnectionResetError:
        print("reset")
"""


def test_a_forward_takes_only_its_own_users_connections(
    userland: Userland, fake_env: dict[str, str]
) -> None:
    """Issue 28 item 8: another local uid reached the tailnet through this node's forwards. Now
    a forward reads the client's uid from /proc/net/tcp at each accept: uid 1984's connection is
    closed at once and counted in `status`; the owner's (and root's) are carried. 100 of root's
    connections, one after another, measure what the lookup costs."""
    target = Target(echo)
    local = free_port()
    with stopped_after(userland, fake_env):
        up_ok(userland, fake_env, "--forward", f"{local}=127.0.0.1:{target.port}")
        knock = subprocess.run(
            ["/usr/bin/python3", "-c", KNOCK, str(local)], capture_output=True, text=True,
            timeout=20, check=False, cwd="/", user=OTHER_UID, group=OTHER_UID, extra_groups=[],
        )  # fmt: skip
        assert knock.returncode == 0, knock.stderr
        assert knock.stdout.strip() in ("b''", "reset"), knock.stdout  # nothing carried
        forward = status(userland, fake_env)["forwards"][0]
        assert forward["refused_other_uid"] == 1 and forward["total"] == 0, forward
        started = time.monotonic()
        for _ in range(100):  # root here: let in, as the owner is
            with socket.create_connection(("127.0.0.1", local), timeout=10) as c:
                c.sendall(b"hi")
                assert c.recv(2) == b"hi"
        took = time.monotonic() - started
        rows = len(Path("/proc/net/tcp").read_text().splitlines())
        figure(f"100_round_trips_through_a_forward_with_{rows}_tcp_rows", took)
        forward = status(userland, fake_env)["forwards"][0]
        assert forward["total"] == 100 and forward["refused_other_uid"] == 1, forward
    target.close()
