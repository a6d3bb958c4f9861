"""Forwarders and `nc` through the REAL tailscaled 1.96.4's SOCKS5 proxy (it dials loopback,
non-tailnet addresses directly even before login) to real PostgreSQL, MariaDB and OpenSSH
servers, with the real psql, mariadb, ssh and ansible clients."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from spacetail.forwards.relay import Forwarder, Timing
from spacetail.forwards.spec import ForwardSpec, bind_listeners, parse_forwards
from spacetail.tailnet.socks5 import GENERAL_FAILURE, Dialer, DialError
from tests import helpers, realservers
from tests.helpers import MARKER, SPACELIFT_UID, Userland
from tests.loopback import (
    REPLY,
    REQUEST,
    Target,
    answer_later,
    blackhole,
    echo,
    free_port,
    recv_all,
)
from tests.waiting import poll

pytestmark = pytest.mark.real


@pytest.fixture
def tsd(real_tailscale: Path, test_id: str) -> Iterator[realservers.Tailscaled]:
    with realservers.tailscaled(real_tailscale, test_id) as daemon:
        yield daemon


@contextmanager
def forwarder(
    specs: tuple[ForwardSpec, ...], proxy_port: int, timing: Timing | None = None
) -> Iterator[Forwarder]:
    fwd = Forwarder(specs, bind_listeners(specs), Dialer(("127.0.0.1", proxy_port)),
                    log=lambda _line: None, timing=timing or Timing())  # fmt: skip
    # The manager runs as the Spacelift user, and so do the clients below: a forward takes
    # only its own uid's connections (and root's).
    fwd.uid = SPACELIFT_UID
    fwd.start()
    try:
        yield fwd
    finally:
        fwd.stop()


def client_env(test_id: str, home: Path) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8", MARKER: test_id}


# --- the SOCKS5 client against the real proxy ---------------------------------------------------


def test_socks5_client_reaches_a_loopback_server_through_the_real_proxy(
    tsd: realservers.Tailscaled,
) -> None:
    target = Target(echo)
    dialer = Dialer(("127.0.0.1", tsd.socks_port))
    for host in ("127.0.0.1", "localhost"):
        with dialer.dial(host, target.port) as sock:
            sock.sendall(b"through tailscaled")
            sock.settimeout(10)
            assert recv_exact(sock, 18) == b"through tailscaled"
    target.close()


@pytest.mark.parametrize("host", ["db.internal.example.com", "127.0.0.1"])
def test_the_real_proxy_answers_general_failure_for_unknown_names_and_refusals(
    tsd: realservers.Tailscaled, host: str
) -> None:
    """Reply 1 for both: tailscaled's SOCKS5 reply does not tell them apart (the resolver
    fallback therefore tries any name whose dial failed)."""
    with pytest.raises(DialError) as caught:
        Dialer(("127.0.0.1", tsd.socks_port)).dial(host, free_port())
    assert caught.value.reply == GENERAL_FAILURE
    assert "tailscale could not connect" in str(caught.value)


def test_a_proxy_that_is_not_there_is_named() -> None:
    port = free_port()
    with pytest.raises(DialError) as caught:
        Dialer(("127.0.0.1", port), timeout=5).dial("db.example.ts.net", 5432)
    assert f"SOCKS5 proxy at 127.0.0.1:{port} is not answering" in str(caught.value)


# --- forwarders through the real proxy -----------------------------------------------------------


def test_psql_through_a_forward(tsd: realservers.Tailscaled, test_id: str, home: Path) -> None:
    with realservers.postgres(test_id) as pg:
        specs = parse_forwards("--forward", f"{free_port()}=localhost:{pg.port}", public=False)
        with forwarder(specs, tsd.socks_port) as fwd:
            result = subprocess.run(
                ["psql", "-h", "127.0.0.1", "-p", str(specs[0].listen_port), "-U", "postgres",
                 "-tAc", "select count(*), sum(i) from generate_series(1, 200000) as i"],
                env=client_env(test_id, home), capture_output=True, text=True, timeout=60,
                check=False,
            )  # fmt: skip
            assert result.returncode == 0, result.stderr
            assert result.stdout.strip() == "200000|20000100000"
            poll(lambda: fwd.snapshot()[0].open == 0, 20, "psql's connection to close")
            snap = fwd.snapshot()[0]
            assert snap.total == 1 and snap.last_error is None
            assert isinstance(snap.bytes_received, int) and snap.bytes_received > 0


def test_mariadb_through_a_forward(tsd: realservers.Tailscaled, test_id: str, home: Path) -> None:
    with realservers.mariadb(test_id) as db:
        specs = parse_forwards("--forward", f"{free_port()}=127.0.0.1:{db.port}", public=False)
        with forwarder(specs, tsd.socks_port) as fwd:
            result = subprocess.run(
                ["mariadb", "--no-defaults", "-h", "127.0.0.1", "-P", str(specs[0].listen_port),
                 "-u", "root", "-N", "-e", "select version() like '%MariaDB%', repeat('x', 1e5)"],
                env=client_env(test_id, home), capture_output=True, text=True, timeout=60,
                check=False,
            )  # fmt: skip
            assert result.returncode == 0, result.stderr
            assert result.stdout.split() == ["1", "x" * 100_000]
            poll(lambda: fwd.snapshot()[0].open == 0, 20, "mariadb's connection to close")


@pytest.mark.parametrize("first", ["client", "target"])
def test_eof_passes_through_the_forward_and_the_real_proxy(
    tsd: realservers.Tailscaled, first: str
) -> None:
    """Whichever side ends first, the other sees all its bytes. The target's EOF reaches the
    client at once; the client's is kept while the target may still answer (tailscaled 1.96.4's
    proxies close both directions on a half-close), so the target answers after it, and its
    close ends the connection."""
    seen: list[bytes] = []

    def target_side(conn: socket.socket) -> None:
        if first == "target":
            conn.sendall(b"t" * 300_000)
            conn.shutdown(socket.SHUT_WR)
            seen.append(recv_all(conn))
            return
        got = b""
        while len(got) < 300_000 and (chunk := conn.recv(65536)):
            got += chunk
        seen.append(got)
        conn.sendall(b"answer after the client's EOF")
        conn.close()

    target = Target(target_side)
    specs = parse_forwards("--forward", f"{free_port()}=127.0.0.1:{target.port}", public=False)
    with forwarder(specs, tsd.socks_port) as fwd:
        with socket.create_connection(("127.0.0.1", specs[0].listen_port)) as c:
            c.settimeout(20)
            if first == "client":
                c.sendall(b"c" * 300_000)
                c.shutdown(socket.SHUT_WR)
                assert recv_all(c) == b"answer after the client's EOF"
                assert seen == [b"c" * 300_000]
            else:
                assert recv_all(c) == b"t" * 300_000
                poll(lambda: bool(seen), 20, "the target's side to end")
        poll(lambda: fwd.snapshot()[0].open == 0, 20, "the connection to close")
    target.close()


def test_a_request_then_eof_gets_its_late_reply_through_a_forward_and_nc(
    tsd: realservers.Tailscaled, userland: Userland, home: Path, test_id: str
) -> None:
    """The server answers 0.2 s after the request, after the client's EOF: through a forward
    and through nc the reply arrives; with nc -N the real proxy ends the connection at the EOF
    and the reply is lost (what --help and the README say -N costs)."""
    target = Target(answer_later)
    specs = parse_forwards("--forward", f"{free_port()}=127.0.0.1:{target.port}", public=False)
    listen = ("127.0.0.1", specs[0].listen_port)
    with forwarder(specs, tsd.socks_port), socket.create_connection(listen, timeout=10) as c:
        c.sendall(REQUEST)
        c.shutdown(socket.SHUT_WR)
        assert recv_all(c) == REPLY
    launcher = proxy_command(userland, home, tsd.socks_port).split()[0]
    for extra, reply in (([], REPLY), (["-N"], b"")):
        result = subprocess.run(
            [launcher, "127.0.0.1", str(target.port), *extra], input=REQUEST,
            env=client_env(test_id, home), capture_output=True, timeout=30, check=False,
            **realservers.as_user(),
        )  # fmt: skip
        assert (result.returncode, result.stdout, result.stderr) == (0, reply, b""), extra
    target.close()


def test_blackholed_dials_through_the_real_proxy_do_not_delay_another_forward(
    tsd: realservers.Tailscaled,
) -> None:
    """Twelve connections to a target that never completes the TCP handshake, through the real
    proxy; a connection to another forward answers at once, and the twelve end at the dial
    timeout with it in last_error."""
    target = Target(echo)
    with blackhole() as dead:
        text = f"{free_port()}=127.0.0.1:{dead} {free_port()}=127.0.0.1:{target.port}"
        specs = parse_forwards("--forward", text, public=False)
        with forwarder(specs, tsd.socks_port, Timing(dial_timeout=3)) as fwd:
            stuck = [socket.create_connection(("127.0.0.1", specs[0].listen_port))
                     for _ in range(12)]  # fmt: skip
            poll(lambda: fwd.snapshot()[0].total == 12, 20, "12 dials under way")
            started = time.monotonic()
            with socket.create_connection(("127.0.0.1", specs[1].listen_port)) as c:
                c.sendall(b"ok")
                c.settimeout(10)
                assert recv_exact(c, 2) == b"ok"
            assert time.monotonic() - started < 1.0  # the old shared pool: 4.69 s
            for s in stuck:
                s.settimeout(15)
                assert s.recv(1) == b""
                s.close()
            error = str(fwd.snapshot()[0].last_error)
            assert f"127.0.0.1:{dead}: no connection within 3 s" in error
    target.close()


def recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n and (chunk := sock.recv(n - len(data))):
        data += chunk
    return data


def test_unreachable_target_closes_at_once_with_last_error(tsd: realservers.Tailscaled) -> None:
    target = Target(echo)
    text = f"{free_port()}=127.0.0.1:{free_port()} {free_port()}=127.0.0.1:{target.port}"
    specs = parse_forwards("--forward", text, public=False)
    with forwarder(specs, tsd.socks_port) as fwd:
        with socket.create_connection(("127.0.0.1", specs[0].listen_port)) as c:
            c.settimeout(10)
            assert c.recv(1) == b""
        poll(lambda: fwd.snapshot()[0].last_error is not None, 20, "last_error")
        error = str(fwd.snapshot()[0].last_error)
        assert f"127.0.0.1:{specs[0].target_port}" in error
        assert "tailscale could not connect" in error
        with socket.create_connection(("127.0.0.1", specs[1].listen_port)) as c:
            c.sendall(b"ok")
            c.settimeout(10)
            assert recv_exact(c, 2) == b"ok"
    target.close()


# --- nc as ssh's ProxyCommand, and Ansible -----------------------------------------------------


def proxy_command(userland: Userland, home: Path, socks_port: int) -> str:
    """A launcher for `spacetail nc %h %p` with a Dialer on the real proxy (the CLI's wiring to
    the running manager is separate)."""
    launcher = home / "nc-launcher"
    launcher.write_text(
        f"#!{userland.python}\nimport sys\nsys.path.insert(0, {str(userland.root / 'site')!r})\n"
        "from spacetail.errors import SpacetailError\nfrom spacetail.commands.nc import nc\n"
        "from spacetail.tailnet.socks5 import Dialer\ntry:\n"
        f"    code = nc(Dialer(('127.0.0.1', {socks_port})), sys.argv[1], int(sys.argv[2]),\n"
        "             send_eof='-N' in sys.argv[3:])\n"
        "except SpacetailError as exc:\n"
        "    print(f'spacetail: error: {exc}', file=sys.stderr)\n    code = exc.exit_code\n"
        "raise SystemExit(code)\n"
    )
    launcher.chmod(0o755)
    return f"{launcher} %h %p"


def ssh_argv(server: realservers.SSHServer, proxy: str) -> list[str]:
    return ["ssh", "-F", "/dev/null", "-i", str(server.user_key), "-p", str(server.port),
            "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            "-o", f"ProxyCommand={proxy}", f"{server.user}@127.0.0.1"]  # fmt: skip


def test_ssh_with_nc_as_proxy_command(
    tsd: realservers.Tailscaled, userland: Userland, home: Path, test_id: str
) -> None:
    with realservers.sshd(test_id) as server:
        proxy = proxy_command(userland, home, tsd.socks_port)
        payload = "line\n" * 20000  # 100 kB up through stdin, back through stdout
        result = subprocess.run(
            [*ssh_argv(server, proxy), "cat; echo uid=$(id -u)"], input=payload,
            env=client_env(test_id, home), capture_output=True, text=True, timeout=60,
            check=False, cwd="/", **realservers.as_user(),
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert result.stdout == payload + "uid=1983\n"
        assert "spacetail" not in result.stderr


def test_nc_fails_with_one_line_when_the_target_cannot_be_reached(
    tsd: realservers.Tailscaled, userland: Userland, home: Path, test_id: str
) -> None:
    launcher = proxy_command(userland, home, tsd.socks_port).split()[0]
    port = free_port()
    result = subprocess.run(
        [launcher, "127.0.0.1", str(port)], env=client_env(test_id, home), capture_output=True,
        text=True, timeout=30, check=False, stdin=subprocess.DEVNULL, **realservers.as_user(),
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"spacetail: error: cannot reach 127.0.0.1:{port}: ")


def test_ansible_ping_through_nc(
    tsd: realservers.Tailscaled, userland: Userland, home: Path, test_id: str
) -> None:
    realservers.need_programs("ansible")
    with realservers.sshd(test_id) as server:
        proxy = proxy_command(userland, home, tsd.socks_port)
        inventory = home / "inventory.ini"
        inventory.write_text(
            f"[tailnet]\ntarget ansible_host=127.0.0.1 ansible_port={server.port} "
            f"ansible_user={server.user} ansible_ssh_private_key_file={server.user_key} "
            "ansible_python_interpreter=/usr/bin/python3 "
            f'ansible_ssh_common_args=\'-o ProxyCommand="{proxy}" '
            "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null'\n"
        )
        env = {**client_env(test_id, home), "ANSIBLE_LOCAL_TEMP": str(home / "ansible-local"),
               "ANSIBLE_REMOTE_TMP": str(home / "ansible-remote"),
               "ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_NOCOLOR": "1"}  # fmt: skip
        result = subprocess.run(
            ["ansible", "all", "-i", str(inventory), "-m", "ping"], env=env, capture_output=True,
            text=True, timeout=120, check=False, cwd=str(home), **realservers.as_user(),
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        assert '"ping": "pong"' in result.stdout
        assert "target | SUCCESS" in result.stdout
    # Ansible's ssh control master outlives it (ControlPersist) with nc as its ProxyCommand;
    # once sshd and its sessions are gone the connection ends, and nc must end with it.
    for pid, cmdline in helpers.processes_with_marker(test_id):
        if "nc-launcher" in cmdline or cmdline.startswith("ssh"):
            assert helpers.wait_gone(pid, 10), f"still running: {cmdline}"


def test_forward_to_sshd_keeps_an_idle_session_open(
    tsd: realservers.Tailscaled, home: Path, test_id: str
) -> None:
    """ssh to a local forward (no ProxyCommand); the forward never closes an idle connection:
    a command that waits for input gets it after the connection sat idle."""
    with realservers.sshd(test_id) as server:
        specs = parse_forwards("--forward", f"{free_port()}=127.0.0.1:{server.port}",
                               public=False)  # fmt: skip
        with forwarder(specs, tsd.socks_port) as fwd:
            argv = ssh_argv(server, "none")
            argv[argv.index(str(server.port))] = str(specs[0].listen_port)
            proc = subprocess.Popen(
                [*argv, "read line; echo got $line"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, env=client_env(test_id, home), text=True, cwd="/",
                **realservers.as_user(),
            )  # fmt: skip
            try:
                poll(lambda: fwd.snapshot()[0].bytes_received != 0, 20, "ssh's handshake")
                out, _ = proc.communicate("later\n", timeout=60)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            assert proc.returncode == 0
            assert out == "got later\n"
    assert os.path.exists(home)
