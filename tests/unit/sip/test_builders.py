"""Request/response builders, serialisation and header mutation."""

from __future__ import annotations

import random

import pytest

from engine.sip.builders import (
    IdGenerator,
    format_name_addr,
    make_request,
    make_response,
    reason_phrase,
)
from engine.sip.errors import SipParseError
from engine.sip.message import SipRequest, SipResponse
from engine.sip.parser import parse_message
from tests.unit.sip._util import BASIC_INVITE, raw


def test_make_response_copies_dialog_headers_and_adds_tag() -> None:
    inv = parse_message(raw(
        "INVITE sip:bob@example.com SIP/2.0",
        "Via: SIP/2.0/UDP p1.example.com;branch=z9hG4bKp1",
        "Via: SIP/2.0/UDP a.example.com;branch=z9hG4bKa;received=192.0.2.1",
        "Record-Route: <sip:p1.example.com;lr>",
        "From: Alice <sip:alice@example.com>;tag=a1",
        "To: Bob <sip:bob@example.com>",
        "Call-ID: c1", "CSeq: 5 INVITE", "Max-Forwards: 69",
        "Contact: <sip:alice@192.0.2.1>"))
    assert isinstance(inv, SipRequest)
    ringing = make_response(inv, 180, to_tag="b1")
    assert ringing.reason == "Ringing"
    out = parse_message(ringing.to_bytes())
    assert isinstance(out, SipResponse)
    assert [v.branch for v in out.vias] == ["z9hG4bKp1", "z9hG4bKa"]
    assert out.to_tag == "b1" and out.from_tag == "a1"
    assert out.cseq.seq == 5 and out.call_id == "c1"
    assert out.header("record-route") == "<sip:p1.example.com;lr>"
    assert not out.has("contact") and not out.has("max-forwards")
    trying = make_response(inv, 100, to_tag="b1")
    assert trying.to_tag is None  # no tag on 100 (§8.2.6.2)
    # REGISTER responses carry no Record-Route; headers given override copies
    ok = make_response(inv, 200, "Fine", headers=[("Contact", "<sip:bob@192.0.2.2>")],
                       body=b"v=0\r\n", content_type="application/sdp", to_tag="b1")
    data = ok.to_bytes()
    assert data.startswith(b"SIP/2.0 200 Fine\r\n")
    assert b"Content-Length: 5\r\n\r\nv=0\r\n" in data


def test_make_response_keeps_existing_to_tag() -> None:
    req = parse_message(raw(
        "BYE sip:bob@example.com SIP/2.0", "Via: SIP/2.0/UDP h;branch=z9hG4bK1",
        "From: <sip:alice@example.com>;tag=a1", "To: <sip:bob@example.com>;tag=b1",
        "Call-ID: c1", "CSeq: 6 BYE"))
    assert make_response(req, 200, to_tag="zzz").to_tag == "b1"


def test_make_request_and_serialise_roundtrip() -> None:
    req = make_request(
        "REGISTER", "sip:example.com",
        via="SIP/2.0/UDP 192.0.2.5:5060;branch=z9hG4bKx;rport",
        from_=format_name_addr("sip:alice@example.com", "Alice Smith", tag="t1"),
        to=format_name_addr("sip:alice@example.com"),
        call_id="cid", cseq=7, contact="<sip:alice@192.0.2.5>;expires=60",
        headers={"Expires": "60", "User-Agent": "DragonPBX"},
    )
    data = req.to_bytes()
    assert data.endswith(b"Content-Length: 0\r\n\r\n")
    m = parse_message(data)
    assert m.method == "REGISTER" and m.cseq.seq == 7 and m.cseq.method == "REGISTER"
    assert m.from_.display_name == "Alice Smith" and m.from_tag == "t1"
    assert m.contacts[0].params == {"expires": "60"}
    assert m.header("user-agent") == "DragonPBX"
    assert m.max_forwards == 70


def test_header_injection_refused() -> None:
    with pytest.raises(SipParseError):
        make_request("OPTIONS", "sip:a@b", from_="<sip:x@y>;tag=1", to="<sip:a@b>",
                     call_id="c", cseq=1, headers=[("X-Evil", "a\r\nVia: injected")])


def test_serialisation_replaces_content_length() -> None:
    m = parse_message(BASIC_INVITE)
    m.body = b"v=0\r\n"
    data = m.to_bytes()
    assert data.count(b"Content-Length") == 1
    assert b"Content-Length: 5\r\n" in data
    assert parse_message(data).body == b"v=0\r\n"


def test_header_mutation_keeps_index_and_cache_right() -> None:
    m = parse_message(BASIC_INVITE)
    assert m.top_via.branch == "z9hG4bK776asdhds"
    m.add_header("Via", "SIP/2.0/TCP proxy.example.com;branch=z9hG4bKnew", first=True)
    assert m.top_via.branch == "z9hG4bKnew"
    assert len(m.vias) == 2
    via = m.top_via
    via.params["received"] = "192.0.2.9"
    m.set_top_value("via", str(via))
    assert parse_message(m.to_bytes()).top_via.received == "192.0.2.9"
    popped = m.pop_top_value("Via")
    assert popped == "SIP/2.0/TCP proxy.example.com;branch=z9hG4bKnew;received=192.0.2.9"
    assert m.top_via.branch == "z9hG4bK776asdhds"
    m.set_header("Max-Forwards", "10")
    assert m.max_forwards == 10
    assert m.remove_header("contact") == 1
    assert m.contacts == []
    m.set_header("To", "<sip:bob@biloxi.example.com>;tag=zz")
    assert m.to_tag == "zz"


def test_set_top_value_on_comma_joined_line() -> None:
    m = parse_message(raw(
        "OPTIONS sip:a@example.com SIP/2.0",
        "Via: SIP/2.0/UDP one;branch=z9hG4bK1, SIP/2.0/UDP two;branch=z9hG4bK2",
        "From: <sip:b@example.com>;tag=1", "To: <sip:a@example.com>", "Call-ID: x",
        "CSeq: 1 OPTIONS"))
    m.set_top_value("Via", "SIP/2.0/UDP one;branch=z9hG4bK1;received=1.2.3.4")
    assert [v.host for v in m.vias] == ["one", "two"]
    assert m.top_via.received == "1.2.3.4"


def test_id_generator_reproducible_and_shaped() -> None:
    a = IdGenerator(random.Random(7))
    b = IdGenerator(random.Random(7))
    assert [a.branch(), a.tag(), a.call_id(), a.cseq()] == [b.branch(), b.tag(), b.call_id(),
                                                            b.cseq()]
    real = IdGenerator()
    br = real.branch()
    assert br.startswith("z9hG4bK") and len(br) == 7 + 16
    assert real.tag() != real.tag()
    assert 1 <= real.cseq() <= 2**30


def test_reason_phrases() -> None:
    assert reason_phrase(487) == "Request Terminated"
    assert reason_phrase(499) == "Bad Request"
    assert reason_phrase(299) == "OK"


def test_copy_is_independent() -> None:
    m = parse_message(BASIC_INVITE)
    assert isinstance(m, SipRequest)
    c = m.copy()
    c.set_header("CSeq", "314160 INVITE")
    c.uri = "sip:other@example.com"
    assert m.cseq.seq == 314159 and c.cseq.seq == 314160
    assert m.uri == "sip:bob@biloxi.example.com"
    assert c.request_uri.user == "other"
