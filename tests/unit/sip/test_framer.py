"""TCP stream framing: partial reads, pipelining, keep-alives, errors."""

from __future__ import annotations

import pytest

from engine.sip.framer import FramedMessage, FramingError, KeepAlive, StreamFramer
from tests.unit.sip._util import BASIC_INVITE, SIPP_REGISTER, raw


def _messages(events: list) -> list:
    return [e.message for e in events if isinstance(e, FramedMessage)]


def test_pipelined_messages_in_one_segment() -> None:
    f = StreamFramer()
    events = f.feed(BASIC_INVITE + SIPP_REGISTER + BASIC_INVITE)
    msgs = _messages(events)
    assert [m.method for m in msgs] == ["INVITE", "REGISTER", "INVITE"]
    assert msgs[0].body.endswith(b"a=sendrecv\r\n")
    assert f.buffered == 0


def test_byte_by_byte_feed() -> None:
    f = StreamFramer()
    events = []
    for b in BASIC_INVITE + SIPP_REGISTER:
        events += f.feed(bytes([b]))
    msgs = _messages(events)
    assert [m.method for m in msgs] == ["INVITE", "REGISTER"]
    assert msgs[0].body == BASIC_INVITE.split(b"\r\n\r\n", 1)[1]


@pytest.mark.parametrize("cut", [1, 10, 100, len(BASIC_INVITE) - 5, len(BASIC_INVITE) - 1])
def test_partial_body_waits(cut: int) -> None:
    f = StreamFramer()
    assert f.feed(BASIC_INVITE[:cut]) == []
    events = f.feed(BASIC_INVITE[cut:])
    assert len(_messages(events)) == 1


def test_keepalive_ping_and_pong() -> None:
    f = StreamFramer()
    assert f.feed(b"\r\n\r\n") == [KeepAlive(True)]
    assert f.feed(b"\r\n") == [KeepAlive(False)]
    # a ping split across two reads is still recognised as a ping
    f2 = StreamFramer()
    assert f2.feed(b"\r\n") == [KeepAlive(False)]
    assert f2.feed(b"\r\n") == [KeepAlive(True)]
    # pings between pipelined messages
    events = StreamFramer().feed(b"\r\n\r\n" + SIPP_REGISTER + b"\r\n\r\n")
    assert events[0] == KeepAlive(True)
    assert isinstance(events[1], FramedMessage)
    assert events[2] == KeepAlive(True)


def test_stray_crlf_before_message_is_ignored() -> None:
    f = StreamFramer()
    events = f.feed(b"\r\n" + SIPP_REGISTER)
    assert isinstance(events[-1], FramedMessage)
    assert f.feed(b"\n\n\r" + SIPP_REGISTER)[-1].message.method == "REGISTER"


def test_unparseable_but_framed_message_is_not_fatal() -> None:
    bad = raw("OPTIONS sip:a@example.com SIP/2.0", "Via: SIP/2.0/UDP h;branch=z9hG4bK1",
              "From: <sip:b@example.com>;tag=1", "To: <sip:a@example.com>", "Call-ID: x",
              "CSeq: 1 INVITE")
    f = StreamFramer()
    events = f.feed(bad + SIPP_REGISTER)
    assert isinstance(events[0], FramingError) and not events[0].fatal
    assert events[0].error.can_reply
    assert isinstance(events[1], FramedMessage)
    assert not f.closed


def test_missing_content_length_means_empty_body() -> None:
    no_cl = raw("OPTIONS sip:a@example.com SIP/2.0", "Via: SIP/2.0/TCP h;branch=z9hG4bK1",
                "From: <sip:b@example.com>;tag=1", "To: <sip:a@example.com>", "Call-ID: x",
                "CSeq: 1 OPTIONS", cl=False)
    msgs = _messages(StreamFramer().feed(no_cl + SIPP_REGISTER))
    assert [m.method for m in msgs] == ["OPTIONS", "REGISTER"]


@pytest.mark.parametrize("cl", ["abc", "-1", "1 2", "99999999999"])
def test_bad_content_length_is_fatal_with_context(cl: str) -> None:
    data = raw("INVITE sip:a@example.com SIP/2.0", "Via: SIP/2.0/TCP h;branch=z9hG4bK1",
               "From: <sip:b@example.com>;tag=1", "To: <sip:a@example.com>", "Call-ID: x",
               "CSeq: 1 INVITE", f"Content-Length: {cl}", cl=False)
    f = StreamFramer()
    events = f.feed(data + SIPP_REGISTER)
    assert len(events) == 1
    err = events[0]
    assert isinstance(err, FramingError) and err.fatal
    assert err.error.can_reply
    assert f.closed
    assert f.feed(SIPP_REGISTER) == []


def test_conflicting_content_lengths_fatal() -> None:
    data = raw("INVITE sip:a@example.com SIP/2.0", "Via: SIP/2.0/TCP h;branch=z9hG4bK1",
               "l: 5", "Content-Length: 7", cl=False)
    events = StreamFramer().feed(data)
    assert isinstance(events[0], FramingError) and events[0].fatal
    assert "Multiple" in events[0].error.reason


def test_oversize_header_section_fatal() -> None:
    f = StreamFramer(max_message=4096)
    events = f.feed(b"INVITE sip:a@example.com SIP/2.0\r\nX: " + b"a" * 5000)
    assert isinstance(events[0], FramingError) and events[0].fatal
    assert events[0].error.status == 513


def test_oversize_body_fatal() -> None:
    data = raw("MESSAGE sip:a@example.com SIP/2.0", "Via: SIP/2.0/TCP h;branch=z9hG4bK1",
               "From: <sip:b@example.com>;tag=1", "To: <sip:a@example.com>", "Call-ID: x",
               "CSeq: 1 MESSAGE", cl=100000)
    events = StreamFramer().feed(data)
    assert isinstance(events[0], FramingError) and events[0].fatal
    assert events[0].error.status == 513
    assert events[0].error.can_reply


def test_compact_content_length_frames() -> None:
    data = raw("MESSAGE sip:a@example.com SIP/2.0", "Via: SIP/2.0/TCP h;branch=z9hG4bK1",
               "From: <sip:b@example.com>;tag=1", "To: <sip:a@example.com>", "Call-ID: x",
               "CSeq: 1 MESSAGE", "l: 3", cl=False, body=b"abc")
    msgs = _messages(StreamFramer().feed(data + data))
    assert [m.body for m in msgs] == [b"abc", b"abc"]
