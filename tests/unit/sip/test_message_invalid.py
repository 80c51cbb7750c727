"""Invalid messages that must be rejected with a precise SipParseError (the
categories of RFC 4475 §3.1.2 and §3.3), plus the error's reply context."""

from __future__ import annotations

import pytest

from engine.errors import ProtocolError
from engine.sip.builders import error_response_bytes
from engine.sip.errors import SipParseError
from engine.sip.parser import MAX_HEADERS, parse_message
from tests.unit.sip._util import raw

VIA = "Via: SIP/2.0/UDP client.example.com:5060;branch=z9hG4bKbad1"
FROM = "From: <sip:caller@example.com>;tag=f1"
TO = "To: <sip:callee@example.com>"
CALLID = "Call-ID: bad.1@example.com"


def req(start: str = "INVITE sip:callee@example.com SIP/2.0", *lines: str,
        cseq: str = "CSeq: 1 INVITE", body: bytes = b"", cl: bool | int = True) -> bytes:
    return raw(start, VIA, FROM, TO, CALLID, cseq, "Max-Forwards: 70", *lines, body=body,
               cl=cl)


def rejects(data: bytes, reason_part: str) -> SipParseError:
    with pytest.raises(SipParseError) as exc:
        parse_message(data)
    assert reason_part.lower() in exc.value.reason.lower(), exc.value.reason
    assert isinstance(exc.value, ProtocolError)
    return exc.value


# ------------------------------------------------------------------ start line

@pytest.mark.parametrize("start, reason", [
    ("INVITE <sip:callee@example.com> SIP/2.0", "Request-URI"),  # <> around the URI
    ("INVITE sip:callee@example.com;lr=x y SIP/2.0", "Request-Line"),  # embedded LWS
    ("INVITE  sip:callee@example.com SIP/2.0", "Request-Line"),  # two SP
    ("INVITE sip:callee@example.com SIP/2.0 ", "Request-Line"),  # trailing SP
    ("INVITE sip:callee@example.com", "Request-Line"),  # no version
    ("INVITE sip:callee@example.com SIP/2.0/UDP", "Request-Line"),
    ("INV ITE sip:callee@example.com SIP/2.0", "Request-Line"),
    ("INVITE callee@example.com SIP/2.0", "Request-URI"),  # no scheme
])
def test_malformed_request_line(start: str, reason: str) -> None:
    rejects(req(start), reason)


def test_unknown_version_is_505() -> None:
    err = rejects(req("INVITE sip:callee@example.com SIP/7.0"), "Version")
    assert err.status == 505
    assert err.is_request and err.method == "INVITE"
    assert err.can_reply


@pytest.mark.parametrize("start", [
    "SIP/2.0 4294967301 better not break the receiver",  # overlarge code
    "SIP/2.0 20 OK", "SIP/2.0 700 Weird", "SIP/2.0 09 x", "SIP/2.0 2OO OK",
])
def test_bad_status_code(start: str) -> None:
    err = rejects(raw(start, VIA, FROM, TO, CALLID, "CSeq: 1 INVITE"), "status code")
    assert err.is_request is False
    assert err.action == "drop"  # never answer a response


def test_response_with_unknown_version_is_dropped() -> None:
    err = rejects(raw("SIP/3.0 200 OK", VIA, FROM, TO, CALLID, "CSeq: 1 INVITE"), "version")
    assert err.action == "drop"


# ------------------------------------------------------------------ header section

@pytest.mark.parametrize("missing", ["Via", "From", "To", "Call-ID", "CSeq"])
def test_missing_required_header(missing: str) -> None:
    lines = {"Via": VIA, "From": FROM, "To": TO, "Call-ID": CALLID, "CSeq": "CSeq: 1 OPTIONS"}
    del lines[missing]
    err = rejects(raw("OPTIONS sip:callee@example.com SIP/2.0", *lines.values()),
                  f"Missing {missing}")
    assert err.can_reply == (missing != "Via")


@pytest.mark.parametrize("header", [
    "Call-ID: other@example.com", "CSeq: 2 INVITE", "From: <sip:x@example.com>;tag=2",
    "To: <sip:y@example.com>", "Max-Forwards: 10",
])
def test_multiple_values_in_single_value_headers(header: str) -> None:
    rejects(req("INVITE sip:callee@example.com SIP/2.0", header), "Multiple")


def test_multiple_conflicting_content_length() -> None:
    rejects(req("INVITE sip:callee@example.com SIP/2.0", "Content-Length: 3", body=b"abc"),
            "Multiple Content-Length")


@pytest.mark.parametrize("cseq, reason", [
    ("CSeq: 1 OPTIONS", "does not match"),  # method mismatch
    ("CSeq: 4294967296 INVITE", "CSeq"),  # 2**32: overlarge
    ("CSeq: 2147483648 INVITE", "too large"),  # over 2**31-1 (§8.1.1.5)
    ("CSeq: INVITE", "CSeq"), ("CSeq: 1", "CSeq"), ("CSeq: -1 INVITE", "CSeq"),
    ("CSeq: 1 INVITE extra", "CSeq"), ("CSeq: 1.5 INVITE", "CSeq"),
])
def test_bad_cseq(cseq: str, reason: str) -> None:
    err = rejects(req("INVITE sip:callee@example.com SIP/2.0", cseq=cseq), reason)
    assert err.can_reply


def test_unknown_method_with_cseq_mismatch() -> None:
    rejects(req("NEWMETHOD sip:callee@example.com SIP/2.0", cseq="CSeq: 1 INVITE"),
            "does not match")


@pytest.mark.parametrize("cl, body, reason", [
    (9999, b"v=0\r\n", "larger than body"),
    (-999, b"v=0\r\n", "Content-Length"),
    ("abc", b"", "Content-Length"),
    ("99999999999", b"", "Content-Length"),
])
def test_bad_content_length(cl: object, body: bytes, reason: str) -> None:
    data = req("INVITE sip:callee@example.com SIP/2.0", f"Content-Length: {cl}",
               body=body, cl=False)
    err = rejects(data, reason)
    assert err.can_reply


@pytest.mark.parametrize("line, reason", [
    ("NoColonHere", "without colon"),
    ("Bad Name: value", "Invalid header name"),
    ("Bad<Name>: value", "Invalid header name"),
    (": no name", "Invalid header name"),
])
def test_bad_header_lines(line: str, reason: str) -> None:
    rejects(req("OPTIONS sip:a@example.com SIP/2.0", line, cseq="CSeq: 1 OPTIONS"), reason)


def test_continuation_before_first_header() -> None:
    data = raw("OPTIONS sip:a@example.com SIP/2.0", " folded: x", VIA, FROM, TO, CALLID,
               "CSeq: 1 OPTIONS")
    rejects(data, "Continuation")


def test_bare_cr_in_headers() -> None:
    data = req("OPTIONS sip:a@example.com SIP/2.0", "X-A: one\rtwo", cseq="CSeq: 1 OPTIONS")
    rejects(data, "Bare CR")


def test_missing_empty_line() -> None:
    rejects(b"OPTIONS sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n",
            "empty line")


def test_empty_and_whitespace_only_input() -> None:
    rejects(b"", "Empty message")
    rejects(b"\r\n\r\n", "Empty message")


# ------------------------------------------------------------------ size caps

def test_oversize_message_is_513_with_context() -> None:
    data = req("MESSAGE sip:a@example.com SIP/2.0", cseq="CSeq: 1 MESSAGE",
               body=b"x" * 70000)
    err = rejects(data, "Too Large")
    assert err.status == 513
    assert err.can_reply
    assert {n.lower() for n, _ in err.context} == {"via", "from", "to", "call-id", "cseq"}


def test_too_many_headers() -> None:
    extra = [f"X-H{i}: {i}" for i in range(MAX_HEADERS)]
    rejects(req("OPTIONS sip:a@example.com SIP/2.0", *extra, cseq="CSeq: 1 OPTIONS"),
            "Too many")


def test_line_too_long() -> None:
    rejects(req("OPTIONS sip:a@example.com SIP/2.0", "X-Long: " + "y" * 20000,
                cseq="CSeq: 1 OPTIONS"), "too long")


# ------------------------------------------------------------------ structured headers (on access)

def _ok(*lines: str, start: str = "INVITE sip:callee@example.com SIP/2.0",
        cseq: str = "CSeq: 1 INVITE"):
    return parse_message(raw(start, *lines, cseq, "Max-Forwards: 70"))


@pytest.mark.parametrize("from_line, reason", [
    ('From: "Unterminated display <sip:caller@example.com>;tag=1', "Unterminated"),
    ("From: Bell, Alexander <sip:a.g.bell@example.com>;tag=43", "display name"),
    ("From: sip: caller@example.com;tag=1", "<>"),  # space inside addr-spec
    ("From: sip:caller @example.com;tag=1", "<>"),
    ("From: <sip:caller@example.com;tag=1", "Unbalanced"),
    ("From: < sip:caller@example.com>;tag=1", "Whitespace"),
    ("From: <sip:caller@example.com>;;tag=1", "parameters"),  # extraneous separator
    ("From: <sip:caller@exa mple.com>;tag=1", "URI host"),
    ("From: <sip:caller@example.com:99999>;tag=1", "port"),
    ("From: <sip:caller@[2001:db8::zz]>;tag=1", "IPv6"),
    ("From: <sip:cal%4xler@example.com>;tag=1", "user"),
])
def test_bad_name_addr_is_rejected_on_access(from_line: str, reason: str) -> None:
    m = _ok(VIA, from_line, TO, CALLID)
    with pytest.raises(SipParseError) as exc:
        _ = m.from_.uri  # the URI is parsed lazily; everything else at m.from_
    assert reason.lower() in exc.value.reason.lower(), exc.value.reason


@pytest.mark.parametrize("via, reason", [
    ("Via: SIP/2.0 client.example.com;branch=z9hG4bK1", "Via"),  # no transport
    ("Via: SIP/2.0/UDP client.example.com:70000;branch=z9hG4bK1", "port"),
    ("Via: SIP/2.0/UDP client.example.com;;branch=z9hG4bK1", "parameters"),
    ("Via: SIP/2.0/UDP client.example.com;branch=\"quoted\"", "branch"),
    ("Via: SIP/2.0/UDP", "Via"),
    ("Via: SIP/2.0/UDP host (a comment)", "parameters"),
])
def test_bad_via_is_rejected_on_access(via: str, reason: str) -> None:
    m = _ok(via, FROM, TO, CALLID)
    with pytest.raises(SipParseError) as exc:
        _ = m.top_via
    assert reason.lower() in exc.value.reason.lower(), exc.value.reason
    # The context lets the endpoint decide: the unparseable Via means no reply.
    assert any(n == "Via" for n, _ in m.reply_context())


def test_escaped_headers_in_request_uri_rejected() -> None:
    m = _ok(VIA, FROM, TO, CALLID,
            start="INVITE sip:user@example.com?Route=%3Csip:example.com%3E SIP/2.0")
    with pytest.raises(SipParseError, match="headers"):
        _ = m.request_uri


def test_addr_spec_contact_with_uri_headers_rejected() -> None:
    m = _ok(VIA, FROM, TO, CALLID,
            "Contact: sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            start="REGISTER sip:example.com SIP/2.0", cseq="CSeq: 1 REGISTER")
    with pytest.raises(SipParseError, match="<>"):
        _ = m.contacts
    # with <> the same URI is fine in a Contact (RFC 4475 §3.1.2.13)
    ok = _ok(VIA, FROM, TO, CALLID,
             "Contact: <sip:user@example.com?Route=%3Csip:sip.example.com%3E>",
             start="REGISTER sip:example.com SIP/2.0", cseq="CSeq: 1 REGISTER")
    assert ok.contacts[0].uri.headers == "Route=%3Csip:sip.example.com%3E"


@pytest.mark.parametrize("line, attr, reason", [
    ("Max-Forwards: 300", "max_forwards", "too large"),
    ("Expires: 10000000000000000000000000", "expires", "Expires"),
    ("Expires: soon", "expires", "Expires"),
])
def test_overlarge_scalar_headers(line: str, attr: str, reason: str) -> None:
    m = parse_message(raw("REGISTER sip:example.com SIP/2.0", VIA, FROM, TO, CALLID,
                          "CSeq: 1 REGISTER", line))
    with pytest.raises(SipParseError, match=reason):
        getattr(m, attr)


def test_unterminated_quote_in_list_header() -> None:
    m = _ok(VIA, FROM, TO, CALLID, 'Contact: "Bob <sip:bob@example.com>, <sip:x@example.com>')
    with pytest.raises(SipParseError, match="Unterminated"):
        m.header_values("contact")
    # header() stays lenient: the raw value is better than an exception there
    assert m.header("contact", ) is not None


# ------------------------------------------------------------------ reply context

def test_error_context_and_400_bytes() -> None:
    data = req("INVITE sip:callee@example.com SIP/2.0", cseq="CSeq: 1 BYE")
    err = rejects(data, "does not match")
    assert err.action == "reply"
    out = error_response_bytes(err.context, err.status, err.reason, to_tag="t1")
    resp = parse_message(out)
    assert resp.status == 400
    assert resp.reason == "CSeq method does not match Request-Line"
    assert resp.top_via.branch == "z9hG4bKbad1"
    assert resp.to_tag == "t1"
    assert resp.call_id == "bad.1@example.com"
    assert resp.header("cseq") == "1 BYE"


def test_ack_errors_are_dropped() -> None:
    err = rejects(raw("ACK sip:a@example.com SIP/2.0", VIA, FROM, TO, CALLID, "CSeq: 1 INVITE"),
                  "does not match")
    assert err.method == "ACK"
    assert err.action == "drop"


def test_context_without_parseable_via_is_dropped() -> None:
    data = raw("OPTIONS sip:a@example.com SIP/2.0", "Via: garbage", FROM, TO, CALLID,
               "CSeq: x OPTIONS")
    err = rejects(data, "CSeq")
    assert err.action == "drop"
    assert all(n != "Via" for n, _ in err.context)
