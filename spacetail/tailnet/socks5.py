"""A SOCKS5 CONNECT client (RFC 1928, no authentication) for tailscaled's userspace proxy, and
the Dialer that spacetail's forwarders and `nc` use: the name goes to the proxy first (MagicDNS,
*.ts.net and tailnet IPs resolve inside tailscaled); when the proxy cannot resolve it (split-DNS
names, tailscale#4677) the tailnet's own resolver is asked and the address is dialled instead."""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Callable, Sequence

from spacetail.config import hostport
from spacetail.errors import OperationFailed

VERSION = 5
NO_AUTH = 0
NO_ACCEPTABLE = 0xFF
CMD_CONNECT = 1
ATYP_IPV4, ATYP_DOMAIN, ATYP_IPV6 = 1, 3, 4

# RFC 1928 reply codes, worded for what tailscaled means by them. tailscaled 1.96.4 answers 1
# for every failed dial, unknown names ("no such host") included; the others come from RFC 1928.
GENERAL_FAILURE = 1
HOST_UNREACHABLE = 4
REPLIES = {
    1: "tailscale could not connect (no such host, refused, or unreachable)",
    2: "connection not allowed by tailscale",
    3: "network unreachable",
    4: "host unreachable",
    5: "connection refused",
    6: "timed out",
    7: "command not supported by the proxy",
    8: "address type not supported by the proxy",
}
# Replies after which the name is worth asking the tailnet's resolver about.
LOOKUP_FAILURES = frozenset({GENERAL_FAILURE, HOST_UNREACHABLE})

Resolver = Callable[[str], Sequence[str]]


class DialError(OSError, OperationFailed):
    """A dial through the proxy failed; the message says why, in tailscale's terms. An OSError
    (the forwarder treats it like any failed connect) and an OperationFailed (`nc` exits 1)."""

    def __init__(self, message: str, reply: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.reply = reply
        self.reason = reason or message


def is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def connect_request(host: str, port: int) -> bytes:
    """The greeting and the CONNECT request, sent together (tailscaled reads them in order)."""
    greeting = bytes([VERSION, 1, NO_AUTH])
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raw = host.encode("idna")
        if not 0 < len(raw) < 256:
            raise DialError(f"host name length {len(raw)} is not 1-255 bytes") from None
        addr = bytes([ATYP_DOMAIN, len(raw)]) + raw
    else:
        addr = bytes([ATYP_IPV4 if ip.version == 4 else ATYP_IPV6]) + ip.packed
    return greeting + bytes([VERSION, CMD_CONNECT, 0]) + addr + struct.pack(">H", port)


def reply_length(head: bytes) -> int:
    """The total length of a CONNECT reply, from its first 5 bytes."""
    atyp = head[3]
    if atyp == ATYP_IPV4:
        return 4 + 4 + 2
    if atyp == ATYP_IPV6:
        return 4 + 16 + 2
    if atyp == ATYP_DOMAIN:
        return 4 + 1 + head[4] + 2
    raise DialError(f"the proxy answered an unknown address type {atyp}")


def check_method(answer: bytes) -> None:
    if len(answer) != 2 or answer[0] != VERSION:
        raise DialError(f"not a SOCKS5 proxy (it answered {answer[:8].hex() or 'nothing'})")
    if answer[1] != NO_AUTH:
        raise DialError("the SOCKS5 proxy requires authentication; tailscaled's does not")


def check_reply(head: bytes, target: str) -> None:
    if head[0] != VERSION:
        raise DialError(f"bad SOCKS5 reply from the proxy ({head[:4].hex()})")
    if head[1] != 0:
        reason = REPLIES.get(head[1], f"SOCKS5 reply {head[1]}")
        raise DialError(f"cannot reach {target}: {reason}", head[1], reason)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise DialError("the SOCKS5 proxy closed the connection during the handshake")
        data += chunk
    return data


def handshake(sock: socket.socket, host: str, port: int) -> None:
    """Ask the proxy on SOCK (connected, blocking) to CONNECT to HOST:PORT."""
    target = hostport.format(host, port)
    sock.sendall(connect_request(host, port))
    check_method(_recv_exact(sock, 2))
    head = _recv_exact(sock, 5)
    check_reply(head, target)
    _recv_exact(sock, reply_length(head) - 5)


class Dialer:
    """Connections through tailscaled's SOCKS5 proxy at PROXY, with the tailnet's resolver
    (RESOLVER: name -> addresses) as the fallback for names the proxy cannot resolve."""

    def __init__(
        self,
        proxy: tuple[str, int],
        resolver: Resolver | None = None,
        *,
        timeout: float = 10.0,
    ) -> None:
        self.proxy = proxy
        self.resolver = resolver
        self.timeout = timeout

    def _through_proxy(self, host: str, port: int) -> socket.socket:
        try:
            sock = socket.create_connection(self.proxy, timeout=self.timeout)
        except OSError as exc:
            where = hostport.format(*self.proxy)
            raise DialError(f"tailscale's SOCKS5 proxy at {where} is not answering: {exc}") from exc
        try:
            handshake(sock, host, port)
        except BaseException:
            sock.close()
            raise
        sock.settimeout(None)
        return sock

    def dial(self, host: str, port: int) -> socket.socket:
        """A blocking socket connected to HOST:PORT; DialError says why not."""
        try:
            return self._through_proxy(host, port)
        except DialError as first:
            if first.reply not in LOOKUP_FAILURES or is_address(host) or self.resolver is None:
                raise
            return self._via_resolver(host, port, first)
        except OSError as exc:  # a timeout or reset during the handshake
            raise DialError(f"cannot reach {hostport.format(host, port)}: {exc}") from exc

    def _via_resolver(self, host: str, port: int, first: DialError) -> socket.socket:
        assert self.resolver is not None
        try:
            addresses = list(self.resolver(host))
        except OSError as exc:
            raise DialError(f"{first}; {exc}", first.reply) from exc
        if not addresses:
            raise DialError(f"{first}; tailnet DNS has no address for {host}", first.reply)
        reason = first.reason
        for address in addresses:
            try:
                return self._through_proxy(address, port)
            except DialError as exc:
                reason = exc.reason
            except OSError as exc:
                reason = str(exc)
        where = f"{hostport.format(host, port)} (tailnet DNS: {', '.join(addresses)})"
        raise DialError(f"cannot reach {where}: {reason}")
