"""Waiting beyond Running under attack (issue 28 items 3 and 4): targets that never complete a
handshake (each held the others and the progress line for its 3 s), and a manager that dies
while `up` waits, its freed SOCKS5 port taken by another uid that answers every CONNECT."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator

from tests.faultkit import OTHER_UID, figure
from tests.helpers import SPACELIFT_UID, Userland, status
from tests.loopback import blackhole
from tests.waiting import poll


class Stamped:
    """A spacetail command as the Spacelift user, its stderr lines stamped as they come."""

    def __init__(self, userland: Userland, env: dict[str, str], *args: str) -> None:
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [str(userland.spacetail), *args], env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/",
            user=SPACELIFT_UID, group=SPACELIFT_UID, extra_groups=[],
        )  # fmt: skip
        self.lines: list[tuple[float, str]] = []
        self.stdout = ""
        self.readers = [threading.Thread(target=self._errors), threading.Thread(target=self._out)]
        for reader in self.readers:
            reader.start()

    def _errors(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append((time.monotonic() - self.started, line.rstrip("\n")))

    def _out(self) -> None:
        assert self.proc.stdout is not None
        self.stdout = self.proc.stdout.read()

    def finish(self, timeout: float) -> tuple[int, float]:
        """Its exit code and how long it ran."""
        try:
            code = self.proc.wait(timeout)
        finally:
            self.proc.kill()
            for reader in self.readers:
                reader.join(10)
        return code, time.monotonic() - self.started

    def stderr(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def said(self, words: str) -> list[tuple[float, str]]:
        return [(at, line) for at, line in self.lines if words in line]


def test_ten_silent_targets_still_get_a_line_every_5s(
    userland: Userland, fake_env: dict[str, str]
) -> None:
    """Issue 28 item 3: each target was dialled in turn for up to 3 s and the line every 5 s
    came only between rounds (4 silent targets: the first line at 12.7 s; 10: none before the
    error). Ten blackholed targets (their handshakes never complete) and --timeout 12: a line at
    5 s and 10 s naming all ten, the failure at 12 s naming them with their last words."""
    with contextlib.ExitStack() as holes:
        ports = [holes.enter_context(blackhole()) for _ in range(10)]
        targets = [arg for port in ports for arg in ("--wait-for", f"127.0.0.1:{port}")]
        up = Stamped(userland, fake_env, "up", "--no-watch", "--timeout", "12", *targets)
        code, took = up.finish(60)
    lines = up.said("waiting for targets")
    figure("ten_silent_targets_first_line", lines[0][0] if lines else -1)
    figure("ten_silent_targets_up_fails_after", took)
    assert code == 1, up.stderr()
    assert [at for at, _ in lines] and lines[0][0] < 5.0 + 1.0, up.stderr()
    assert len(lines) == 2 and lines[1][0] - lines[0][0] < 5.0 + 1.0, up.stderr()
    assert all(f"127.0.0.1:{port} (" in lines[0][1] for port in ports), lines[0][1]
    error = up.said("spacetail: error: no TCP connection")[0][1]
    assert all(f"127.0.0.1:{port}: " in error for port in ports), error
    assert "no answer yet" not in error  # each was asked, and said why
    assert 12.0 <= took < 12.0 + 3.0  # then what it started is stopped
    assert up.stdout == ""


# Another uid's SOCKS5 server: it binds PORT as soon as it is free and says yes to every CONNECT.
YES_TO_EVERY_CONNECT = """
import socket, sys, threading, time
for _ in range(2000):
    try:
        server = socket.create_server(("127.0.0.1", int(sys.argv[1])))
        break
    except OSError:
        time.sleep(0.005)
else:
    sys.exit("the port was never free")
print("bound", flush=True)

def serve(conn):
    with conn:
        conn.recv(3)
        conn.sendall(b"\\x05\\x00")
        conn.recv(262)
        conn.sendall(b"\\x05\\x00\\x00\\x01" + bytes(6))
        conn.recv(1)

while True:
    conn, _ = server.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""


@contextlib.contextmanager
def impostor(port: int) -> Iterator[subprocess.Popen[str]]:
    """The attacker (uid 1984) waiting to take PORT."""
    proc = subprocess.Popen(
        ["/usr/bin/python3", "-c", YES_TO_EVERY_CONNECT, str(port)], stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL, text=True, cwd="/", user=OTHER_UID, group=OTHER_UID,
        extra_groups=[],
    )  # fmt: skip
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(10)


def running(userland: Userland, env: dict[str, str]) -> dict[str, object] | None:
    now = status(userland, env)
    return now if now["connected"] else None


def socks_port(now: dict[str, object]) -> int:
    proxies = now["proxies"]
    assert isinstance(proxies, dict)
    return int(str(proxies["socks5"]).rsplit(":", 1)[1])


def test_a_manager_dying_while_up_waits_ends_up_at_once(
    userland: Userland, fake_env: dict[str, str]
) -> None:
    """Issue 28 item 4: the manager SIGKILLed while `up --wait-for` waits on a silent target,
    its freed SOCKS5 port bound by another uid that says yes to every CONNECT. `up` used to go
    on dialling and exit 0 through the impostor, printing connected, `manager pid N` and the
    exports, while `status` said not running. Now it fails at once with the manager's ending."""
    with blackhole() as dead:
        up = Stamped(userland, fake_env, "up", "--no-watch", "--env", "--timeout", "30",
                     "--wait-for", f"127.0.0.1:{dead}")  # fmt: skip
        try:
            now = poll(lambda: running(userland, fake_env), 20, "Running")
            with impostor(socks_port(now)) as attacker:
                killed = time.monotonic()
                os.kill(int(str(now["manager_pid"])), signal.SIGKILL)
                assert attacker.stdout is not None and attacker.stdout.readline() == "bound\n"
                code, _took = up.finish(40)
                after = time.monotonic() - killed
        finally:
            up.proc.kill()
    figure("up_fails_after_its_manager_is_killed", after)
    assert code == 1, up.stderr()
    assert not up.said("connected to the tailnet") and up.stdout == "false\n", up.stderr()
    error = up.said("spacetail: error:")[0][1]
    assert error == (
        f"spacetail: error: the manager (pid {now['manager_pid']}) is not running any more: "
        "it left no word of why (killed?); its log ends with:"
    ), up.stderr()
    assert after < 2.0  # a round's pause and a dial's end, not the 30 s deadline
    assert status(userland, fake_env)["running"] is False


def test_a_proxy_port_another_uid_took_is_never_dialled(
    userland: Userland, fake_env: dict[str, str]
) -> None:
    """Issue 28 item 4: tailscaled SIGKILLed while `up --wait-for` waits, and its SOCKS5 port
    taken by another uid before the manager restarts it. The manager runs, so only the port's
    owner tells: its listening socket is not held by tailscaled. `up` never dials through it,
    never says connected, and fails naming the port."""
    with blackhole() as dead:
        up = Stamped(userland, fake_env, "up", "--no-watch", "--env", "--timeout", "8",
                     "--wait-for", f"127.0.0.1:{dead}")  # fmt: skip
        try:
            now = poll(lambda: running(userland, fake_env), 20, "Running")
            with impostor(socks_port(now)) as attacker:
                os.kill(int(str(now["tailscaled_pid"])), signal.SIGKILL)
                assert attacker.stdout is not None and attacker.stdout.readline() == "bound\n"
                code, took = up.finish(40)
        finally:
            up.proc.kill()
    figure("up_with_an_impostor_proxy_fails_after", took)
    assert code == 1, up.stderr()
    assert not up.said("connected to the tailnet") and up.stdout == "false\n", up.stderr()
    assert up.said(f"proxy port 127.0.0.1:{socks_port(now)} is not held by the manager's "
                   "tailscaled") or up.said("is not running any more"), up.stderr()  # fmt: skip
