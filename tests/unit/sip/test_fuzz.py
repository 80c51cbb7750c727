"""Fuzzing: mutated messages (bit flips, truncation, insertion, line shuffles) fed
to the parser, the structured accessors and the TCP framer. Only SipParseError
may come out. Bounded: a hypothesis run plus a time-boxed random loop."""

from __future__ import annotations

import random
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.sip.errors import SipParseError
from engine.sip.framer import FramedMessage, FramingError, KeepAlive, StreamFramer
from engine.sip.message import SipRequest
from engine.sip.parser import parse_message
from tests.unit.sip._util import BASIC_INVITE, SIPP_REGISTER, raw

CORPUS = [
    BASIC_INVITE,
    SIPP_REGISTER,
    raw("SIP/2.0 200 OK",
        "Via: SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK1;received=2001:db8::2;rport=1",
        'From: "A \\"q\\"" <sips:a%20b@example.com;transport=tls>;tag=1',
        "t: <tel:+1-555;phone-context=x>;tag=2", "i: c", "CSeq: 1 INVITE",
        "m: <sip:a@b>;expires=3, sip:c@d;q=0.1", "Record-Route: <sip:p;lr>,<sip:q;lr>",
        'WWW-Authenticate: Digest realm="r", nonce="n", qop="auth", algorithm=MD5'),
    raw("REGISTER sip:example.com SIP/2.0", "v: SIP / 2.0 / TCP h ; branch = z9hG4bK2",
        "f: sip:a@example.com;tag=1", "To:", " sip:a@example.com", "Call-ID: x",
        "CSeq: 9", "  REGISTER", "Contact: *", "Expires: 0"),
]

INTERESTING = ["²".encode(), "٣".encode(), b"\r\n", b"\r", b"\n", b":", b";", b",", b'"',
               b"<", b">", b"\\", b"%", b"@", b" ", b"\t", b"[", b"]", b"=", b"\x00", b"\xff",
               b"SIP/2.0", b"\r\n\r\n",
               b"Content-Length: 99999\r\n", b"l: -1\r\n", b"CSeq: 1\r\n", b"Via: x\r\n"]


def mutate(data: bytes, rng: random.Random, rounds: int) -> bytes:
    buf = bytearray(data)
    for _ in range(rounds):
        op = rng.randrange(7)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:  # bit flip
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1:  # truncate
            del buf[pos:]
        elif op == 2:  # insert an interesting token
            buf[pos:pos] = rng.choice(INTERESTING)
        elif op == 3:  # insert random bytes
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8)))
        elif op == 4 and buf:  # delete a span
            del buf[pos:pos + rng.randrange(1, 20)]
        elif op == 5:  # duplicate a line
            lines = bytes(buf).split(b"\r\n")
            i = rng.randrange(len(lines))
            lines.insert(i, lines[i])
            buf = bytearray(b"\r\n".join(lines))
        else:  # swap two lines
            lines = bytes(buf).split(b"\r\n")
            i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
            buf = bytearray(b"\r\n".join(lines))
        if not buf:
            break
    return bytes(buf)


def exercise(data: bytes) -> None:
    """Parse and touch every structured accessor; only SipParseError may escape."""
    try:
        m = parse_message(data)
    except SipParseError as err:
        assert err.reason
        # the parser's last-resort handler must never be what caught it
        assert err.reason != "Unparseable message", repr(err.__cause__)
        assert err.action in ("reply", "drop")
        return
    accessors = ["call_id", "cseq", "top_via", "vias", "from_", "to", "from_tag", "to_tag",
                 "contacts", "routes", "record_routes", "content_type", "expires",
                 "max_forwards", "contact_is_star"]
    if isinstance(m, SipRequest):
        accessors.append("request_uri")
    for name in accessors:
        try:
            value = getattr(m, name)
            # name-addr URIs are parsed lazily: touch them too
            for addr in value if isinstance(value, list) else [value]:
                if hasattr(addr, "uri_text"):
                    str(addr.uri)
                    addr.display_name  # noqa: B018
        except SipParseError:
            pass
    for h in ("via", "contact", "route", "authorization", "x-anything"):
        try:
            m.header_values(h)
        except SipParseError:
            pass
        m.header(h)
    m.to_bytes()


def exercise_framer(data: bytes, rng: random.Random) -> None:
    f = StreamFramer(max_message=8192)
    pos = 0
    while pos < len(data):
        step = rng.randrange(1, 200)
        for ev in f.feed(data[pos:pos + step]):
            assert isinstance(ev, (FramedMessage, KeepAlive, FramingError))
        pos += step


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(CORPUS), st.integers(0, 2**32), st.integers(1, 6))
def test_mutated_messages_only_raise_parse_errors(seed_msg: bytes, seed: int,
                                                  rounds: int) -> None:
    rng = random.Random(seed)
    data = mutate(seed_msg, rng, rounds)
    exercise(data)
    exercise_framer(data + seed_msg + data, rng)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_only_raise_parse_errors(data: bytes) -> None:
    exercise(data)
    exercise(b"INVITE sip:a@b SIP/2.0\r\n" + data)
    exercise_framer(data, random.Random(len(data)))


def test_time_boxed_random_mutation_loop() -> None:
    """A couple of seconds of seeded mutation, more volume than hypothesis above."""
    rng = random.Random(20240611)
    deadline = time.monotonic() + 2.0
    count = 0
    while time.monotonic() < deadline:
        seed_msg = rng.choice(CORPUS)
        data = mutate(seed_msg, rng, rng.randrange(1, 10))
        exercise(data)
        if count % 4 == 0:
            exercise_framer(data + seed_msg, rng)
        count += 1
    assert count > 50  # it ran (a loaded shared machine is slow; no timing claim)
