"""What the MediaPort sends to RTPEngine, case by case (pure builders)."""

from __future__ import annotations

import random
import re
from typing import Any

import pytest

from engine.media.commands import (
    address_options,
    answer_body,
    delete_body,
    dummy_sdp,
    offer_body,
    play_dtmf_body,
    play_media_body,
    query_body,
    stop_media_body,
)
from engine.rtpengine.errors import InvalidMediaRequest

SDP = b"v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 30000 RTP/AVP 0\r\n"
NATTED = b"v=0\r\nc=IN IP4 192.168.1.20\r\nm=audio 30000 RTP/AVP 0\r\n"


def test_plain_offer() -> None:
    assert offer_body(call_id="c1", from_tag="a", sdp=SDP) == {
        "command": "offer", "call-id": "c1", "from-tag": "a", "sdp": SDP,
        "flags": ["trust-address", "inject-DTMF"],
        "replace": ["origin", "session-connection"],
        "ICE": "remove", "transport-protocol": "RTP/AVP",
    }


def test_b_leg_offer_with_codecs_and_branch() -> None:
    body = offer_body(call_id="c1", from_tag="a", sdp=SDP,
                      codec={"mask": ["PCMU"], "transcode": ["G722", "telephone-event"]},
                      branch="z9hG4bK-1")
    assert body["codec"] == {"mask": ["PCMU"], "transcode": ["G722", "telephone-event"]}
    assert body["via-branch"] == "z9hG4bK-1"


def test_offer_sdp_given_as_text_is_sent_as_bytes() -> None:
    assert offer_body(call_id="c", from_tag="a", sdp=SDP.decode())["sdp"] == SDP


def test_answer() -> None:
    assert answer_body(call_id="c1", from_tag="a", to_tag="b", sdp=SDP, branch="br") == {
        "command": "answer", "call-id": "c1", "from-tag": "a", "to-tag": "b", "sdp": SDP,
        "flags": ["trust-address", "inject-DTMF"],
        "replace": ["origin", "session-connection"], "ICE": "remove", "via-branch": "br",
    }
    assert "via-branch" not in answer_body(call_id="c1", from_tag="a", to_tag="b", sdp=SDP)
    assert "transport-protocol" not in answer_body(call_id="c", from_tag="a", to_tag="b",
                                                   sdp=SDP)


ADDRESS = [
    # sdp, received_from, expected
    (SDP, None, {"flag": "trust-address"}),
    (NATTED, None, {"flag": "trust-address"}),
    # phone behind NAT: private SDP address, public SIP source
    (NATTED, "81.2.69.160",
     {"flag": "SIP-source-address", "received-from": ["IP4", "81.2.69.160"]}),
    (b"c=IN IP4 100.64.3.4\r\n", "9.9.9.9",
     {"flag": "SIP-source-address", "received-from": ["IP4", "9.9.9.9"]}),
    # documentation ranges are not routable either
    (NATTED, "203.0.113.7", {"flag": "trust-address"}),
    (b"c=IN IP6 fd00::5\r\n", "2001:db8::1", {"flag": "trust-address"}),
    (b"c=IN IP6 fd00::5\r\n", "2a00:1450::1",
     {"flag": "SIP-source-address", "received-from": ["IP6", "2a00:1450::1"]}),
    # both private (a LAN deployment): trust the SDP
    (NATTED, "192.168.1.1", {"flag": "trust-address"}),
    # public SDP address: trust it (media server separate from signalling)
    (b"c=IN IP4 1.1.1.1\r\n", "81.2.69.160", {"flag": "trust-address"}),
    # hold (0.0.0.0) must not be rewritten
    (b"c=IN IP4 0.0.0.0\r\n", "81.2.69.160", {"flag": "trust-address"}),
    # a hostname in c=: leave it to the daemon
    (b"c=IN IP4 media.example.com\r\n", "81.2.69.160", {"flag": "trust-address"}),
    # no c= line at all
    (b"v=0\r\n", "81.2.69.160", {"flag": "trust-address"}),
    # one of several c= lines public: trust
    (b"c=IN IP4 10.0.0.1\r\nc=IN IP4 8.8.8.8\r\n", "81.2.69.160",
     {"flag": "trust-address"}),
]


@pytest.mark.parametrize(("sdp", "source", "expected"), ADDRESS)
def test_address_options(sdp: bytes, source: str | None, expected: dict[str, Any]) -> None:
    assert address_options(sdp, source) == expected


def test_received_from_reaches_offer_and_answer() -> None:
    offer = offer_body(call_id="c", from_tag="a", sdp=NATTED, received_from="81.2.69.160")
    assert offer["flags"] == ["SIP-source-address", "inject-DTMF"]
    assert offer["received-from"] == ["IP4", "81.2.69.160"]
    answer = answer_body(call_id="c", from_tag="a", to_tag="b", sdp=NATTED,
                         received_from="81.2.69.160")
    assert answer["received-from"] == ["IP4", "81.2.69.160"]


def test_bad_received_from() -> None:
    with pytest.raises(InvalidMediaRequest):
        address_options(NATTED, "not-an-ip")


def test_delete_query_stop() -> None:
    assert delete_body(call_id="c") == {"command": "delete", "call-id": "c"}
    assert delete_body(call_id="c", from_tag="a") == {"command": "delete", "call-id": "c",
                                                      "from-tag": "a"}
    assert query_body(call_id="c") == {"command": "query", "call-id": "c"}
    assert stop_media_body(call_id="c", from_tag="a") == {
        "command": "stop media", "call-id": "c", "from-tag": "a"}


PLAY = [
    ({"file": "/m/uk.wav"}, {"file": "/m/uk.wav"}),
    ({"file": "/m/uk.wav", "repeat": 600}, {"file": "/m/uk.wav", "repeat-times": 600}),
    ({"blob": b"RIFF"}, {"blob": b"RIFF"}),
]


@pytest.mark.parametrize(("kwargs", "extra"), PLAY)
def test_play_media(kwargs: dict[str, Any], extra: dict[str, Any]) -> None:
    assert play_media_body(call_id="c", from_tag="a", **kwargs) == {
        "command": "play media", "call-id": "c", "from-tag": "a", **extra}


@pytest.mark.parametrize("kwargs", [
    {}, {"file": "/a", "blob": b"x"}, {"file": "uk.wav"}, {"blob": b""},
    {"file": "/a", "repeat": 0},
])
def test_play_media_rejects(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidMediaRequest):
        play_media_body(call_id="c", from_tag="a", **kwargs)


DTMF = [
    ("5", 250, "5", 250),
    ("*", 100, "*", 100),
    ("#", 100, "#", 100),
    ("a", 100, "A", 100),
    ("D", 100, "D", 100),
    (11, 100, 11, 100),
    ("1", 5, "1", 40),  # clamped, not refused: INFO durations come from the network
    ("1", 60000, "1", 5000),
]


@pytest.mark.parametrize(("code", "duration", "sent_code", "sent_duration"), DTMF)
def test_play_dtmf(code: str | int, duration: int, sent_code: str | int,
                   sent_duration: int) -> None:
    assert play_dtmf_body(call_id="c", from_tag="a", code=code, duration=duration) == {
        "command": "play DTMF", "call-id": "c", "from-tag": "a", "code": sent_code,
        "duration": sent_duration}


@pytest.mark.parametrize("code", ["", "55", "E", "x", 16, -1, True, None])
def test_play_dtmf_rejects(code: Any) -> None:
    with pytest.raises(InvalidMediaRequest):
        play_dtmf_body(call_id="c", from_tag="a", code=code)


def test_dummy_sdp_shape() -> None:
    sdp = dummy_sdp(rng=random.Random(1), now=1_700_000_000).decode()
    lines = sdp.split("\r\n")
    assert lines[0] == "v=0" and lines[-1] == ""
    assert re.fullmatch(r"o=- \d+ 1700000000 IN IP4 127\.0\.0\.1", lines[1])
    assert lines[2:5] == ["s=Dummy Session", "c=IN IP4 127.0.0.1", "t=0 0"]
    port = int(re.fullmatch(r"m=audio (\d+) RTP/AVP 0", lines[5]).group(1))  # type: ignore[union-attr]
    assert 50000 <= port <= 59998 and port % 2 == 0
    assert lines[6:8] == ["a=rtpmap:0 PCMU/8000", "a=sendonly"]
