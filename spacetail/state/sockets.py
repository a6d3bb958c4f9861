"""Who holds a loopback TCP socket, read from the kernel's tables (`/proc/net/tcp` and
`/proc/net/tcp6`, this network namespace's): the listener on a port and the processes that hold
it (their `/proc/PID/fd` links read `socket:[INODE]`), and the uid of the process at the other
end of an accepted connection. A port on loopback is anyone's to bind once it is free, and any
local user's to connect to: these answers say whose it is."""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
import sys
from collections.abc import Iterable, Iterator

TABLES: dict[int, str] = {socket.AF_INET: "/proc/net/tcp", socket.AF_INET6: "/proc/net/tcp6"}
LISTEN = "0A"  # the st column of a listening socket


def _address(field: str) -> tuple[str, int]:
    """`0100007F:1F90` -> ("127.0.0.1", 8080): the kernel writes each 32-bit word of the address
    in its own byte order."""
    hexaddr, hexport = field.split(":")
    words = _words(bytes.fromhex(hexaddr))
    if len(words) == 16:
        v6 = ipaddress.IPv6Address(words)
        host = str(v6.ipv4_mapped or v6)
    else:
        host = socket.inet_ntoa(words)
    return host, int(hexport, 16)


def _words(raw: bytes) -> bytes:
    """Between the kernel's table and network order: each 32-bit word byte-swapped on a
    little-endian host (its own inverse)."""
    if sys.byteorder == "big":
        return raw
    return b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))


def _field(host: str, port: int) -> tuple[int, str]:
    """(table family, the table's text) for HOST:PORT: an IPv4-mapped IPv6 address is the IPv4
    socket it is."""
    ip = ipaddress.ip_address(host.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    return family, f"{_words(ip.packed).hex().upper()}:{port:04X}"


def _rows(families: Iterable[int]) -> Iterator[list[str]]:
    """Each socket's row, split (local, remote, state, ..., uid, ..., inode), read as it comes:
    a reader that found what it wanted stops there."""
    for family in families:
        try:
            with open(TABLES[family], encoding="ascii") as table:
                next(table, None)  # the header
                for line in table:
                    yield line.split()
        except OSError:
            continue


def _wildcard(host: str) -> bool:
    return host in ("0.0.0.0", "::")


def listening_inodes(host: str, port: int) -> list[int]:
    """The inodes of the listening sockets that take connections to HOST:PORT (bound to it, or
    to every address)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        try:
            host = socket.gethostbyname(host)  # `localhost`, as the proxy's setting may say
        except OSError:
            return []
    found = []
    for row in _rows(TABLES):
        if len(row) < 10 or row[3] != LISTEN:
            continue
        there, their_port = _address(row[1])
        if their_port == port and (there == host or _wildcard(there)):
            found.append(int(row[9]))
    return found


def holds(pid: int, inodes: Iterable[int]) -> bool:
    """Whether process PID holds every socket of INODES (and there is one at least)."""
    wanted = {f"socket:[{inode}]" for inode in inodes}
    if not wanted:
        return False
    folder = f"/proc/{pid}/fd"
    try:
        names = os.listdir(folder)
    except OSError:
        return False
    for name in names:
        try:
            wanted.discard(os.readlink(f"{folder}/{name}"))
        except OSError:
            continue
        if not wanted:
            return True
    return False


def children(pid: int) -> list[int]:
    """PID's child processes, as the kernel lists them for each of its threads."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as f:
                found += [int(child) for child in f.read().split()]
        except (OSError, ValueError):
            continue
    return found


def listener_owned(host: str, port: int, pids: Iterable[int]) -> bool:
    """Whether the socket listening on HOST:PORT is held by one of PIDS."""
    inodes = listening_inodes(host, port)
    return bool(inodes) and any(holds(pid, inodes) for pid in pids)


def peer_uid(peer: tuple[str, int], here: tuple[str, int]) -> int | None:
    """The uid of the process at the other end of an accepted loopback connection (PEER is the
    client's address and port, HERE ours); None when there is none (the client has gone
    already). The kernel is asked for that one socket over netlink (sock_diag, as `ss` does:
    microseconds, whatever the number of sockets); where it cannot answer (no sock_diag in
    this kernel or sandbox), the table is searched."""
    try:
        return _diag_uid(peer, here)
    except OSError as exc:
        if exc.errno in OUT_OF_DESCRIPTORS:
            raise  # no descriptor for the question: the caller is out of them
        return _table_uid(peer, here)


OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE)
_NETLINK_SOCK_DIAG = 4  # NETLINK_INET_DIAG
_SOCK_DIAG_BY_FAMILY = 20
_NLMSG_ERROR = 2
_NLM_F_REQUEST = 1
_REQUEST = struct.Struct("=IHHII BBBBI HH16s16sI8s")  # nlmsghdr, inet_diag_req_v2
_UID_AT = 16 + 4 + 48 + 12  # nlmsghdr, then inet_diag_msg's family..retrans, id, 3 counters


def _diag_uid(peer: tuple[str, int], here: tuple[str, int]) -> int | None:
    """sock_diag's answer for the client's socket: its local address is PEER, its remote one
    HERE. OSError when the kernel cannot be asked."""
    ip = ipaddress.ip_address(peer[0].split("%", 1)[0])
    there = ipaddress.ip_address(here[0].split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if isinstance(there, ipaddress.IPv6Address) and there.ipv4_mapped is not None:
        there = there.ipv4_mapped
    if ip.version != there.version:
        raise OSError("address families differ")
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    request = _REQUEST.pack(
        _REQUEST.size, _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST, 1, 0,
        family, socket.IPPROTO_TCP, 0, 0, 0xFFFFFFFF,
        socket.htons(peer[1]), socket.htons(here[1]),
        ip.packed.ljust(16, b"\0"), there.packed.ljust(16, b"\0"), 0, b"\xff" * 8,
    )  # fmt: skip
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG) as nl:
        nl.settimeout(1.0)
        nl.sendto(request, (0, 0))
        reply = nl.recv(8192)
    if len(reply) < 20:
        raise OSError("short sock_diag reply")
    kind = struct.unpack_from("=H", reply, 4)[0]
    if kind == _NLMSG_ERROR:
        code = -struct.unpack_from("=i", reply, 16)[0]
        if code == errno.ENOENT:
            return None
        raise OSError(code, "sock_diag refused the question")
    if kind != _SOCK_DIAG_BY_FAMILY or len(reply) < _UID_AT + 4:
        raise OSError("unexpected sock_diag reply")
    return int(struct.unpack_from("=I", reply, _UID_AT)[0])


def _table_uid(peer: tuple[str, int], here: tuple[str, int]) -> int | None:
    """The uid column of the table's row whose local address is PEER and remote one HERE: one
    read of one table and one search of its bytes."""
    family, local = _field(*peer)
    _family, remote = _field(*here)
    try:
        with open(TABLES[family], "rb") as table:
            data = table.read()
    except OSError as exc:
        if exc.errno in OUT_OF_DESCRIPTORS:
            raise
        return None
    at = data.find(f" {local} {remote} ".encode())
    if at < 0:
        return None
    row = data[at : data.find(b"\n", at)].split()
    # local, remote, st, tx_queue:rx_queue, tr:tm->when, retrnsmt, uid
    return int(row[6]) if len(row) > 6 else None
