"""Forward specs ([ADDR:]LPORT=HOST:PORT) and binding their listeners."""

from __future__ import annotations

import os
import socket

import pytest

from spacetail.errors import ConfigError, OperationFailed
from spacetail.forwards.spec import (
    ForwardSpec,
    bind_listeners,
    listening_inodes,
    parse_forwards,
    parse_port,
    port_holder,
)

ENV = "SPACETAIL_FORWARDS"


def test_every_accepted_form() -> None:
    raw = (
        "5432=db.example.ts.net:5432, 127.0.0.1:3306=100.64.0.8:3306\n"
        "localhost:2222=[fd7a:115c:a1e0::8]:22 [::1]:8443=api.internal.example.com.:443"
    )
    specs = parse_forwards(ENV, raw, public=False)
    assert specs == (
        ForwardSpec("127.0.0.1", 5432, "db.example.ts.net", 5432),
        ForwardSpec("127.0.0.1", 3306, "100.64.0.8", 3306),
        ForwardSpec("127.0.0.1", 2222, "fd7a:115c:a1e0::8", 22),
        ForwardSpec("::1", 8443, "api.internal.example.com", 443),
    )
    assert [s.listen for s in specs] == [
        "127.0.0.1:5432", "127.0.0.1:3306", "127.0.0.1:2222", "[::1]:8443"]  # fmt: skip
    assert specs[2].target == "[fd7a:115c:a1e0::8]:22"


def test_empty_means_no_forwards() -> None:
    assert parse_forwards(ENV, " ,\n ", public=False) == ()


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("5432", "is not [ADDR:]LPORT=HOST:PORT"),
        ("5432=db", "is not [ADDR:]LPORT=HOST:PORT"),
        ("5432=db:5432=x", "is not [ADDR:]LPORT=HOST:PORT"),
        ("=db:5432", "local port '' "),
        ("5432=:5432", "is not [ADDR:]LPORT=HOST:PORT"),
        ("::1:5432=db:5432", "is not [ADDR:]LPORT=HOST:PORT"),
        ("[::1=db:5432", "is not [ADDR:]LPORT=HOST:PORT"),
        ("5432=db:fd7a::1:5432", "is not [ADDR:]LPORT=HOST:PORT"),
        ("0=db:5432", "local port '0'"),
        ("65536=db:5432", "local port '65536'"),
        ("x=db:5432", "local port 'x'"),
        ("5432=db:0", "target port '0'"),
        ("5432=db:70000", "target port '70000'"),
        ("5432=db:-1", "target port '-1'"),
        ("5432=x:\u0661\u0662", "target port '\u0661\u0662'"),  # Arabic-Indic 12: ASCII only
        ("\u0661\u0662=x:1", "local port '\u0661\u0662'"),
        ("5432=db_bad name:1", "is not [ADDR:]LPORT=HOST:PORT"),
        ("5432=-db:1", "is not a host name or an IP address"),
        ("myhost:5432=db:5432", "listen address 'myhost'"),
        ("0.0.0.0:5432=db:5432", "reachable from other machines"),
        ("10.1.2.3:5432=db:5432", "SPACETAIL_FORWARD_PUBLIC=true (--forward-public)"),
        ("[::]:5432=db:5432", "reachable from other machines"),
        ("5432=a:1 5432=b:2", "local port 5432 is used twice (a:1 and b:2)"),
        ("127.0.0.1:5432=a:1,[::1]:5432=b:2", "local port 5432 is used twice"),
    ],
)
def test_bad_input_is_one_config_error_naming_the_setting(raw: str, fragment: str) -> None:
    for setting in (ENV, "--forward"):
        with pytest.raises(ConfigError) as caught:
            parse_forwards(setting, raw, public=False)
        message = str(caught.value)
        assert message.startswith(f"{setting}: ")
        assert fragment in message
        assert "\n" not in message
        assert caught.value.exit_code == 2


def test_public_listen_address_with_the_public_switch() -> None:
    specs = parse_forwards("--forward", "0.0.0.0:5432=db:5432", public=True)
    assert specs == (ForwardSpec("0.0.0.0", 5432, "db", 5432),)


def test_a_newline_in_the_value_cannot_forge_a_second_line() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_forwards(ENV, "5432=db:5432\x1b[2J", public=False)
    assert "\x1b" not in str(caught.value)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_bind_listeners_binds_every_spec_non_blocking() -> None:
    ports = [_free_port(), _free_port()]
    specs = parse_forwards(ENV, f"{ports[0]}=a:1 [::1]:{ports[1]}=b:2", public=False)
    listeners = bind_listeners(specs)
    try:
        assert [s.getsockname()[1] for s in listeners] == ports
        assert listeners[1].family == socket.AF_INET6
        assert all(not s.getblocking() for s in listeners)
        socket.create_connection(("127.0.0.1", ports[0]), timeout=5).close()
    finally:
        for s in listeners:
            s.close()


def test_port_in_use_names_the_port_and_the_holder_and_closes_the_rest() -> None:
    free = _free_port()
    holder = socket.create_server(("127.0.0.1", 0))
    taken = holder.getsockname()[1]
    try:
        specs = parse_forwards(ENV, f"{free}=a:1 {taken}=b:2", public=False)
        with pytest.raises(OperationFailed) as caught:
            bind_listeners(specs)
        message = str(caught.value)
        assert f"port {taken} is already in use by " in message
        assert f"(pid {os.getpid()})" in message
        assert "pick another local port" in message
        # The first listener was closed again: its port can be bound now.
        with socket.create_server(("127.0.0.1", free)):
            pass
    finally:
        holder.close()


def test_port_holder_finds_the_listening_inode_and_nothing_for_a_free_port() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        inode = str(os.fstat(listener.fileno()).st_ino)
        assert listening_inodes(port) == {inode}
        holder = port_holder(port)
        assert holder is not None and holder.endswith(f"(pid {os.getpid()})")
    assert port_holder(port) is None


def test_a_port_alone() -> None:
    assert parse_port("nc PORT", "22") == 22
    for bad in ("0", "65536", "ssh", "-1", "", "\u0661\u0662", "\u00b2", "+22", " 22"):
        with pytest.raises(ConfigError, match=r"^nc PORT: .* is not a port; use 1-65535$"):
            parse_port("nc PORT", bad)
