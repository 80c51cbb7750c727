"""Helpers shared by the SIP unit tests."""

from __future__ import annotations


def raw(*lines: str, body: bytes = b"", cl: bool | int = True) -> bytes:
    """Join header lines with CRLF, add Content-Length (unless ``cl`` is False or an
    explicit number) and the empty line, then the body."""
    head = list(lines)
    if cl is True:
        head.append(f"Content-Length: {len(body)}")
    elif cl is not False:
        head.append(f"Content-Length: {cl}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


BASIC_INVITE = raw(
    "INVITE sip:bob@biloxi.example.com SIP/2.0",
    "Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds",
    "Max-Forwards: 70",
    "To: Bob <sip:bob@biloxi.example.com>",
    'From: "Alice" <sip:alice@atlanta.example.com>;tag=1928301774',
    "Call-ID: a84b4c76e66710@pc33.atlanta.example.com",
    "CSeq: 314159 INVITE",
    "Contact: <sip:alice@pc33.atlanta.example.com>",
    "Content-Type: application/sdp",
    body=b"v=0\r\no=alice 2890844526 2890844526 IN IP4 pc33.atlanta.example.com\r\n"
    b"s=-\r\nc=IN IP4 192.0.2.101\r\nt=0 0\r\nm=audio 49172 RTP/AVP 0 8 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-15\r\na=sendrecv\r\n",
)

SIPP_REGISTER = raw(
    "REGISTER sip:127.0.0.1:5060 SIP/2.0",
    "Via: SIP/2.0/UDP 127.0.0.1:5072;branch=z9hG4bK-4521-1-2",
    "From: <sip:alice@127.0.0.1>;tag=4521SIPpTag001",
    "To: <sip:alice@127.0.0.1>",
    "Call-ID: 1-4521@127.0.0.1",
    "CSeq: 2 REGISTER",
    "Contact: <sip:alice@127.0.0.1:5072;transport=UDP>",
    'Authorization: Digest username="alice",realm="pbx.test",cnonce="6b8b4567",'
    'nc=00000001,qop=auth,uri="sip:127.0.0.1:5060",nonce="abc",'
    'response="0123456789abcdef0123456789abcdef",algorithm=MD5',
    "Max-Forwards: 70",
    "Expires: 300",
)
