"""bencode and ng message framing: tables of (input, expected)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.rtpengine.errors import NgProtocolError
from engine.rtpengine.ng import (
    MAX_DATAGRAM,
    BencodeError,
    bdecode,
    bencode,
    decode_message,
    encode_message,
    split_cookie,
)

ENCODE = [
    (0, b"i0e"),
    (-42, b"i-42e"),
    (2**70, b"i1180591620717411303424e"),
    ("", b"0:"),
    ("ping", b"4:ping"),
    ("é", b"2:\xc3\xa9"),
    (b"\x00\xff", b"2:\x00\xff"),
    ([], b"le"),
    (["a", 1, ["b"]], b"l1:ai1el1:bee"),
    (("x",), b"l1:xe"),
    ({}, b"de"),
    ({"command": "ping"}, b"d7:command4:pinge"),
    # keys are emitted sorted by their bytes, whatever the insertion order
    ({"sdp": "v=0", "call-id": "c", "flags": ["trust-address"]},
     b"d7:call-id1:c5:flagsl13:trust-addresse3:sdp3:v=0e"),
    ({b"b": 1, "a": 2}, b"d1:ai2e1:bi1ee"),
    ("\udcff", b"1:\xff"),  # surrogateescape'd byte goes back out as the byte
    # non-ASCII keys sort by their UTF-8 (surrogateescape) bytes, not by code point:
    # U+DCFF goes out as 0xff, after é (0xc3 0xa9), though its code point sorts first
    ({"\udcff": 1, "\u00e9": 2, "z": 3}, b"d1:zi3e2:\xc3\xa9i2e1:\xffi1ee"),
    ({"a": b"\x00", "b": -1, "c": {"d": ("e", 2)}}, b"d1:a1:\x001:bi-1e1:cd1:dl1:ei2eeee"),
    (bytearray(b"ab"), b"2:ab"),
]


@pytest.mark.parametrize(("value", "expected"), ENCODE)
def test_encode(value: object, expected: bytes) -> None:
    assert bencode(value) == expected


@pytest.mark.parametrize("value", [True, None, 1.5, {1: "a"}, {"a": object()}, {"a", "b"}])
def test_encode_refuses_types_ng_does_not_have(value: object) -> None:
    with pytest.raises(BencodeError):
        bencode(value)


def test_encode_refuses_duplicate_keys_after_encoding() -> None:
    with pytest.raises(BencodeError, match="duplicate"):
        bencode({"a": 1, b"a": 2})


def test_encode_refuses_deep_nesting() -> None:
    value: list = []
    for _ in range(40):
        value = [value]
    with pytest.raises(BencodeError, match="deep"):
        bencode(value)


DECODE = [
    (b"i0e", 0),
    (b"i-7e", -7),
    (b"0:", ""),
    (b"4:pong", "pong"),
    (b"le", []),
    (b"de", {}),
    (b"d6:result4:ponge", {"result": "pong"}),
    # unsorted keys are accepted (the daemon is lenient, so are we)
    (b"d1:bi1e1:ai2ee", {"b": 1, "a": 2}),
    (b"l4:spami42ee", ["spam", 42]),
    (b"d4:listl1:a1:be4:dictd1:ki0eee", {"list": ["a", "b"], "dict": {"k": 0}}),
    (b"2:\xc3\xa9", "é"),
    (b"1:\xff", "\udcff"),
]


@pytest.mark.parametrize(("data", "expected"), DECODE)
def test_decode(data: bytes, expected: object) -> None:
    assert bdecode(data) == expected


BAD = [
    (b"", "truncated"),
    (b"i12", "integer"),
    (b"ie", "integer"),
    (b"i01e", "integer"),
    (b"i-0e", "integer"),
    (b"i1.5e", "integer"),
    (b"i 1e", "integer"),
    (b"i1_0e", "integer"),
    (b"5:abc", "overruns"),
    (b"01:a", "leading zero"),
    (b"00:", "leading zero"),
    (b"3x:abc", "string length"),
    (b"l", "truncated"),
    (b"d1:a", "truncated"),
    (b"di1ei2ee", "not a string"),
    (b"x", "unexpected byte"),
    (b"i1ei2e", "trailing"),
    (b"4:pongX", "trailing"),
    (b"l" * 40 + b"e" * 40, "deep"),
]


@pytest.mark.parametrize(("data", "message"), BAD)
def test_decode_rejects(data: bytes, message: str) -> None:
    with pytest.raises(BencodeError, match=message):
        bdecode(data)


def test_bencode_error_is_a_protocol_error() -> None:
    with pytest.raises(NgProtocolError):
        bdecode(b"x")


def test_sdp_bytes_round_trip_exactly() -> None:
    sdp = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=\xe2\x82\xac \xff\xfe\r\n"
    decoded = bdecode(bencode({"sdp": sdp}))["sdp"]
    assert decoded.encode("utf-8", "surrogateescape") == sdp


# The decoder reads at most 38 characters of an integer, sign included (a bound against
# hostile input; rtpengine's own integers are 64-bit), so the round trip is over that range.
_INTS = st.integers(min_value=-(10**37) + 1, max_value=10**37 - 1)
_values = st.recursive(
    _INTS | st.text() | st.binary().map(lambda b: b.decode("utf-8", "surrogateescape")),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(_values)
def test_round_trip_property(value: object) -> None:
    assert bdecode(bencode(value)) == value


# --------------------------------------------------------------------------- framing


def test_message_framing() -> None:
    datagram = encode_message("ab12_7", {"command": "ping"})
    assert datagram == b"ab12_7 d7:command4:pinge"
    assert decode_message(datagram) == ("ab12_7", {"command": "ping"})


def test_json_bodies_are_understood() -> None:
    assert decode_message(b'abc_2 {"result":"pong"}') == ("abc_2", {"result": "pong"})
    with pytest.raises(NgProtocolError, match="JSON"):
        decode_message(b"abc_2 {nope")


@pytest.mark.parametrize("datagram", [b"d6:result4:ponge", b" d6:result4:ponge", b""])
def test_datagram_without_cookie_is_refused(datagram: bytes) -> None:
    with pytest.raises(NgProtocolError, match="cookie"):
        split_cookie(datagram)


def test_body_must_be_a_dict() -> None:
    with pytest.raises(NgProtocolError, match="dictionary"):
        decode_message(b"c_1 li1ee")


@pytest.mark.parametrize("cookie", ["", "a b", "é"])
def test_bad_cookies_are_refused(cookie: str) -> None:
    with pytest.raises(ValueError):
        encode_message(cookie, {"command": "ping"})


def test_oversized_request_is_refused_before_sending() -> None:
    with pytest.raises(NgProtocolError, match="datagram"):
        encode_message("c_1", {"command": "offer", "sdp": "x" * MAX_DATAGRAM})


def test_json_and_bencode_decode_alike() -> None:
    body = {"result": "ok", "sdp": "v=0\r\n", "n": 3, "l": ["a"]}
    assert decode_message(b"c_1 " + json.dumps(body).encode())[1] == \
        decode_message(b"c_1 " + bencode(body))[1]


def test_widest_integers_round_trip() -> None:
    """38 digits either way, with the sign (found by the property test: the decoder's
    window had no room for the "-" of -10**37)."""
    for value in (10**37, -(10**37), 10**38 - 1, -(10**38 - 1)):
        assert bdecode(bencode({"n": value}))["n"] == value
