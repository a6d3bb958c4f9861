"""Just enough of the DNS wire format (RFC 1035, RFC 3596) to read the answers tailscaled's own
resolver gives through its LocalAPI `dns-query`: A and AAAA records, CNAME chains, the rcode."""

from __future__ import annotations

import enum
import ipaddress
import struct
from dataclasses import dataclass


class QType(enum.IntEnum):
    A = 1
    CNAME = 5
    AAAA = 28


class RCode(enum.IntEnum):
    NOERROR = 0
    FORMERR = 1
    SERVFAIL = 2
    NXDOMAIN = 3
    NOTIMP = 4
    REFUSED = 5


# What a person reads: the names tailscale's CLI prints (`Response code: RCodeServerFailure`).
RCODE_TEXT = {
    RCode.NOERROR: "no error",
    RCode.FORMERR: "format error",
    RCode.SERVFAIL: "server failure",
    RCode.NXDOMAIN: "no such host",
    RCode.NOTIMP: "not implemented",
    RCode.REFUSED: "refused",
}


class DNSFormatError(ValueError):
    """The bytes are not a DNS message this parser understands."""


@dataclass(frozen=True)
class Record:
    name: str
    rtype: int
    ttl: int
    value: str  # an address for A/AAAA, the target name for CNAME, hex otherwise


@dataclass(frozen=True)
class Message:
    rcode: int
    answers: tuple[Record, ...]

    @property
    def rcode_text(self) -> str:
        try:
            return RCODE_TEXT[RCode(self.rcode)]
        except ValueError:
            return f"rcode {self.rcode}"

    def addresses(self, name: str) -> list[str]:
        """The A/AAAA addresses of NAME, following CNAMEs (at most 8 hops: no loop runs away)."""
        wanted = _canonical(name)
        for _ in range(8):
            found = [r.value for r in self.answers
                     if r.name == wanted and r.rtype in (QType.A, QType.AAAA)]  # fmt: skip
            if found:
                return found
            alias = next((r.value for r in self.answers
                          if r.name == wanted and r.rtype == QType.CNAME), None)  # fmt: skip
            if alias is None:
                return []
            wanted = alias
        return []


def _canonical(name: str) -> str:
    return name.rstrip(".").lower()


def _read_name(data: bytes, offset: int) -> tuple[str, int]:
    """A possibly compressed name at OFFSET; the offset just past it in the original stream."""
    labels: list[str] = []
    end: int | None = None
    for _ in range(128):  # bounds compression-pointer loops
        if offset >= len(data):
            raise DNSFormatError("name runs past the end of the message")
        length = data[offset]
        if length & 0xC0 == 0xC0:
            if offset + 1 >= len(data):
                raise DNSFormatError("truncated compression pointer")
            if end is None:
                end = offset + 2
            offset = ((length & 0x3F) << 8) | data[offset + 1]
            continue
        if length & 0xC0:
            raise DNSFormatError(f"unsupported label type 0x{length:02x}")
        offset += 1
        if length == 0:
            return ".".join(labels).lower(), end if end is not None else offset
        if offset + length > len(data):
            raise DNSFormatError("label runs past the end of the message")
        labels.append(data[offset : offset + length].decode("ascii", "replace"))
        offset += length
    raise DNSFormatError("compression pointer loop")


def _rdata_text(data: bytes, rtype: int, start: int, length: int) -> str:
    rdata = data[start : start + length]
    if rtype == QType.A and length == 4:
        return str(ipaddress.IPv4Address(rdata))
    if rtype == QType.AAAA and length == 16:
        return str(ipaddress.IPv6Address(rdata))
    if rtype == QType.CNAME:
        return _read_name(data, start)[0]
    return rdata.hex()


def parse(data: bytes) -> Message:
    """Parse a DNS response; raises DNSFormatError on anything malformed."""
    if len(data) < 12:
        raise DNSFormatError("shorter than a DNS header")
    _id, flags, qdcount, ancount, _ns, _ar = struct.unpack(">HHHHHH", data[:12])
    if not flags & 0x8000:
        raise DNSFormatError("not a response")
    offset = 12
    for _ in range(qdcount):
        offset = _read_name(data, offset)[1] + 4
    answers = []
    for _ in range(ancount):
        name, offset = _read_name(data, offset)
        if offset + 10 > len(data):
            raise DNSFormatError("truncated resource record")
        rtype, _class, ttl, rdlength = struct.unpack(">HHIH", data[offset : offset + 10])
        offset += 10
        if offset + rdlength > len(data):
            raise DNSFormatError("record data runs past the end of the message")
        answers.append(Record(name, rtype, ttl, _rdata_text(data, rtype, offset, rdlength)))
        offset += rdlength
    return Message(flags & 0x000F, tuple(answers))


def encode_name(name: str) -> bytes:
    """NAME as uncompressed labels (used by tests and by the fake tailscaled's twin)."""
    out = b""
    for label in _canonical(name).split("."):
        if label:
            raw = label.encode("ascii")
            if len(raw) > 63:
                raise DNSFormatError(f"label longer than 63 bytes: {label!r}")
            out += bytes([len(raw)]) + raw
    return out + b"\0"
