"""Lenient SDP helpers: media, codecs, direction, hold, telephone-event."""

from __future__ import annotations

import pytest

from engine.sip.sdp import (
    SessionDescription,
    audio_codecs,
    has_telephone_event,
    hold_direction,
    is_on_hold,
    looks_like_sdp,
    parse_sdp,
    set_direction,
    unhold_direction,
)

OFFER = (
    b"v=0\r\n"
    b"o=alice 53655765 2353687637 IN IP4 192.0.2.10\r\n"
    b"s=-\r\n"
    b"c=IN IP4 192.0.2.10\r\n"
    b"t=0 0\r\n"
    b"m=audio 16000 RTP/AVP 8 0 18 101\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-15\r\n"
    b"a=fmtp:18 annexb=no\r\n"
    b"a=ptime:20\r\n"
    b"a=sendrecv\r\n"
    b"m=video 0 RTP/AVP 96\r\n"
    b"a=rtpmap:96 H264/90000\r\n"
)


def test_parse_media_and_codecs() -> None:
    sdp = parse_sdp(OFFER)
    assert [m.kind for m in sdp.media] == ["audio", "video"]
    audio = sdp.media[0]
    assert (audio.port, audio.proto, audio.formats) == (16000, "RTP/AVP", ["8", "0", "18", "101"])
    codecs = audio.codecs
    assert [(c.payload, c.name, c.clock_rate) for c in codecs] == [
        (8, "PCMA", 8000), (0, "PCMU", 8000), (18, "G729", 8000), (101, "telephone-event", 8000)]
    assert codecs[2].fmtp == "annexb=no" and codecs[3].fmtp == "0-15"
    assert audio.telephone_event == 101
    assert audio.direction == "sendrecv"
    assert sdp.connection == "192.0.2.10"
    assert audio.attributes("ptime") == ["20"]
    assert has_telephone_event(OFFER)
    assert [c.name for c in audio_codecs(OFFER)] == ["PCMA", "PCMU", "G729", "telephone-event"]


def test_round_trip_is_byte_exact_for_clean_sdp() -> None:
    assert parse_sdp(OFFER).to_bytes() == OFFER


def test_set_direction_for_hold_bumps_version() -> None:
    held = set_direction(OFFER, "sendonly")
    sdp = parse_sdp(held)
    assert [m.direction for m in sdp.media] == ["sendonly", "sendonly"]
    assert "o=alice 53655765 2353687638 IN IP4 192.0.2.10" in sdp.session
    assert is_on_hold(held)
    assert not is_on_hold(OFFER)
    # only audio, version untouched
    a_only = parse_sdp(set_direction(OFFER, "inactive", kinds=("audio",), bump_version=False))
    assert a_only.media[0].direction == "inactive" and a_only.media[1].direction is None
    assert "o=alice 53655765 2353687637 IN IP4 192.0.2.10" in a_only.session
    with pytest.raises(ValueError):
        set_direction(OFFER, "sideways")


def test_session_level_direction_and_old_style_hold() -> None:
    sdp = (b"v=0\no=- 1 1 IN IP4 0.0.0.0\ns=-\nc=IN IP4 0.0.0.0\nt=0 0\na=sendonly\n"
           b"m=audio 4000 RTP/AVP 0\n")
    parsed = SessionDescription.parse(sdp)
    assert parsed.direction == "sendonly"
    assert parsed.media_direction(parsed.media[0]) == "sendonly"
    assert is_on_hold(sdp)
    c0 = OFFER.replace(b"c=IN IP4 192.0.2.10", b"c=IN IP4 0.0.0.0")
    assert is_on_hold(c0)  # RFC 2543 hold
    moved = parse_sdp(set_direction(sdp, "sendrecv"))
    assert moved.direction is None and moved.media[0].direction == "sendrecv"


def test_hold_unhold_mapping() -> None:
    assert hold_direction("sendrecv") == "sendonly"
    assert hold_direction("recvonly") == "inactive"
    assert hold_direction("inactive") == "inactive"
    assert unhold_direction("sendonly") == "sendrecv"
    assert unhold_direction("inactive") == "recvonly"


def test_lenient_on_garbage() -> None:
    junk = b"v=0\r\nthis is not sdp\r\nm=audio notaport RTP/AVP x 0\r\na=rtpmap:bad\r\n\r\nm=\r\n"
    sdp = parse_sdp(junk)
    assert sdp.media[0].port == 0
    assert [c.name for c in sdp.media[0].codecs] == ["PCMU"]
    assert sdp.media[1].kind == ""
    assert "this is not sdp" in sdp.session
    assert not has_telephone_event(junk)
    assert audio_codecs(b"") == []
    assert not is_on_hold(b"")
    parse_sdp(b"\xff\xfe\x00garbage")  # never raises


def test_port_count_and_static_payloads() -> None:
    sdp = parse_sdp(b"v=0\r\nm=audio 5000/2 RTP/AVP 0 9\r\n")
    m = sdp.media[0]
    assert m.port == 5000 and m.port_count == 2
    assert m.mline() == "m=audio 5000/2 RTP/AVP 0 9"
    assert [c.name for c in m.codecs] == ["PCMU", "G722"]


def test_looks_like_sdp() -> None:
    assert looks_like_sdp(b"v=0\r\n")
    assert looks_like_sdp(b"\r\n v=0")
    assert not looks_like_sdp(b"Signal=1\r\nDuration=250\r\n")
