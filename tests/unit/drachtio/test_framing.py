"""Framing ``<length>#<payload>`` (spec §1.2): bytes, partial frames, several per chunk."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.drachtio.wire import (
    MAX_APP_PAYLOAD,
    DrachtioFramingError,
    DrachtioProtocolError,
    FrameDecoder,
    FrameTooLarge,
    build_authenticate,
    encode_frame,
    parse_server_frame,
)
from engine.errors import ProtocolError
from tests.unit.drachtio import spec_frames as spec


def test_spec_example_frame_round_trips() -> None:
    frame = spec.AUTH_FRAME.encode()
    assert encode_frame("1234|authenticate|cymru|") == frame
    assert build_authenticate("1234", "cymru") == frame
    assert FrameDecoder().feed(frame) == [b"1234|authenticate|cymru|"]


def test_length_counts_bytes_not_characters() -> None:
    payload = "x|sip||\r\nMESSAGE sip:a@b SIP/2.0\r\n\r\nGrüße …"
    frame = encode_frame(payload)
    assert frame.startswith(b"%d#" % len(payload.encode()))
    assert len(payload.encode()) != len(payload)
    assert FrameDecoder().feed(frame) == [payload.encode()]


def test_partial_frame_waits_for_the_rest_at_every_split_point() -> None:
    frame = spec.wire_text(spec.NEW_OPTIONS)
    data = encode_frame(frame, limit=None)
    for cut in range(len(data) + 1):
        decoder = FrameDecoder()
        first = decoder.feed(data[:cut])
        second = decoder.feed(data[cut:])
        assert first + second == [frame], cut
        assert decoder.buffered == 0


def test_byte_by_byte() -> None:
    payloads = [spec.wire_text(spec.AUTH_OK), spec.wire_text(spec.ACK)]
    data = b"".join(encode_frame(p, limit=None) for p in payloads)
    decoder = FrameDecoder()
    got = [f for i in range(len(data)) for f in decoder.feed(data[i:i + 1])]
    assert got == payloads


def test_several_frames_in_one_chunk_keep_their_order_and_a_trailing_partial() -> None:
    payloads = [spec.wire_text(p) for p in (spec.AUTH_OK, spec.NEW_OPTIONS, spec.PONG,
                                            spec.UNSOLICITED_BYE)]
    data = b"".join(encode_frame(p, limit=None) for p in payloads)
    tail = encode_frame(spec.wire_text(spec.PROXY_DONE), limit=None)
    decoder = FrameDecoder()
    assert decoder.feed(data + tail[:7]) == payloads
    assert decoder.feed(tail[7:]) == [spec.wire_text(spec.PROXY_DONE)]


def test_body_with_hash_crlf_and_digits_is_not_mistaken_for_frames() -> None:
    body = "12#34|sip|\r\n\r\n5#x|ping\r\n#\r\n99999#"
    payload = ("e1|sip|network|300|udp|127.0.0.1|16000|08:42:15.481787|t1|d1|\r\n"
               "MESSAGE sip:a@127.0.0.1 SIP/2.0\r\nContent-Type: text/plain\r\n\r\n" + body)
    data = encode_frame(payload, limit=None) * 2
    frames = FrameDecoder().feed(data)
    assert len(frames) == 2
    parsed = parse_server_frame(frames[1])
    assert parsed.message.body == body  # type: ignore[union-attr]


def test_binary_body_survives_tolerant_decoding() -> None:
    body = bytes(range(256))
    payload = (b"e1|sip|network|300|udp|127.0.0.1|16000|08:42:15.481787|t1|d1|\r\n"
               b"INFO sip:a@127.0.0.1 SIP/2.0\r\nContent-Type: application/octet-stream\r\n\r\n"
               + body)
    (frame,) = FrameDecoder().feed(encode_frame(payload, limit=None))
    assert parse_server_frame(frame).message.body_bytes == body  # type: ignore[union-attr]


def test_server_frames_have_no_size_limit() -> None:
    payload = b"s|response|m|OK\r\n" + b"v" * 1_000_000
    assert FrameDecoder().feed(encode_frame(payload, limit=None)) == [payload]


def test_app_frames_are_refused_above_the_server_ring_buffer() -> None:
    assert encode_frame(b"x" * MAX_APP_PAYLOAD)
    with pytest.raises(FrameTooLarge):
        encode_frame(b"x" * (MAX_APP_PAYLOAD + 1))


@pytest.mark.parametrize("data", [
    b"abc#x", b"-5#hello", b"+5#hello", b" 5#hello", b"5 #hello", b"0#", b"#5",
    b"1x#", b"12345678901234567890", b"\r\n5#hello", b"5#hello3x#y",
    b"99999999999#x",
])
def test_corrupt_length_prefixes_are_protocol_errors(data: bytes) -> None:
    decoder = FrameDecoder()
    with pytest.raises(DrachtioFramingError) as err:
        decoder.feed(data)
    assert isinstance(err.value, DrachtioProtocolError)
    assert isinstance(err.value, ProtocolError)
    with pytest.raises(DrachtioFramingError):  # the stream position is lost for good
        decoder.feed(b"4#ping")


def test_frames_before_the_corruption_are_handed_over() -> None:
    good = encode_frame(spec.wire_text(spec.PONG), limit=None)
    with pytest.raises(DrachtioFramingError) as err:
        FrameDecoder().feed(good + good + b"garbage#")
    assert err.value.frames == [spec.wire_text(spec.PONG)] * 2


def test_a_partial_prefix_is_not_an_error_yet() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"1") == []
    assert decoder.feed(b"2") == []
    assert decoder.feed(b"#abcdefghijkl") == [b"abcdefghijkl"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=8),
       st.lists(st.integers(min_value=0, max_value=4000), max_size=10))
def test_any_chunking_yields_the_same_frames(payloads: list[bytes], cuts: list[int]) -> None:
    data = b"".join(encode_frame(p, limit=None) for p in payloads)
    points = sorted({c % (len(data) + 1) for c in cuts})
    decoder = FrameDecoder()
    got: list[bytes] = []
    start = 0
    for point in [*points, len(data)]:
        got += decoder.feed(data[start:point])
        start = point
    assert got == payloads


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash_the_decoder(data: bytes) -> None:
    decoder = FrameDecoder()
    try:
        frames = decoder.feed(data)
    except DrachtioFramingError:
        return
    for frame in frames:
        try:
            parse_server_frame(frame)
        except DrachtioProtocolError:
            pass
