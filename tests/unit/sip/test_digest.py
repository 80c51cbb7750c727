"""Digest authentication: known answers, SIPp's header format, server outcomes,
client answers and client<->server round trips."""

from __future__ import annotations

import pytest

from engine.sip.builders import make_request, make_response
from engine.sip.digest import (
    DigestAuthenticator,
    DigestClient,
    DigestCredentials,
    DigestOutcome,
    LocalNonceCounter,
    StoreNonceCounter,
    compute_ha1,
    compute_response,
    find_credentials,
    parse_challenge,
    parse_credentials,
)
from engine.sip.errors import SipParseError
from engine.sip.message import SipRequest
from engine.sip.parser import parse_message
from tests.unit.sip._util import raw

# ------------------------------------------------------------------ known answers


def test_rfc2617_section_3_5_example() -> None:
    ha1 = compute_ha1("MD5", "Mufasa", "testrealm@host.com", "Circle Of Life")
    resp = compute_response("MD5", ha1, method="GET", uri="/dir/index.html",
                            nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", qop="auth",
                            nc="00000001", cnonce="0a4f113b")
    assert resp == "6629fae49393a05397450978507c4ef1"


@pytest.mark.parametrize("alg, expected", [
    ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
    ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
])
def test_rfc7616_section_3_9_1_examples(alg: str, expected: str) -> None:
    ha1 = compute_ha1(alg, "Mufasa", "http-auth@example.org", "Circle of Life")
    resp = compute_response(alg, ha1, method="GET", uri="/dir/index.html",
                            nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", qop="auth",
                            nc="00000001", cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ")
    assert resp == expected


def test_rfc2069_form_without_qop() -> None:
    ha1 = compute_ha1("MD5", "u", "r", "p")
    import hashlib

    ha2 = hashlib.md5(b"REGISTER:sip:r").hexdigest()
    assert compute_response("MD5", ha1, method="REGISTER", uri="sip:r", nonce="n") == \
        hashlib.md5(f"{ha1}:n:{ha2}".encode()).hexdigest()


# ------------------------------------------------------------------ parsing

SIPP_AUTH = ('Digest username="alice",realm="pbx.test",cnonce="6b8b4567",nc=00000001,qop=auth,'
             'uri="sip:127.0.0.1:5260",nonce="abc.def",response="{r}",algorithm=MD5')


def test_parse_sipp_authorization_exactly() -> None:
    c = parse_credentials(SIPP_AUTH.format(r="0" * 32))
    assert (c.username, c.realm, c.nonce, c.uri) == ("alice", "pbx.test", "abc.def",
                                                      "sip:127.0.0.1:5260")
    assert (c.qop, c.nc, c.cnonce, c.algorithm) == ("auth", "00000001", "6b8b4567", "MD5")
    assert list(c.auth_data()) == ["scheme", "username", "realm", "nonce", "uri", "response",
                                   "algorithm", "qop", "nc", "cnonce"]


def test_parse_spacious_and_quoted_variants() -> None:
    c = parse_credentials('digest  username = "bob" ,  realm="r, with comma" , nonce="n",'
                          ' uri="sip:b@r", response="ab", qop="auth", nc=0000000a, '
                          'cnonce="x\\"y", opaque="o", algorithm=sha-256')
    assert c.realm == "r, with comma"
    assert c.cnonce == 'x"y'
    assert c.algorithm == "SHA-256"
    assert c.opaque == "o"
    assert "opaque" in c.auth_data()


@pytest.mark.parametrize("value, reason", [
    ('Basic dXNlcjpwYXNz', "scheme"),
    ('Digest realm="r",nonce="n",uri="u",response="x"', "username"),
    ('Digest username="u",realm="r",nonce="n",response="x"', "uri"),
    ('Digest username="u",username="v",realm="r",nonce="n",uri="u",response="x"', "Duplicate"),
    ('Digest username="u" realm="r"', "list"),
    ('Digest username="unterminated,realm="r"', "parameter"),
    ('', "scheme"),
])
def test_parse_rejects(value: str, reason: str) -> None:
    with pytest.raises(SipParseError, match=reason):
        parse_credentials(value)


def test_parse_challenge_qop_list_and_stale() -> None:
    ch = parse_challenge('Digest realm="pbx.test", nonce="n1", qop="auth,auth-int", '
                         'algorithm=MD5, stale=TRUE, opaque="op"')
    assert ch.qop == ("auth", "auth-int")
    assert ch.stale and ch.opaque == "op"
    assert parse_challenge('Digest realm="r",nonce="n"').algorithm == "MD5"


# ------------------------------------------------------------------ server


class WallClock:
    def __init__(self, t: float = 1_800_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def sipp_credentials(nonce: str, *, password: str = "secret", nc: str = "00000001",
                     realm: str = "pbx.test", uri: str = "sip:127.0.0.1:5260",
                     method: str = "REGISTER") -> str:
    """What SIPp sends: its uri is remote host:port, not the Request-URI."""
    ha1 = compute_ha1("MD5", "alice", realm, password)
    r = compute_response("MD5", ha1, method=method, uri=uri, nonce=nonce, qop="auth", nc=nc,
                         cnonce="6b8b4567")
    return (f'Digest username="alice",realm="{realm}",cnonce="6b8b4567",nc={nc},qop=auth,'
            f'uri="{uri}",nonce="{nonce}",response="{r}",algorithm=MD5')


def _nonce_of(challenge: str) -> str:
    return parse_challenge(challenge).nonce


def test_challenge_format() -> None:
    auth = DigestAuthenticator("k", algorithms=("SHA-256", "MD5"), opaque="xyz")
    values = auth.challenge("pbx.test", stale=True)
    assert len(values) == 2
    first, second = (parse_challenge(v) for v in values)
    assert first.algorithm == "SHA-256" and second.algorithm == "MD5"
    assert first.nonce == second.nonce
    assert first.qop == ("auth",) and first.stale and first.opaque == "xyz"
    assert first.realm == "pbx.test"
    hdrs = auth.challenge_headers("pbx.test", proxy=True)
    assert hdrs[0][0] == "Proxy-Authenticate"


def test_nonces_are_unique_and_realm_bound() -> None:
    auth = DigestAuthenticator("k")
    n1, n2 = auth.make_nonce("a"), auth.make_nonce("a")
    assert n1 != n2
    assert auth.check_nonce(n1, "a") is DigestOutcome.OK
    assert auth.check_nonce(n1, "b") is DigestOutcome.BAD_NONCE


async def test_sipp_register_verifies_ok_with_its_uri() -> None:
    auth = DigestAuthenticator("shared", counter=LocalNonceCounter())
    nonce = _nonce_of(auth.challenge("pbx.test")[0])
    out = await auth.verify(sipp_credentials(nonce), method="REGISTER", realm="pbx.test",
                            password="secret")
    assert out is DigestOutcome.OK


async def test_sipp_header_inside_a_parsed_message() -> None:
    auth = DigestAuthenticator("shared")
    nonce = _nonce_of(auth.challenge("pbx.test")[0])
    msg = parse_message(raw(
        "REGISTER sip:127.0.0.1:5260 SIP/2.0", "Via: SIP/2.0/UDP 127.0.0.1:5072;branch=z9hG4bK1",
        "From: <sip:alice@127.0.0.1>;tag=1", "To: <sip:alice@127.0.0.1>", "Call-ID: c",
        "CSeq: 2 REGISTER", f"Authorization: {sipp_credentials(nonce)}"))
    creds = find_credentials(msg, "pbx.test")
    assert creds is not None and creds.username == "alice"
    assert await auth.verify(creds, method=msg.method, realm="pbx.test",
                             password="secret") is DigestOutcome.OK  # type: ignore[attr-defined]


async def test_outcomes() -> None:
    clock = WallClock()
    auth = DigestAuthenticator("shared", ttl=300, wall_clock=clock, counter=LocalNonceCounter())
    nonce = _nonce_of(auth.challenge("pbx.test")[0])

    async def v(header: str, **kw: object) -> DigestOutcome:
        args = {"method": "REGISTER", "realm": "pbx.test", "password": "secret", **kw}
        return await auth.verify(header, **args)  # type: ignore[arg-type]

    assert await v(sipp_credentials(nonce, password="wrong")) is DigestOutcome.BAD_RESPONSE
    assert await v(sipp_credentials(nonce)) is DigestOutcome.OK
    # same nc again: replay; a higher nc: fine; a lower one: replay
    assert await v(sipp_credentials(nonce)) is DigestOutcome.REPLAY
    assert await v(sipp_credentials(nonce, nc="00000003")) is DigestOutcome.OK
    assert await v(sipp_credentials(nonce, nc="00000002")) is DigestOutcome.REPLAY
    # realm
    assert await v(sipp_credentials(nonce, realm="evil.test")) is DigestOutcome.WRONG_REALM
    # the method is part of the digest
    assert await v(sipp_credentials(nonce, nc="00000009"), method="INVITE") is \
        DigestOutcome.BAD_RESPONSE
    # forged / foreign nonces
    for i in (0, 10, len(nonce) - 1):  # any character, including base64 spare bits
        for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_":
            forged = nonce[:i] + c + nonce[i + 1:]
            if forged != nonce:
                assert auth.check_nonce(forged, "pbx.test") is DigestOutcome.BAD_NONCE
    forged = nonce[:-1] + ("A" if nonce[-1] != "A" else "B")
    assert await v(sipp_credentials(forged)) is DigestOutcome.BAD_NONCE
    assert await v(sipp_credentials("1234567890")) is DigestOutcome.BAD_NONCE
    other = DigestAuthenticator("other-secret", wall_clock=clock)
    assert await v(sipp_credentials(other.make_nonce("pbx.test"))) is DigestOutcome.BAD_NONCE
    # expiry: stale only when the password is right
    clock.t += 301
    assert await v(sipp_credentials(nonce, nc="00000010")) is DigestOutcome.STALE
    assert await v(sipp_credentials(nonce, nc="00000011", password="x")) is \
        DigestOutcome.BAD_RESPONSE
    # a nonce from the future (beyond clock skew) is not ours to trust
    future = DigestAuthenticator("shared", wall_clock=WallClock(clock.t + 3600))
    assert await v(sipp_credentials(future.make_nonce("pbx.test"))) is DigestOutcome.BAD_NONCE
    # garbage
    assert await v("Digest nonsense") is DigestOutcome.MALFORMED


async def test_any_instance_with_the_same_secret_verifies() -> None:
    a = DigestAuthenticator(b"cluster-secret")
    b = DigestAuthenticator(b"cluster-secret")
    nonce = _nonce_of(a.challenge("pbx.test")[0])
    assert await b.verify(sipp_credentials(nonce), method="REGISTER", realm="pbx.test",
                          password="secret") is DigestOutcome.OK


@pytest.mark.parametrize("mutation, outcome", [
    (lambda h: h.replace("algorithm=MD5", "algorithm=SHA-512-256"),
     DigestOutcome.UNSUPPORTED_ALGORITHM),
    (lambda h: h.replace("algorithm=MD5", "algorithm=MD5-sess"),
     DigestOutcome.UNSUPPORTED_ALGORITHM),
    (lambda h: h.replace("qop=auth,", ""), DigestOutcome.MALFORMED),
    (lambda h: h.replace("qop=auth,", "qop=auth-int,"), DigestOutcome.MALFORMED),
    (lambda h: h.replace("nc=00000001,", ""), DigestOutcome.MALFORMED),
    (lambda h: h.replace("nc=00000001", "nc=1"), DigestOutcome.MALFORMED),
    (lambda h: h.replace('cnonce="6b8b4567",', ""), DigestOutcome.MALFORMED),
    (lambda h: h.replace('response="', 'response="zz'), DigestOutcome.MALFORMED),
    (lambda h: h + ",userhash=true", DigestOutcome.MALFORMED),
])
async def test_protocol_violations(mutation, outcome) -> None:  # type: ignore[no-untyped-def]
    auth = DigestAuthenticator("shared")
    nonce = _nonce_of(auth.challenge("pbx.test")[0])
    out = await auth.verify(mutation(sipp_credentials(nonce)), method="REGISTER",
                            realm="pbx.test", password="secret")
    assert out is outcome


async def test_opaque_must_be_echoed() -> None:
    auth = DigestAuthenticator("shared", opaque="op1")
    nonce = _nonce_of(auth.challenge("pbx.test")[0])
    base = sipp_credentials(nonce)
    assert await auth.verify(base, method="REGISTER", realm="pbx.test",
                             password="secret") is DigestOutcome.BAD_NONCE
    assert await auth.verify(base + ',opaque="op1"', method="REGISTER", realm="pbx.test",
                             password="secret") is DigestOutcome.OK


async def test_verify_with_stored_ha1_and_uppercase_hex() -> None:
    auth = DigestAuthenticator("shared")
    nonce = _nonce_of(auth.challenge("pbx.test")[0])
    creds = parse_credentials(sipp_credentials(nonce))
    upper = DigestCredentials(**{**{k: getattr(creds, k) for k in (
        "username", "realm", "nonce", "uri", "algorithm", "qop", "nc", "cnonce", "opaque")},
        "response": creds.response.upper(), "params": creds.params})
    ha1 = compute_ha1("MD5", "alice", "pbx.test", "secret")
    assert await auth.verify(upper, method="REGISTER", realm="pbx.test",
                             ha1=ha1) is DigestOutcome.OK
    with pytest.raises(ValueError):
        await auth.verify(creds, method="REGISTER", realm="pbx.test")


def test_check_static_without_password() -> None:
    auth = DigestAuthenticator("shared")
    nonce = _nonce_of(auth.challenge("pbx.test")[0])
    creds = parse_credentials(sipp_credentials(nonce))
    assert auth.check_static(creds, realm="pbx.test") is DigestOutcome.OK
    assert auth.check_static(creds, realm="other") is DigestOutcome.WRONG_REALM


async def test_local_nonce_counter_bounds_and_expiry() -> None:
    now = [0.0]
    c = LocalNonceCounter(max_entries=3, clock=lambda: now[0])
    assert await c.advance("a", 1, 10)
    assert not await c.advance("a", 1, 10)
    for n in "bcd":
        assert await c.advance(n, 1, 10)
    assert len(c) == 3  # "a" evicted (least recently used)
    assert await c.advance("a", 1, 10)
    now[0] = 20.0  # expired entries no longer block
    assert await c.advance("b", 1, 10)


async def test_store_nonce_counter_adapter() -> None:
    calls = []

    class FakeStore:
        async def advance_nonce_count(self, *, nonce: str, nc: int, ttl: int) -> bool:
            calls.append((nonce, nc, ttl))
            return nc > 1

    auth = DigestAuthenticator("s", counter=StoreNonceCounter(FakeStore()), ttl=100)
    nonce = _nonce_of(auth.challenge("pbx.test")[0])
    assert await auth.verify(sipp_credentials(nonce), method="REGISTER", realm="pbx.test",
                             password="secret") is DigestOutcome.REPLAY
    assert calls == [(nonce, 1, 160)]


# ------------------------------------------------------------------ client


def _request(method: str = "INVITE", uri: str = "sip:2000@pbx.test:5060") -> SipRequest:
    return make_request(method, uri, via="SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1",
                        from_="<sip:alice@pbx.test>;tag=a", to="<sip:2000@pbx.test>",
                        call_id="c1", cseq=1)


async def test_client_server_round_trip_md5_and_sha256() -> None:
    for algorithms, expected_alg in ((("MD5",), "MD5"), (("SHA-256", "MD5"), "SHA-256"),
                                     (("MD5", "SHA-256"), "SHA-256")):
        server = DigestAuthenticator("s", algorithms=algorithms, counter=LocalNonceCounter())
        req = _request()
        challenge = make_response(req, 401, headers=server.challenge_headers("pbx.test"),
                                  to_tag="t")
        client = DigestClient()
        [(name, value)] = client.answer(challenge, req, username="alice", password="pw")
        assert name == "Authorization"
        creds = parse_credentials(value)
        assert creds.algorithm == expected_alg
        assert creds.uri == "sip:2000@pbx.test:5060"
        assert creds.qop == "auth" and creds.nc == "00000001"
        assert await server.verify(creds, method="INVITE", realm="pbx.test",
                                   password="pw") is DigestOutcome.OK
        assert await server.verify(creds, method="INVITE", realm="pbx.test",
                                   password="pw") is DigestOutcome.REPLAY


def test_client_407_counts_nc_per_nonce_and_uses_sent_uri() -> None:
    req = _request("BYE", "sip:bob@192.0.2.99:5070;transport=udp")
    resp = make_response(req, 407, headers=[
        ("Proxy-Authenticate", 'Digest realm="p1", nonce="N1", qop="auth-int,auth", opaque="o"'),
        ("Proxy-Authenticate", 'Digest realm="p2", nonce="N2", algorithm=MD5'),
        ("Proxy-Authenticate", 'Basic realm="p3"'),
    ])
    client = DigestClient(random_bytes=lambda n: b"\x01" * n)
    out = client.answer(resp, req, username="u", password="p")
    assert [n for n, _ in out] == ["Proxy-Authorization", "Proxy-Authorization"]
    c1, c2 = (parse_credentials(v) for _, v in out)
    assert (c1.realm, c1.qop, c1.nc, c1.opaque, c1.cnonce) == ("p1", "auth", "00000001", "o",
                                                               "0101010101010101")
    assert c1.uri == "sip:bob@192.0.2.99:5070;transport=udp"
    assert (c2.realm, c2.qop, c2.nc) == ("p2", None, None)
    ha1 = compute_ha1("MD5", "u", "p2", "p")
    assert c2.response == compute_response("MD5", ha1, method="BYE", uri=c1.uri, nonce="N2")
    again = client.answer(resp, req, username="u", password="p")
    assert parse_credentials(again[0][1]).nc == "00000002"


def test_client_refuses_unusable_challenges() -> None:
    req = _request()
    with pytest.raises(SipParseError):
        DigestClient().answer(make_response(req, 401, headers=[
            ("WWW-Authenticate", 'Digest realm="r", nonce="n", algorithm=SHA-512')]),
            req, username="u", password="p")
    with pytest.raises(SipParseError):
        DigestClient().answer(make_response(req, 403), req, username="u", password="p")
    with pytest.raises(SipParseError, match="qop"):
        DigestClient().answer(make_response(req, 401, headers=[
            ("WWW-Authenticate", 'Digest realm="r", nonce="n", qop="auth-int"')]),
            req, username="u", password="p")


def test_find_credentials_picks_realm() -> None:
    req = _request()
    req.add_header("Authorization", 'Digest username="a",realm="x",nonce="n",uri="u",response="r"')
    req.add_header("Authorization", 'Digest username="b",realm="y",nonce="n",uri="u",response="r"')
    assert find_credentials(req, "y").username == "b"  # type: ignore[union-attr]
    assert find_credentials(req, "z").username == "a"  # type: ignore[union-attr]
    assert find_credentials(req, "y", proxy=True) is None
    bad = _request()
    bad.add_header("Authorization", "Digest garbage")
    with pytest.raises(SipParseError):
        find_credentials(bad, "x")
