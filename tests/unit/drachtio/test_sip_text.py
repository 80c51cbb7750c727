"""The SIP text view and builder used inside ``sip`` frames (spec §4.3, §6)."""

from __future__ import annotations

import pytest

from engine.drachtio.wire import InvalidToken, SipText, build_sip_message


def test_headers_are_found_case_insensitively_and_by_compact_form() -> None:
    msg = SipText("INVITE sip:b@h SIP/2.0\r\ni: abc\r\nf: <sip:a@h>;tag=1\r\n"
                     "Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\nv: SIP/2.0/UDP g;branch=z9hG4bK2\r\n"
                     "X-Custom:  spaced  \r\nbroken line\r\n\r\n")
    assert msg.header("Call-ID") == "abc"
    assert msg.header("from") == "<sip:a@h>;tag=1"
    assert msg.header_values("VIA") == ["SIP/2.0/UDP h;branch=z9hG4bK1",
                                        "SIP/2.0/UDP g;branch=z9hG4bK2"]
    assert msg.header("x-custom") == "spaced"
    assert msg.header("Missing") is None
    assert len(msg.headers) == 5  # the line without ':' is skipped, as the server does


def test_body_keeps_crlf_and_empty_lines() -> None:
    body = "v=0\r\n\r\no=- 1 1 IN IP4 127.0.0.1\r\n"
    msg = SipText("SIP/2.0 200 OK\r\nContent-Type: application/sdp\r\n\r\n" + body)
    assert msg.body == body
    assert msg.status == 200 and msg.reason == "OK" and not msg.is_request
    assert SipText("MESSAGE sip:a SIP/2.0\r\n\r\nhello").body == "hello"
    assert SipText("OPTIONS sip:a SIP/2.0").body == "" and not SipText(
        "OPTIONS sip:a SIP/2.0").headers


def test_cseq_method_tells_update_answers_apart() -> None:
    assert SipText("SIP/2.0 200 OK\r\nCSeq: 4 update\r\n\r\n").cseq_method == "UPDATE"
    assert SipText("SIP/2.0 200 OK\r\n\r\n").cseq_method is None


def test_build_sip_message_counts_body_bytes_and_drops_a_given_content_length() -> None:
    text = build_sip_message("MESSAGE sip:a@h SIP/2.0",
                             [("Content-Type", "text/plain"), ("Content-Length", "999")], "Grüße")
    assert text == ("MESSAGE sip:a@h SIP/2.0\r\nContent-Type: text/plain\r\n"
                    "Content-Length: 7\r\n\r\nGrüße")
    assert SipText(text).body == "Grüße"
    assert build_sip_message("SIP/2.0 200 OK", body=b"\xff\x00").endswith("\r\n\r\n\udcff\x00")


@pytest.mark.parametrize(("start", "headers"), [
    ("OPTIONS sip:a SIP/2.0\r\nX: y", []),
    ("OPTIONS sip:a SIP/2.0", [("X-A", "1\r\nInjected: yes")]),
    ("OPTIONS sip:a SIP/2.0", [("Bad:Name", "1")]),
    ("OPTIONS sip:a SIP/2.0", [("", "1")]),
])
def test_build_sip_message_refuses_header_injection(start: str, headers: list) -> None:
    with pytest.raises(InvalidToken):
        build_sip_message(start, headers)
