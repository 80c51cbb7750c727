"""Micro-benchmark of the SIP message hot path (parse, header access, serialise).

    .venv/bin/python bench/bench_sip_parse.py [--seconds 0.3] [--profile]

Prints messages/s and µs/op (best of a few repeats, so noise from other
processes on a shared machine inflates the figures less). ``--profile`` runs
cProfile over the REGISTER path: parse, access, digest parse, 200 OK build and
serialise — what the registrar does per request.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.ports import Peer
from engine.sip.builders import make_response
from engine.sip.digest import DigestAuthenticator, parse_credentials
from engine.sip.effects import RequestReceived, StartTimer
from engine.sip.endpoint import EndpointCore
from engine.sip.message import SipRequest
from engine.sip.parser import parse_message

INVITE = (
    "INVITE sip:2000@pbx.example.com:5060 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 192.0.2.10:5072;branch=z9hG4bK-4521-1-0;rport\r\n"
    'From: "Alice" <sip:alice@192.0.2.10>;tag=4521SIPpTag001\r\n'
    "To: <sip:2000@pbx.example.com:5060>\r\n"
    "Call-ID: 1-4521@192.0.2.10\r\n"
    "CSeq: 1 INVITE\r\n"
    "Contact: <sip:alice@192.0.2.10:5072;transport=UDP>\r\n"
    "Max-Forwards: 70\r\n"
    "User-Agent: SIPp/3.6.1\r\n"
    "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REFER, NOTIFY, UPDATE\r\n"
    "Supported: replaces, timer\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: {len}\r\n\r\n{body}"
)
SDP = (
    "v=0\r\no=alice 53655765 2353687637 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\n"
    "t=0 0\r\nm=audio 16000 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n"
)
INVITE_BYTES = INVITE.format(len=len(SDP), body=SDP).encode()

REGISTER_BYTES = (
    b"REGISTER sip:127.0.0.1:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5072;branch=z9hG4bK-4521-1-2\r\n"
    b"From: <sip:alice@127.0.0.1>;tag=4521SIPpTag001\r\n"
    b"To: <sip:alice@127.0.0.1>\r\n"
    b"Call-ID: 1-4521@127.0.0.1\r\n"
    b"CSeq: 2 REGISTER\r\n"
    b"Contact: <sip:alice@127.0.0.1:5072;transport=UDP>\r\n"
    b'Authorization: Digest username="alice",realm="pbx.test",cnonce="6b8b4567",nc=00000001,'
    b'qop=auth,uri="sip:127.0.0.1:5060",nonce="AAAAZ2NhbGxlZC1ieS1iZW5jaA.a1b2c3d4e5f6",'
    b'response="0123456789abcdef0123456789abcdef",algorithm=MD5\r\n'
    b"Max-Forwards: 70\r\n"
    b"Expires: 300\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def access_common(m: SipRequest) -> None:
    _ = (m.call_id, m.cseq.seq, m.top_via.branch, m.top_via.sent_by, m.from_tag, m.to_tag,
         m.request_uri.host, m.header("content-type"))


def access_register(m: SipRequest) -> None:
    access_common(m)
    _ = (m.contacts[0].uri, m.expires, m.header("authorization"), m.to.uri.user)


def bench(name: str, fn: Callable[[], object], seconds: float) -> None:
    # calibrate a loop count, then take the best of 5 runs
    n = 100
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t0
        if dt > seconds / 5:
            break
        n *= 2
    best = dt / n
    for _ in range(4):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    print(f"{name:<44} {1 / best:>12,.0f} msg/s {best * 1e6:>9.2f} µs/op")


def register_path() -> bytes:
    """What the registrar does per REGISTER, minus the webhook and the store."""
    m = parse_message(REGISTER_BYTES)
    assert isinstance(m, SipRequest)
    access_register(m)
    parse_credentials(m.header("authorization") or "")
    resp = make_response(m, 200, headers=[("Contact", "<sip:alice@127.0.0.1:5072>;expires=300")],
                         to_tag="a1b2c3")
    return resp.to_bytes()


class EndpointRegister:
    """REGISTER through the endpoint core: datagram in → transaction → registrar
    work (access, digest parse+verify) → 200 OK bytes out; timer J is fired at
    once so the tables stay small (a long run keeps 32 s of them alive)."""

    def __init__(self) -> None:
        self.core = EndpointCore(sent_by={"udp": ("127.0.0.1", 5060)})
        self.auth = DigestAuthenticator("bench-secret")
        self.source = Peer("127.0.0.1", 5072, "udp")
        self.n = 0
        nonce = self.auth.make_nonce("pbx.test")
        self.data = REGISTER_BYTES.replace(
            b"AAAAZ2NhbGxlZC1ieS1iZW5jaA.a1b2c3d4e5f6", nonce.encode())

    def __call__(self) -> None:
        self.n += 1
        data = self.data.replace(b"z9hG4bK-4521-1-2", b"z9hG4bK-%d" % self.n)
        ev = self.core.receive_bytes(data, self.source, 0.0)[-1]
        assert isinstance(ev, RequestReceived) and ev.tx is not None
        req = ev.request
        access_register(req)
        creds = parse_credentials(req.header("authorization") or "")
        self.auth.check_static(creds, realm="pbx.test")
        _, effects = self.core.respond(
            ev.tx, 200, headers=[("Contact", "<sip:alice@127.0.0.1:5072>;expires=300")])
        for e in effects:
            if isinstance(e, StartTimer):
                self.core.timer_fired(e.timer_id, 32.0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=0.3, help="per measurement")
    ap.add_argument("--profile", action="store_true", help="cProfile the REGISTER path")
    args = ap.parse_args()

    inv = parse_message(INVITE_BYTES)
    reg = parse_message(REGISTER_BYTES)
    assert isinstance(inv, SipRequest) and isinstance(reg, SipRequest)

    def parse_access_invite() -> None:
        access_common(parse_message(INVITE_BYTES))  # type: ignore[arg-type]

    def parse_access_register() -> None:
        access_register(parse_message(REGISTER_BYTES))  # type: ignore[arg-type]

    print(f"python {sys.version.split()[0]}; INVITE {len(INVITE_BYTES)} B, "
          f"REGISTER {len(REGISTER_BYTES)} B")
    bench("parse INVITE+SDP", lambda: parse_message(INVITE_BYTES), args.seconds)
    bench("parse+access INVITE+SDP", parse_access_invite, args.seconds)
    bench("serialise INVITE+SDP (parsed)", inv.to_bytes, args.seconds)
    bench("parse REGISTER+Authorization", lambda: parse_message(REGISTER_BYTES), args.seconds)
    bench("parse+access REGISTER+Authorization", parse_access_register, args.seconds)
    bench("serialise REGISTER (parsed)", reg.to_bytes, args.seconds)
    bench("make_response 200 + serialise (REGISTER)",
          lambda: make_response(reg, 200, to_tag="a1b2c3").to_bytes(), args.seconds)
    bench("full REGISTER path (parse→digest→200 bytes)", register_path, args.seconds)
    bench("endpoint REGISTER (datagram→transaction→200)", EndpointRegister(), args.seconds)

    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(20000):
            register_path()
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
