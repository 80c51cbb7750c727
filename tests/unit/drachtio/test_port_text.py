"""The SIP text the drachtio port builds (pure parts of engine/drachtio)."""

from __future__ import annotations

from engine.drachtio.dialogs import in_dialog_text
from engine.drachtio.legs import local_response, route_uri
from engine.drachtio.requests import response_text
from engine.drachtio.sip_text import SipText
from engine.sip.parser import parse_message

INVITE = (b"INVITE sip:1001@pbx.test SIP/2.0\r\n"
          b"Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK1\r\n"
          b"From: <sip:alice@pbx.test>;tag=a1\r\nTo: <sip:1001@pbx.test>\r\n"
          b"Call-ID: c1\r\nCSeq: 7 INVITE\r\nContact: <sip:alice@127.0.0.1:5062>\r\n"
          b"Content-Length: 0\r\n\r\n")


def test_response_copies_dialog_headers_and_takes_callers_over_them() -> None:
    req = parse_message(INVITE)
    text = response_text(req, 486, None, [("To", "<sip:1001@pbx.test>;tag=mine"),
                                          ("Via", "ignored"), ("X-Reason", "busy")],
                         b"", None, "DragonPBX")
    msg = SipText(text)
    assert msg.start_line == "SIP/2.0 486 Busy Here"
    assert msg.header("CSeq") == "7 INVITE" and msg.header("Call-ID") == "c1"
    assert msg.header_values("To") == ["<sip:1001@pbx.test>;tag=mine"]
    assert msg.header("Via") is None and msg.header("X-Reason") == "busy"
    assert msg.header("Server") == "DragonPBX" and msg.header("Content-Length") == "0"


def test_response_with_sdp_gets_its_content_type() -> None:
    req = parse_message(INVITE)
    msg = SipText(response_text(req, 200, "OK", [], b"v=0\r\n", "application/sdp", None))
    assert msg.header("Content-Type") == "application/sdp" and msg.body == "v=0\r\n"
    assert msg.header("Server") is None


def test_in_dialog_request_uses_the_placeholder_uri_and_drops_route_headers() -> None:
    msg = SipText(in_dialog_text("INFO", [("Route", "<sip:x>"), ("X-A", "1")],
                                    b"Signal=5", "application/dtmf-relay"))
    assert msg.start_line == "INFO sip:placeholder SIP/2.0"
    assert msg.header("Route") is None and msg.header("X-A") == "1"
    assert msg.header("Content-Type") == "application/dtmf-relay"


def test_route_uri_is_a_full_sip_uri_keeping_the_transport() -> None:
    assert route_uri(None, "sip:a@b") is None
    assert route_uri("127.0.0.1:5070", "sip:a@b") == "sip:127.0.0.1:5070"
    assert route_uri("sip:127.0.0.1:5070", "sip:a@127.0.0.1:5070;transport=tcp") == \
        "sip:127.0.0.1:5070;transport=tcp"
    assert route_uri("<sip:p;transport=udp>", "sip:a@b;transport=tcp") == \
        "sip:p;transport=udp"


def test_local_response_looks_like_one_from_the_network() -> None:
    resp = local_response(408, None, parse_message(INVITE))
    assert resp.status == 408 and resp.reason == "Request Timeout"
    assert resp.header("Call-ID") == "c1" and resp.header("CSeq") == "7 INVITE"
