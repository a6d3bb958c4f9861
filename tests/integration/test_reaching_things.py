"""Reaching more than HTTP, the way the README's "Reaching things" section says: real psql and
mariadb through `spacetail up --forward`, real ssh and Ansible through `spacetail nc`, a name only
the tailnet's DNS knows, and the real tailscaled 1.96.4 carrying a forward before any login.
Servers and clients are Debian's (tests/realservers.py); the fake tailnet sends *.ts.net names
and the split-DNS name db.internal.example.com to 127.0.0.1."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests import realservers
from tests.faultkit import assert_clean, marked
from tests.helpers import Userland, free_port, st, status
from tests.loopback import REPLY, REQUEST, Target, answer_later, recv_all
from tests.waiting import poll

pytestmark = pytest.mark.real_client
TAILNET = "tail-fake.ts.net"


@contextmanager
def tailnet_up(userland: Userland, env: dict[str, str], *forwards: str) -> Iterator[None]:
    args = [a for f in forwards for a in ("--forward", f)]
    result = st(userland, env, "up", "--no-watch", *args)
    assert result.returncode == 0, result.stderr
    try:
        yield
    finally:
        assert st(userland, env, "down").returncode == 0


def client(userland: Userland, env: dict[str, str], argv: list[str], **kw: object) -> str:
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120,
                            check=False, cwd="/", **realservers.as_user(), **kw)  # type: ignore[call-overload]  # fmt: skip
    assert result.returncode == 0, f"{argv[0]}: {result.stdout}{result.stderr}"
    return str(result.stdout)


def test_psql_and_the_postgres_recipe_through_a_forward(
    userland: Userland, fake_env: dict[str, str], test_id: str
) -> None:
    with realservers.postgres(test_id) as pg:
        local = free_port()
        with tailnet_up(userland, fake_env, f"{local}=db.{TAILNET}:{pg.port}"):
            out = client(userland, fake_env, ["psql", "-h", "127.0.0.1", "-p", str(local), "-U",
                         "postgres", "-tAc", "select 6 * 7"])  # fmt: skip
            assert out.strip() == "42"
            forwards = status(userland, fake_env)["forwards"]
            assert forwards[0]["listen"] == f"127.0.0.1:{local}"
            assert forwards[0]["target"] == f"db.{TAILNET}:{pg.port}"
            poll(lambda: status(userland, fake_env)["forwards"][0]["open"] == 0, 5, "closed")
            shown = status(userland, fake_env)["forwards"][0]
            assert shown["total"] == 1 and shown["bytes_received"] > 0
            human = st(userland, fake_env, "status").stdout
            assert f"forward 127.0.0.1:{local} -> db.{TAILNET}:{pg.port}: 0 open, 1 in all" in human
        with pytest.raises(OSError):  # down closed the listener with the rest
            socket.create_connection(("127.0.0.1", local), timeout=2).close()
    assert_clean(userland, fake_env)


def test_a_name_only_the_tailnets_dns_knows(
    userland: Userland, fake_env: dict[str, str], test_id: str
) -> None:
    with realservers.postgres(test_id) as pg:
        local = free_port()
        with tailnet_up(userland, fake_env, f"{local}=db.internal.example.com:{pg.port}"):
            resolved = st(userland, fake_env, "resolve", "db.internal.example.com")
            assert resolved.returncode == 0 and resolved.stdout.split() == ["127.0.0.1"]
            out = client(userland, fake_env, ["psql", "-h", "127.0.0.1", "-p", str(local), "-U",
                         "postgres", "-tAc", "select 1"])  # fmt: skip
            assert out.strip() == "1"
    assert_clean(userland, fake_env)


def test_mariadb_through_a_forward(
    userland: Userland, fake_env: dict[str, str], test_id: str
) -> None:
    with realservers.mariadb(test_id) as db:
        local = free_port()
        with tailnet_up(userland, fake_env, f"{local}=mysql.{TAILNET}:{db.port}"):
            out = client(userland, fake_env, ["mariadb", "--no-defaults", "-h", "127.0.0.1",
                         "-P", str(local), "-u", "root", "-N", "-e", "select 40 + 2"])  # fmt: skip
            assert out.split() == ["42"]
    assert_clean(userland, fake_env)


def _ssh(server: realservers.SSHServer, host: str) -> list[str]:
    return ["ssh", "-F", "/dev/null", "-i", str(server.user_key), "-p", str(server.port),
            "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            "-o", "ProxyCommand=spacetail nc %h %p", f"{server.user}@{host}"]  # fmt: skip


def test_ssh_and_ansible_through_spacetail_nc(
    userland: Userland, fake_env: dict[str, str], test_id: str, home: Path
) -> None:
    realservers.need_programs("ansible")
    with realservers.sshd(test_id) as server, tailnet_up(userland, fake_env):
        out = client(userland, fake_env, [*_ssh(server, f"box.{TAILNET}"), "echo uid=$(id -u)"])
        assert out == "uid=1983\n"
        inventory = home / "inventory.ini"
        inventory.write_text(
            f"[tailnet]\nbox.{TAILNET} ansible_port={server.port} ansible_user={server.user} "
            f"ansible_ssh_private_key_file={server.user_key} "
            "ansible_python_interpreter=/usr/bin/python3\n\n[tailnet:vars]\n"
            'ansible_ssh_common_args=\'-o ProxyCommand="spacetail nc %h %p" '
            "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null'\n"
        )
        inventory.chmod(0o644)
        env = {**fake_env, "ANSIBLE_LOCAL_TEMP": str(home / "al"), "ANSIBLE_REMOTE_TMP":
               str(home / "ar"), "ANSIBLE_NOCOLOR": "1", "HOME": str(home)}  # fmt: skip
        out = client(userland, env, ["ansible", "all", "-i", str(inventory), "-m", "ping"])
        assert f"box.{TAILNET} | SUCCESS" in out and '"ping": "pong"' in out
    for pid, cmd in marked(fake_env):  # ssh's control master and its nc end with sshd
        if " nc " in cmd or cmd.startswith("ssh"):
            poll(lambda pid=pid: not Path(f"/proc/{pid}").exists(), 10, cmd)  # type: ignore[misc]
    assert_clean(userland, fake_env)


def test_nc_says_why_in_one_line(userland: Userland, fake_env: dict[str, str]) -> None:
    nothing = st(userland, fake_env, "nc", f"box.{TAILNET}", "22")
    assert nothing.returncode == 1 and nothing.stderr.count("\n") == 1
    assert "no manager runs" in nothing.stderr
    with tailnet_up(userland, fake_env):
        closed = free_port()
        refused = st(userland, fake_env, "nc", f"box.{TAILNET}", str(closed))
        assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
        assert refused.stderr.startswith(f"spacetail: error: cannot reach box.{TAILNET}:{closed}")
    assert_clean(userland, fake_env)


def test_the_real_tailscaled_carries_a_forward_before_any_login(
    userland: Userland, real_env: dict[str, str], test_id: str
) -> None:
    env = {**real_env, "TS_LOGIN_SERVER": f"http://127.0.0.1:{free_port()}"}
    with realservers.postgres(test_id) as pg:
        local = free_port()
        up = st(userland, env, "up", "--no-watch", "--no-wait", "--timeout", "60",
                "--forward", f"{local}=127.0.0.1:{pg.port}")  # fmt: skip
        try:
            assert up.returncode == 0, up.stderr
            out = client(userland, env, ["psql", "-h", "127.0.0.1", "-p", str(local), "-U",
                         "postgres", "-tAc", "select 'through 1.96.4'"])  # fmt: skip
            assert out.strip() == "through 1.96.4"
        finally:
            st(userland, env, "down")
    assert_clean(userland, env)


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("5432", "--forward: '5432' is not [ADDR:]LPORT=HOST:PORT"),
        ("70000=db:5432", "not a port"),
        ("0.0.0.0:15432=db:5432", "--forward-public"),
    ],
)
def test_bad_forwards_are_one_line_and_start_nothing(
    userland: Userland, fake_env: dict[str, str], spec: str, words: str
) -> None:
    result = st(userland, fake_env, "up", "--no-watch", "--forward", spec)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert words in result.stderr
    assert not marked(fake_env)


def test_a_local_port_in_use_fails_up_naming_it(
    userland: Userland, fake_env: dict[str, str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = st(userland, fake_env, "up", "--no-watch", "--forward", f"{port}=db:5432")
    assert result.returncode == 1 and str(port) in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not marked(fake_env)
    assert json.loads(st(userland, fake_env, "status", "--json").stdout)["running"] is False


def test_a_request_then_eof_gets_its_late_reply_through_nc_and_a_forward(
    userland: Userland, fake_env: dict[str, str]
) -> None:
    """The server answers 0.2 s after the request; the client has said EOF by then."""
    target = Target(answer_later)
    local = free_port()
    with tailnet_up(userland, fake_env, f"{local}=127.0.0.1:{target.port}"):
        result = subprocess.run(
            [str(userland.spacetail), "nc", "127.0.0.1", str(target.port)], input=REQUEST,
            env=fake_env, capture_output=True, timeout=30, check=False, cwd="/",
            **realservers.as_user(),
        )  # fmt: skip
        assert (result.returncode, result.stdout, result.stderr) == (0, REPLY, b"")
        with socket.create_connection(("127.0.0.1", local), timeout=10) as c:
            c.sendall(REQUEST)
            c.shutdown(socket.SHUT_WR)
            assert recv_all(c) == REPLY
    target.close()
    assert_clean(userland, fake_env)
