"""The DNS wire-format reader used on LocalAPI dns-query answers."""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path

import pytest

from spacetail.tailnet import dnsmsg
from spacetail.tailnet.dnsmsg import DNSFormatError, QType, encode_name, parse

REFERENCE = Path(__file__).resolve().parent.parent / "fakes" / "reference"


def rr(name: bytes, rtype: int, rdata: bytes, ttl: int = 60) -> bytes:
    return name + struct.pack(">HHIH", rtype, 1, ttl, len(rdata)) + rdata


def response(question: str, qtype: int, answers: list[bytes], rcode: int = 0) -> bytes:
    header = struct.pack(">HHHHHH", 7, 0x8180 | rcode, 1, len(answers), 0, 0)
    return header + encode_name(question) + struct.pack(">HH", qtype, 1) + b"".join(answers)


def test_a_and_aaaa_answers() -> None:
    name = encode_name("db.internal.example.com")
    msg = parse(response("db.internal.example.com", QType.A, [
        rr(name, QType.A, bytes([10, 0, 0, 5])),
        rr(name, QType.AAAA, bytes.fromhex("fd7a115ca1e000000000000000000008")),
    ]))  # fmt: skip
    assert msg.rcode == 0 and msg.rcode_text == "no error"
    assert msg.addresses("DB.internal.example.com.") == ["10.0.0.5", "fd7a:115c:a1e0::8"]


def test_cname_chain_with_compression_pointers() -> None:
    # The question's name sits at offset 12; answers point back at it (0xC00C) and at each other.
    head = struct.pack(">HHHHHH", 1, 0x8180, 1, 3, 0, 0)
    question = encode_name("www.example.com") + struct.pack(">HH", 1, 1)
    first = rr(b"\xc0\x0c", QType.CNAME, b"\x04edge\xc0\x10")  # edge.example.com
    edge_at = 12 + len(question) + 2 + 10  # where first's rdata ("edge"...) starts
    second = rr(struct.pack(">H", 0xC000 | edge_at), QType.CNAME, encode_name("last.example.net"))
    third = rr(encode_name("last.example.net"), QType.A, bytes([192, 0, 2, 9]))
    msg = parse(head + question + first + second + third)
    assert [r.value for r in msg.answers[:2]] == ["edge.example.com", "last.example.net"]
    assert msg.addresses("www.example.com") == ["192.0.2.9"]


def test_cname_loop_ends() -> None:
    a, b = encode_name("a.example"), encode_name("b.example")
    msg = parse(response("a.example", QType.A, [rr(a, QType.CNAME, b), rr(b, QType.CNAME, a)]))
    assert msg.addresses("a.example") == []


@pytest.mark.parametrize(
    ("rcode", "text"),
    [(3, "no such host"), (2, "server failure"), (5, "refused"), (9, "rcode 9")],
)
def test_rcode_text(rcode: int, text: str) -> None:
    assert parse(response("x.example", QType.A, [], rcode)).rcode_text == text


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00" * 11,
        struct.pack(">HHHHHH", 1, 0x0100, 0, 0, 0, 0),  # a query, not a response
        struct.pack(">HHHHHH", 1, 0x8180, 1, 0, 0, 0) + b"\x05ab",  # label past the end
        struct.pack(">HHHHHH", 1, 0x8180, 1, 0, 0, 0) + b"\xc0\x0c",  # pointer to itself
        struct.pack(">HHHHHH", 1, 0x8180, 0, 1, 0, 0) + b"\x00\x00\x01",  # truncated record
        struct.pack(">HHHHHH", 1, 0x8180, 0, 1, 0, 0) + b"\x00" + struct.pack(">HHIH", 1, 1, 0, 9),
        struct.pack(">HHHHHH", 1, 0x8180, 1, 0, 0, 0) + b"\x80x",  # reserved label type
    ],
)
def test_malformed_messages_raise(data: bytes) -> None:
    with pytest.raises(DNSFormatError):
        parse(data)


def test_the_real_1_96_4_answers_before_login_parse_as_servfail_without_answers() -> None:
    captured = json.loads((REFERENCE / "dns-query-needslogin.json").read_text())
    ok = [c for c in captured if c["status"] == 200]
    assert len(ok) == 3
    for entry in ok:
        msg = parse(base64.b64decode(json.loads(entry["body"])["Bytes"]))
        assert msg.rcode == dnsmsg.RCode.SERVFAIL and msg.answers == ()


def test_encode_name_rejects_a_long_label() -> None:
    with pytest.raises(DNSFormatError):
        encode_name("x" * 64 + ".example")
