"""HOST:PORT parsed and written one way: ASCII ports, bracketed IPv6, bounded hosts."""

from __future__ import annotations

import pytest

from spacetail.config import hostport


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("db.example.ts.net:5432", ("db.example.ts.net", 5432)),
        ("127.0.0.1:1", ("127.0.0.1", 1)),
        ("[fd7a:115c:a1e0::1]:65535", ("fd7a:115c:a1e0::1", 65535)),
        ("[::1]:8080", ("::1", 8080)),
        ("b\u00fccher.example:80", ("b\u00fccher.example", 80)),
        ("x:022", ("x", 22)),
    ],
)
def test_parse_and_format_round_trip(text: str, parsed: tuple[str, int]) -> None:
    assert hostport.parse(text) == parsed
    assert hostport.parse(hostport.format(*parsed)) == parsed


def test_a_bare_port_takes_the_default_host_only_when_asked() -> None:
    assert hostport.parse(":1080", default_host="127.0.0.1") == ("127.0.0.1", 1080)
    with pytest.raises(ValueError, match="the host is empty"):
        hostport.parse(":1080")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x:\u0661\u0662", "'\u0661\u0662' is not a port; use 1-65535"),  # Arabic-Indic 12
        ("x:\u00b2", "is not a port"),
        ("x:0", "'0' is not a port"),
        ("x:65536", "'65536' is not a port"),
        ("x:+1", "'+1' is not a port"),
        ("x: 1", "' 1' is not a port"),
        ("x", "'x' has no port; write HOST:PORT"),
        ("::1:80", "an IPv6 address goes in brackets, [::1]:80"),
        ("[::1:80", "is not HOST:PORT ([IPv6]:PORT"),
        ("a" * 300 + ":1", "is 300 characters; a host name has at most 253"),
        ("\udcff:1", r"the host '\xff' is not valid UTF-8 text"),
        ("a b:1", "'a b' is not a host name or an IP address"),
        ("a\nb:1", r"'a\nb' is not a host name"),
        ("[db]x:1", "is not HOST:PORT"),
        ("[not-v6:x]:1", "is not a host name or an IP address"),
        ("a..b:1", "its dot-separated parts have 1-63 characters"),
        ("x" * 64 + ".example:1", "its dot-separated parts have 1-63 characters"),
    ],
)
def test_bad_input_is_a_value_error_that_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        hostport.parse(text)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 120


def test_a_host_alone_is_checked_the_same_way() -> None:
    assert hostport.check_host("fd7a:115c:a1e0::1") == "fd7a:115c:a1e0::1"
    longest = ".".join(["x" * 63] * 4)[: hostport.MAX_HOST]
    assert hostport.check_host(longest) == longest
    for bad in ("", "x" * (hostport.MAX_HOST + 1), "\udcff", "a:b", "a/b", "u@h"):
        with pytest.raises(ValueError):
            hostport.check_host(bad)
