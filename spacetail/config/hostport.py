"""HOST:PORT, parsed and written one way everywhere: a forward's target, a proxy address, a doctor
target, the proxy spacetail dials, `nc`'s arguments.

A port is ASCII digits only (str.isdigit() and int() also take "١٢" and "²"), 1-65535. A host is
a name or an address, IPv6 in brackets when a port follows, at most MAX_HOST characters, text
that can go on the wire (no control characters, no undecodable bytes from the command line).
Errors are ValueError with a text that says what is wrong; callers put the setting's name in
front of it."""

from __future__ import annotations

import ipaddress
import re

MAX_HOST = 253  # the longest DNS name; an IPv6 address with a zone fits too
_PORT = re.compile(r"[0-9]{1,5}")
_BAD_CHARS = re.compile(r"[\x00-\x20\x7f\[\]/@]")


def parse_port(text: str) -> int:
    """A TCP port: ASCII digits, 1-65535."""
    if not _PORT.fullmatch(text) or not 1 <= int(text) <= 65535:
        raise ValueError(f"{_show(text)} is not a port; use 1-65535")
    return int(text)


def check_host(host: str) -> str:
    """HOST as given, when it can name a host: not empty, at most MAX_HOST characters, no
    spaces, control characters or bytes that are not text."""
    if not host:
        raise ValueError("the host is empty")
    if len(host) > MAX_HOST:
        raise ValueError(
            f"the host {_show(host)} is {len(host)} characters; a host name has at most {MAX_HOST}"
        )
    try:
        host.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"the host {_show(host)} is not valid UTF-8 text") from None
    if _BAD_CHARS.search(host) or (":" in host and not _is_ipv6(host)):
        raise ValueError(f"{_show(host)} is not a host name or an IP address")
    if ":" not in host:
        try:  # what the SOCKS5 request and a DNS query will do with it
            host.rstrip(".").encode("idna")
        except UnicodeError:
            raise ValueError(
                f"{_show(host)} is not a host name (its dot-separated parts have 1-63 characters)"
            ) from None
    return host


def split(text: str) -> tuple[str, str]:
    """'host:port' or '[v6]:port' -> (host, port text), unchecked; ValueError without a port."""
    if text.startswith("["):
        close = text.find("]")
        if close < 0 or text[close + 1 : close + 2] != ":":
            raise ValueError(f"{_show(text)} is not HOST:PORT ([IPv6]:PORT for an IPv6 address)")
        return text[1:close], text[close + 2 :]
    host, sep, port = text.rpartition(":")
    if not sep:
        raise ValueError(f"{_show(text)} has no port; write HOST:PORT")
    if ":" in host:
        raise ValueError(f"{_show(text)}: an IPv6 address goes in brackets, [{host}]:{port}")
    return host, port


def parse(text: str, *, default_host: str | None = None) -> tuple[str, int]:
    """HOST:PORT -> (host, port), the host without brackets. With DEFAULT_HOST, ':PORT' means
    that host."""
    host, port = split(text)
    if not host and default_host is not None and not text.startswith("["):
        host = default_host
    return check_host(host), parse_port(port)


def format(host: str, port: int) -> str:
    """(host, port) -> 'host:port', with an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _is_ipv6(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).version == 6
    except ValueError:
        return False


def _show(text: str) -> str:
    """TEXT quoted for a message: shortened, bytes the command line could not decode shown as
    they were given (\\xff), other unprintable characters escaped."""
    shown = text if len(text) <= 40 else text[:37] + "..."
    return "'" + "".join(map(_char, shown)) + "'"


def _char(ch: str) -> str:
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: one undecodable byte
        return f"\\x{code - 0xDC00:02x}"
    return ch if ch.isprintable() and ch not in "'\\" else repr(ch)[1:-1].replace("'", "\\'")
