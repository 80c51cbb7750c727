"""Property tests: generated URIs, addresses, Vias and whole messages survive
serialise -> parse unchanged."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.sip.headers import Via, header_key, parse_via, quote
from engine.sip.message import SipRequest, SipResponse
from engine.sip.parser import parse_message
from engine.sip.uri import NameAddr, SipUri, parse_name_addr, parse_uri

ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
TOKEN_CHARS = ALNUM + "-.!%*_+`'~"
USER_CHARS = ALNUM + "-_.!~*'()&=+$,;?/"
PARAM_CHARS = ALNUM + "-_.!~*'()[]/:&+$"

tokens = st.text(TOKEN_CHARS, min_size=1, max_size=12)
labels = st.text(ALNUM, min_size=1, max_size=10)
domains = st.lists(labels, min_size=1, max_size=4).map(".".join)
ipv4 = st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))
ipv6 = st.integers(0, 2**128 - 1).map(lambda n: f"[{ipaddress.IPv6Address(n).compressed}]")
hosts = st.one_of(domains, ipv4, ipv6)
ports = st.one_of(st.none(), st.integers(1, 65535))
escapes = st.integers(0, 255).map(lambda b: f"%{b:02X}")
users = st.lists(st.one_of(st.text(USER_CHARS, min_size=1, max_size=6), escapes),
                 min_size=1, max_size=5).map("".join)
uri_params = st.dictionaries(
    st.text(PARAM_CHARS, min_size=1, max_size=8).map(str.lower),
    st.one_of(st.none(), st.text(PARAM_CHARS, min_size=1, max_size=8)), max_size=4)


@st.composite
def sip_uris(draw: st.DrawFn) -> SipUri:
    return SipUri(
        draw(st.sampled_from(["sip", "sips"])),
        draw(st.one_of(st.none(), users)),
        draw(hosts),
        draw(ports),
        draw(uri_params),
        draw(st.one_of(st.none(), st.just("subject=hi&priority=urgent"))),
    )


tel_uris = st.builds(
    lambda n, ctx: SipUri("tel", user=n, params={"phone-context": ctx} if ctx else {}),
    st.text("0123456789-.()", min_size=1, max_size=12).map(lambda s: "+1" + s),
    st.one_of(st.none(), domains),
)

header_params = st.dictionaries(
    tokens.map(str.lower),
    st.one_of(st.none(), tokens, st.text(ALNUM + " ,;:<>", max_size=10).map(quote)),
    max_size=4)
display_names = st.text(
    st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=20)


@given(sip_uris())
def test_sip_uri_roundtrip(uri: SipUri) -> None:
    parsed = parse_uri(str(uri))
    assert parsed == uri
    assert str(parsed) == str(uri)
    assert parsed.equivalent(uri)


@given(tel_uris)
def test_tel_uri_roundtrip(uri: SipUri) -> None:
    assert parse_uri(str(uri)) == uri


@given(st.one_of(sip_uris(), tel_uris), st.one_of(st.none(), display_names), header_params)
def test_name_addr_roundtrip(uri: SipUri, display: str | None, params: dict) -> None:
    na = NameAddr(uri, quote(display) if display is not None else None, params)
    parsed = parse_name_addr(str(na))
    assert parsed == na
    assert parsed.display_name == display


@given(st.sampled_from(["UDP", "TCP", "TLS", "SCTP", "WS"]),
       st.one_of(domains, ipv4, ipv6), ports, tokens,
       st.one_of(st.none(), ipv4), st.one_of(st.none(), st.just(""), st.integers(1, 65535)))
def test_via_roundtrip(transport: str, host: str, port: int | None, branch: str,
                       received: str | None, rport: object) -> None:
    params: dict[str, str | None] = {"branch": "z9hG4bK" + branch}
    if received is not None:
        params["received"] = received
    if rport is not None:
        params["rport"] = None if rport == "" else str(rport)
    via = Via(transport, host, port, params)
    assert parse_via(str(via)) == via


# ------------------------------------------------------------------ whole messages

_RESERVED = {"via", "from", "to", "call-id", "cseq", "content-length", "max-forwards"}
header_names = tokens.filter(lambda n: header_key(n) not in _RESERVED)
header_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=40
).map(lambda s: s.strip(" \t"))
extra_headers = st.lists(st.tuples(header_names, header_text), max_size=12)
methods = st.one_of(st.sampled_from(["INVITE", "ACK", "BYE", "REGISTER", "OPTIONS"]), tokens)


def _core(draw: st.DrawFn, method: str) -> list[tuple[str, str]]:
    via = Via(draw(st.sampled_from(["UDP", "TCP"])), draw(hosts), draw(ports),
              {"branch": "z9hG4bK" + draw(tokens)})
    frm = NameAddr(draw(sip_uris()), None, {"tag": draw(tokens)})
    to = NameAddr(draw(sip_uris()), None, {})
    return [("Via", str(via)), ("From", str(frm)), ("To", str(to)),
            ("Call-ID", draw(tokens) + "@" + draw(domains)),
            ("CSeq", f"{draw(st.integers(0, 2**31 - 1))} {method}")]


@st.composite
def requests(draw: st.DrawFn) -> SipRequest:
    method = draw(methods)
    headers = _core(draw, method) + draw(extra_headers)
    headers = draw(st.permutations(headers))
    return SipRequest(method, str(draw(sip_uris().filter(lambda u: u.headers is None))),
                      headers, draw(st.binary(max_size=200)))


@st.composite
def responses(draw: st.DrawFn) -> SipResponse:
    headers = _core(draw, draw(methods)) + draw(extra_headers)
    reason = draw(header_text)
    return SipResponse(draw(st.integers(100, 699)), reason, headers, draw(st.binary(max_size=200)))


@settings(max_examples=300)
@given(requests())
def test_request_roundtrip(req: SipRequest) -> None:
    parsed = parse_message(req.to_bytes())
    assert isinstance(parsed, SipRequest)
    assert (parsed.method, parsed.uri, parsed.body) == (req.method, req.uri, req.body)
    got = [(n, v) for n, v in parsed.headers if header_key(n) != "content-length"]
    assert got == req.headers
    assert parsed.to_bytes() == req.to_bytes()
    assert parsed.from_ == req.from_ and parsed.to == req.to and parsed.top_via == req.top_via


@settings(max_examples=300)
@given(responses())
def test_response_roundtrip(resp: SipResponse) -> None:
    parsed = parse_message(resp.to_bytes())
    assert isinstance(parsed, SipResponse)
    assert (parsed.status, parsed.reason, parsed.body) == (resp.status, resp.reason, resp.body)
    got = [(n, v) for n, v in parsed.headers if header_key(n) != "content-length"]
    assert got == resp.headers
    assert parsed.cseq == resp.cseq
