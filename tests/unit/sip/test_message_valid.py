"""Valid-but-odd messages that must parse (the categories of RFC 4475 §3.1.1 and
§3.3/§3.4), written for this project. Each test checks the values a receiver
relies on, not just that no exception was raised."""

from __future__ import annotations

import pytest

from engine.sip.message import SipRequest, SipResponse
from engine.sip.parser import parse_message
from engine.sip.uri import unescape
from tests.unit.sip._util import BASIC_INVITE, SIPP_REGISTER, raw


def test_basic_invite_fields() -> None:
    m = parse_message(BASIC_INVITE)
    assert isinstance(m, SipRequest)
    assert m.method == "INVITE"
    assert m.uri == "sip:bob@biloxi.example.com"
    assert m.request_uri.user == "bob"
    assert m.request_uri.host == "biloxi.example.com"
    assert m.call_id == "a84b4c76e66710@pc33.atlanta.example.com"
    assert (m.cseq.seq, m.cseq.method) == (314159, "INVITE")
    assert m.from_tag == "1928301774"
    assert m.to_tag is None
    assert m.from_.display_name == "Alice"
    assert m.to.display_name == "Bob"
    assert m.top_via.branch == "z9hG4bK776asdhds"
    assert m.top_via.sent_by == ("pc33.atlanta.example.com", 5060)
    assert m.content_type == "application/sdp"
    assert m.body.startswith(b"v=0\r\n") and m.body.endswith(b"a=sendrecv\r\n")
    assert m.max_forwards == 70
    assert [str(c.uri) for c in m.contacts] == ["sip:alice@pc33.atlanta.example.com"]


def test_whitespace_folding_and_case_torture() -> None:
    """wsinv-style: LWS everywhere it is allowed, folded lines, odd case, compact forms."""
    data = raw(
        "INVITE sip:carol@chicago.example.com;oddparam SIP/2.0",
        "tO :",
        " sip:carol@chicago.example.com ;   tag    = 8321234356",
        'fROM   : "Mr \\"Q\\" \\\\ Smith"       <sip:q@example.com>',
        "  ;",
        "  tag = xyz98",
        "MaX-fOrWaRdS: 0042",
        "call-id: torture.1@192.0.2.7",
        "cseq: 0017",
        "  INVITE",
        "Via  : SIP  /   2.0",
        " /UDP",
        "    192.0.2.7;branch=z9hG4bKabc1",
        "s :",
        "X-Folded:   first part",
        "\tsecond part",
        "X-Odd: ;;,,;;,;",
        "v:  SIP  / 2.0  / TCP     relay.example.com   ;",
        "  branch  =   z9hG4bKdef2  ,",
        " SIP  /    2.0   / UDP  192.0.2.9   ; branch=",
        " z9hG4bKghi3",
        'm:"Quoted \\"name\\"" <sip:q@example.com> ; newparam =',
        "      newvalue ;",
        "  flagparam ; q = 0.5",
        "l: 0",
        cl=False,
    )
    m = parse_message(data)
    assert m.to.uri.user == "carol"
    assert m.to_tag == "8321234356"
    assert m.from_tag == "xyz98"
    assert m.from_.display_name == 'Mr "Q" \\ Smith'
    assert m.max_forwards == 42
    assert (m.cseq.seq, m.cseq.method) == (17, "INVITE")
    assert m.header("Subject") == ""
    assert m.header("x-folded") == "first part second part"
    assert m.header("X-ODD") == ";;,,;;,;"
    vias = m.vias
    assert [v.transport for v in vias] == ["UDP", "TCP", "UDP"]
    assert [v.branch for v in vias] == ["z9hG4bKabc1", "z9hG4bKdef2", "z9hG4bKghi3"]
    assert vias[1].host == "relay.example.com"
    contact = m.contacts[0]
    assert contact.display_name == 'Quoted "name"'
    assert contact.params == {"newparam": "newvalue", "flagparam": None, "q": "0.5"}
    assert m.request_uri.params == {"oddparam": None}
    assert m.header_values("via")[0].startswith("SIP  /   2.0 /UDP")


def test_escaped_characters_in_uris() -> None:
    data = raw(
        "INVITE sip:sips%3Auser%40example.org@example.net SIP/2.0",
        "To: sip:%61lice@example.net",
        "From: <sip:I%20have%20spaces@example.net>;tag=938",
        "Max-Forwards: 87",
        "i: esc01.239409asdfakjkn23onasd0-3234",
        "CSeq: 234234 INVITE",
        "Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bKkdjuw",
        "C: application/sdp",
        "Contact: <sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31>",
    )
    m = parse_message(data)
    assert unescape(m.request_uri.user or "") == "sips:user@example.org"
    assert m.request_uri.host == "example.net"
    assert unescape(m.to.uri.user or "") == "alice"
    assert unescape(m.from_.uri.user or "") == "I have spaces"
    c = m.contacts[0].uri
    assert unescape(c.user or "") == "caller"
    assert c.params == {"%6c%72": None, "n%61me": "v%61lue%25%34%31"}
    assert m.content_type == "application/sdp"
    # escaped and unescaped forms are the same URI (§19.1.4)
    from engine.sip.uri import parse_uri

    assert parse_uri("sip:%61lice@example.net").equivalent(parse_uri("sip:alice@EXAMPLE.net"))


def test_escaped_nulls_and_percent_that_is_not_an_escape() -> None:
    data = raw(
        "REGISTER sip:example.com SIP/2.0",
        "To: sip:null-%00-null@example.com",
        "From: sip:null-%00-null@example.com;tag=839923423",
        "Max-Forwards: 70",
        "Call-ID: escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd",
        "CSeq: 14398234 REGISTER",
        "Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw",
        "Contact: <sip:%00@host5.example.com>",
        'X-Percent: "%Z%45" 100% pure',
    )
    m = parse_message(data)
    assert unescape(m.to.uri.user or "") == "null-\x00-null"
    assert unescape(m.contacts[0].uri.user or "") == "\x00"
    assert m.header("x-percent") == '"%Z%45" 100% pure'


def test_no_space_between_display_name_and_angle() -> None:
    data = raw(
        "OPTIONS sip:user@example.com SIP/2.0",
        "To: sip:user@example.com",
        "From: caller<sip:caller@example.com>;tag=323",
        "Max-Forwards: 70",
        "Call-ID: lwsdisp.1234abcd@funky.example.com",
        "CSeq: 60 OPTIONS",
        "Via: SIP/2.0/UDP funky.example.com;branch=z9hG4bKkdjuw",
    )
    m = parse_message(data)
    assert m.from_.display_name == "caller"
    assert m.from_.uri.user == "caller"
    assert m.from_tag == "323"


def test_long_values_and_many_vias() -> None:
    long_token = "x" * 4000
    vias = [f"Via: SIP/2.0/TCP sip{i}.example.com:{5000 + i};branch=z9hG4bK{i:04d}"
            for i in range(40)]
    data = raw(
        f"INVITE sip:{long_token}@example.com SIP/2.0",
        f"To: \"{'I am a long display name ' * 20}\" <sip:{long_token}@example.com>",
        f"From: sip:amazinglylongcallername@example.net;tag={long_token[:800]}",
        f"Call-ID: {long_token}",
        "CSeq: 3882340 INVITE",
        *vias,
        f"X-Long-Header: {long_token}",
        "Max-Forwards: 70",
    )
    m = parse_message(data)
    assert m.request_uri.user == long_token
    assert m.call_id == long_token
    assert len(m.vias) == 40
    assert m.vias[-1].port == 5039
    assert m.from_tag == "x" * 800
    assert m.header("x-long-header") == long_token


def test_extra_octets_after_content_length_are_discarded() -> None:
    first = raw(
        "REGISTER sip:example.com SIP/2.0",
        "To: sip:j.user@example.com",
        "From: sip:j.user@example.com;tag=43251j3j324",
        "Max-Forwards: 8",
        "I: dblreq.0ha0isndaksdj99sdfafnl3lk233412",
        "Contact: sip:j.user@host.example.com",
        "CSeq: 8 REGISTER",
        "Via: SIP/2.0/UDP 192.0.2.125;branch=z9hG4bKkdjuw23492",
    )
    m = parse_message(first + b"INVITE sip:joe@example.com SIP/2.0\r\nt: x\r\n\r\n")
    assert m.method == "REGISTER"
    assert m.body == b""
    m2 = parse_message(raw(
        "MESSAGE sip:a@example.com SIP/2.0", "Via: SIP/2.0/UDP h;branch=z9hG4bK1",
        "From: <sip:b@example.com>;tag=1", "To: <sip:a@example.com>", "Call-ID: c1",
        "CSeq: 1 MESSAGE", cl=5, body=b"helloEXTRA"))
    assert m2.body == b"hello"


def test_semicolons_in_user_part() -> None:
    data = raw(
        "OPTIONS sip:user;par=u%40example.net@example.com SIP/2.0",
        "To: sip:j_user@example.com",
        "From: sip:caller@example.org;tag=33242",
        "Max-Forwards: 3",
        "Call-ID: semiuri.0ha0isndaksdj",
        "CSeq: 8 OPTIONS",
        "Accept: application/sdp, application/pkcs7-mime,",
        "        multipart/mixed, multipart/signed,",
        "        message/sip, message/sipfrag",
        "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKkdjuw",
    )
    m = parse_message(data)
    ruri = m.request_uri
    assert ruri.user == "user;par=u%40example.net"
    assert ruri.host == "example.com"
    assert ruri.params == {}
    assert m.header_values("accept") == [
        "application/sdp", "application/pkcs7-mime", "multipart/mixed", "multipart/signed",
        "message/sip", "message/sipfrag"]


def test_varied_and_unknown_transports() -> None:
    data = raw(
        "OPTIONS sip:user@example.com SIP/2.0",
        "To: sip:user@example.com",
        "From: <sip:caller@example.com>;tag=323",
        "Max-Forwards: 70",
        "Call-ID: transports.kijh4akdnaqjkwendsasfdj",
        "Accept: application/sdp",
        "CSeq: 60 OPTIONS",
        "Via: SIP/2.0/UDP t1.example.com;branch=z9hG4bKkdjuw",
        "Via: SIP/2.0/SCTP t2.example.com;branch=z9hG4bKklasjdhf",
        "Via: SIP/2.0/TLS t3.example.com;branch=z9hG4bK2980unddj",
        "Via: SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en",
        "Via: SIP/2.0/TCP t5.example.com;branch=z9hG4bK0a9idfnee",
    )
    m = parse_message(data)
    assert [v.transport for v in m.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]


def test_multipart_body_is_kept_verbatim() -> None:
    body = (b"--boundary42\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n"
            b"--boundary42\r\nContent-Type: application/pkcs7-signature\r\n\r\n"
            b"\x00\x01\x02\xff binary\r\n--boundary42--\r\n")
    data = raw(
        "MESSAGE sip:kumiko@example.org SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-d87543-4dade06d0bdb11ee-1--d87543-;rport",
        "Max-Forwards: 70",
        "Route: <sip:127.0.0.1:5080>",
        "From: <sip:fluffy@example.com>;tag=2fb0dcc9",
        "To: <sip:kumiko@example.org>",
        "Call-ID: 3d9485ad0c49859b@Zmx1ZmZ5LW1hYy0xNi5sb2NhbA..",
        "CSeq: 1 MESSAGE",
        'Content-Type: multipart/mixed;boundary="boundary42"',
        body=body,
    )
    m = parse_message(data)
    assert m.body == body
    assert m.content_type == "multipart/mixed"
    assert m.top_via.has_rport and m.top_via.rport is None


@pytest.mark.parametrize("line, status, reason", [
    ("SIP/2.0 200 = 2**3 * 5**2 но сто девяносто девять - простое", 200,
     "= 2**3 * 5**2 но сто девяносто девять - простое"),
    ("SIP/2.0 100 ", 100, ""),
    ("SIP/2.0 100", 100, ""),
    ("SIP/2.0 499 Unusual Reason: with colon", 499, "Unusual Reason: with colon"),
])
def test_response_reason_phrases(line: str, status: int, reason: str) -> None:
    data = raw(
        line,
        "Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923",
        "Call-ID: unreason.1234ksdfak3j2erwedfsASdf",
        "CSeq: 35 INVITE",
        "From: sip:user@example.com;tag=11141343",
        "To: sip:user@example.edu;tag=2229",
    )
    m = parse_message(data)
    assert isinstance(m, SipResponse)
    assert (m.status, m.reason) == (status, reason)
    assert m.to_tag == "2229"


def test_ipv6_everywhere() -> None:
    data = raw(
        "INVITE sip:user@[2001:db8::10]:5070;transport=udp SIP/2.0",
        "Via: SIP/2.0/UDP [2001:db8::9:1]:5061;branch=z9hG4bKas3-111;received=2001:db8::9:255",
        "Via: SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKas3-112",
        "To: sip:user@[2001:db8::10]",
        "From: <sip:caller@[2001:db8::9:1]>;tag=81x2",
        "Call-ID: SSG9559905523997077@hlau_4100",
        "CSeq: 1 INVITE",
        "Contact: \"Caller\" <sip:caller@[2001:db8::9:1]:5061;transport=udp>",
        "Max-Forwards: 70",
    )
    m = parse_message(data)
    assert m.request_uri.host == "[2001:db8::10]"
    assert m.request_uri.port == 5070
    assert m.request_uri.transport == "udp"
    assert m.top_via.host == "[2001:db8::9:1]"
    assert m.top_via.port == 5061
    assert m.top_via.received == "2001:db8::9:255"
    assert m.vias[1].port is None
    assert m.contacts[0].uri.host == "[2001:db8::9:1]"
    assert m.to.uri.host == "[2001:db8::10]"


def test_ipv4_mapped_ipv6_reference() -> None:
    m = parse_message(raw(
        "OPTIONS sip:[::ffff:192.0.2.128] SIP/2.0",
        "Via: SIP/2.0/UDP [::ffff:192.0.2.19];branch=z9hG4bKas3",
        "To: sip:[::ffff:192.0.2.128]", "From: sip:a@[::ffff:192.0.2.19];tag=1",
        "Call-ID: v6mapped", "CSeq: 1 OPTIONS"))
    assert m.request_uri.host == "[::ffff:192.0.2.128]"


def test_tel_and_unknown_scheme_uris() -> None:
    data = raw(
        "INVITE tel:+1-201-555-0123;phone-context=example.com SIP/2.0",
        "Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKvzjfw",
        "To: <tel:+12015550123>",
        "From: <http://www.example.com/caller>;tag=fj3",
        "Call-ID: novelsc.asdfasser0q239nwsdfasdkl34",
        "CSeq: 3923239 INVITE",
        "Contact: <sip:caller@host.example.com>",
        "Max-Forwards: 70",
    )
    m = parse_message(data)
    ruri = m.request_uri
    assert ruri.scheme == "tel" and ruri.user == "+1-201-555-0123"
    assert ruri.params == {"phone-context": "example.com"}
    assert m.to.uri.scheme == "tel"
    assert m.from_.uri.scheme == "http" and m.from_.uri.opaque == "//www.example.com/caller"
    assert m.from_tag == "fj3"
    assert str(m.from_.uri) == "http://www.example.com/caller"


def test_unusual_method_token() -> None:
    method = "!interesting-Method0123456789_*+`.%indeed'~"
    m = parse_message(raw(
        f"{method} sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com SIP/2.0",  # noqa: E501
        "Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~",
        "To: \"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f\" <sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com>",  # noqa: E501
        "From: token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;fromParam''~+*_!.-%=\"\\\"\";tag=_token~1'+`*%!-.",  # noqa: E501
        "Call-ID: intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{",
        f"CSeq: 139122385 {method}",
        "Max-Forwards: 255",
        "Extension-Header: extension-value",
    ))
    assert m.method == method
    assert m.cseq.method == method
    assert m.request_uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert m.request_uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert m.from_tag == "_token~1'+`*%!-."
    assert m.from_.display_name == "token1~` token2'+_ token3*%!.-"
    assert m.from_.params["fromparam''~+*_!.-%"] == '"\\""'
    assert m.to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert m.top_via.branch == "z9hG4bK-.!%66*_+`'~"
    assert m.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert m.max_forwards == 255


def test_register_contacts_with_params_and_star() -> None:
    m = parse_message(raw(
        "REGISTER sip:example.com SIP/2.0",
        "Via: SIP/2.0/UDP saturn.example.com:5060;branch=z9hG4bKkdjuw",
        "Max-Forwards: 70",
        "From: sip:watson@example.com;tag=DkfVgjkrtMwaerKKpe",
        "To: sip:watson@example.com",
        "Call-ID: cparam01.70710@saturn.example.com",
        "CSeq: 2 REGISTER",
        "Contact: sip:+19725552222@gw1.example.net;unknownparam, <sip:x@y.example.com>;expires=60",
        'Contact: "Quoted, comma" <sip:a@b.example.com;lr>;q=0.1;expires="3600"',
        "Contact: <sip:user@host.example.com?Route=%3Csip:sip.example.com%3E>",
        "l: 0",
        cl=False,
    ))
    contacts = m.contacts
    assert len(contacts) == 4
    # addr-spec form: the parameter belongs to the header, not the URI (§20.10)
    assert contacts[0].params == {"unknownparam": None}
    assert contacts[0].uri.params == {}
    assert contacts[1].params == {"expires": "60"}
    assert contacts[2].display_name == "Quoted, comma"
    assert contacts[2].uri.lr
    assert contacts[3].uri.headers == "Route=%3Csip:sip.example.com%3E"
    star = parse_message(raw(
        "REGISTER sip:example.com SIP/2.0", "Via: SIP/2.0/UDP h;branch=z9hG4bK1",
        "From: <sip:a@example.com>;tag=1", "To: <sip:a@example.com>", "Call-ID: c",
        "CSeq: 3 REGISTER", "Contact: *", "Expires: 0"))
    assert star.contact_is_star
    assert star.contacts == []
    assert star.expires == 0
    # the verdict is remembered, and forgotten when Contact changes
    star.set_header("Contact", "<sip:a@192.0.2.1>")
    assert not star.contact_is_star
    assert [c.uri.host for c in star.contacts] == ["192.0.2.1"]
    star.remove_header("Contact")
    star.add_header("Contact", "*")
    assert star.contact_is_star


def test_appending_a_header_keeps_the_index_and_the_cache_right() -> None:
    # add_header extends a built index in place (no rescan when serialising); every
    # read and the serialised text must still see the new line where it went
    m = parse_message(SIPP_REGISTER)
    assert len(m.vias) == 1 and len(m.contacts) == 1 and m.header("server") is None
    m.add_header("Server", "DragonPBX")
    m.add_header("Contact", "<sip:b@192.0.2.9>")
    m.add_header("Via", "SIP/2.0/UDP 192.0.2.7;branch=z9hG4bKlast")
    assert m.header("server") == "DragonPBX"
    assert [c.uri.host for c in m.contacts] == ["127.0.0.1", "192.0.2.9"]
    assert [v.branch for v in m.vias] == ["z9hG4bK-4521-1-2", "z9hG4bKlast"]
    assert m.top_via.branch == "z9hG4bK-4521-1-2"
    fresh = parse_message(m.to_bytes())
    assert fresh.headers == m.headers
    assert m.to_bytes().endswith(b"Server: DragonPBX\r\nContact: <sip:b@192.0.2.9>\r\n"
                                 b"Via: SIP/2.0/UDP 192.0.2.7;branch=z9hG4bKlast\r\n\r\n")


def test_rfc2543_style_request_without_cookie_or_tags() -> None:
    m = parse_message(raw(
        "INVITE sip:UserB@example.com SIP/2.0",
        "Via: SIP/2.0/UDP iftgw.example.com",
        "From: <sip:+13035551111@ift.client.example.net;user=phone>",
        "Record-Route: <sip:UserB@example.com;maddr=ss1.example.com>",
        "To: sip:+16505552222@ss1.example.net;user=phone",
        "Call-ID: inv2543.1717@ift.client.example.com",
        "CSeq: 56 INVITE",
        "Content-Type: application/sdp",
        body=b"v=0\r\n",
    ))
    assert m.top_via.branch is None
    assert m.top_via.port is None
    assert m.from_tag is None
    assert m.from_.uri.params == {"user": "phone"}
    assert m.record_routes[0].uri.params == {"maddr": "ss1.example.com"}
    assert m.max_forwards is None


def test_bare_lf_line_endings_and_leading_crlf() -> None:
    text = ("\r\n\r\nOPTIONS sip:a@example.com SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\n"
            "From: <sip:b@example.com>;tag=1\nTo: <sip:a@example.com>\nCall-ID: lf\n"
            "CSeq: 1 OPTIONS\nContent-Length: 2\n\nok")
    m = parse_message(text.encode())
    assert m.method == "OPTIONS"
    assert m.body == b"ok"


def test_sipp_register_with_authorization() -> None:
    m = parse_message(SIPP_REGISTER)
    auth = m.header("authorization")
    assert auth is not None and auth.startswith("Digest username=")
    # Authorization is not a list header: commas inside it must not split it
    assert len(m.header_values("authorization")) == 1
    assert m.contacts[0].uri.transport == "udp"
    assert m.expires == 300


def test_list_header_splitting_respects_quotes_and_brackets() -> None:
    m = parse_message(raw(
        "INVITE sip:a@example.com SIP/2.0",
        "Via: SIP/2.0/UDP h;branch=z9hG4bK1",
        "From: <sip:b@example.com>;tag=1", "To: <sip:a@example.com>", "Call-ID: c",
        "CSeq: 1 INVITE",
        'Route: <sip:p1.example.com;lr>,<sip:p2.example.com;lr>;x="a,b", "N, M" <sip:p3,x@e.com>',
        "Route: <sip:p4.example.com;lr>",
        "Date: Sat, 13 Nov 2010 23:29:00 GMT",
        "Supported: timer , 100rel,replaces",
    ))
    assert m.header_values("route") == [
        "<sip:p1.example.com;lr>", '<sip:p2.example.com;lr>;x="a,b"',
        '"N, M" <sip:p3,x@e.com>', "<sip:p4.example.com;lr>"]
    assert m.header("route") == "<sip:p1.example.com;lr>"
    assert m.header_values("date") == ["Sat, 13 Nov 2010 23:29:00 GMT"]
    assert m.header_values("supported") == ["timer", "100rel", "replaces"]
    assert len(m.routes) == 4


def test_response_parses_and_keeps_header_order() -> None:
    m = parse_message(raw(
        "SIP/2.0 180 Ringing",
        "Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1;received=192.0.2.1;rport=5062",
        "Record-Route: <sip:p2.example.com;lr>, <sip:p1.example.com;lr>",
        "From: <sip:b@example.com>;tag=1", "To: <sip:a@example.com>;tag=99", "Call-ID: c",
        "CSeq: 1 INVITE", "Contact: <sip:a@192.0.2.50>"))
    assert m.status == 180
    assert m.top_via.rport == 5062
    assert [str(r.uri) for r in m.record_routes] == [
        "sip:p2.example.com;lr", "sip:p1.example.com;lr"]
    assert [n for n, _ in m.headers][:3] == ["Via", "Record-Route", "From"]
