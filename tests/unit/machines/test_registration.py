"""The registration machine's decisions, with fakes for SIP, Redis and the RegHook."""

from __future__ import annotations

from typing import Any

import pytest

from engine.errors import HookError
from engine.ports import HookReply
from engine.sip.digest import DigestClient, parse_challenge
from tests.unit.machines.harness import FakeRequest, make_runtime, make_services, run

REGISTER = """REGISTER sip:{domain} SIP/2.0
Via: SIP/2.0/UDP 192.0.2.10:5072;branch=z9hG4bK-{n}
From: <sip:{user}@{domain}>;tag=f{n}
To: <sip:{to}@{domain}>
Call-ID: reg-{n}@192.0.2.10
CSeq: {n} REGISTER
{contact}Max-Forwards: 70
User-Agent: TestPhone/1.0
{expires}{auth}Content-Length: 0

"""


class Phone:
    """Builds REGISTERs like a phone would, answering challenges."""

    def __init__(self, user: str, password: str, domain: str = "pbx.test"):
        self.user, self.password, self.domain = user, password, domain
        self.digest = DigestClient()
        self.n = 0

    def register(self, *, challenge: str | None = None, expires: int | None = 300,
                 contact: str | None = "default", to: str | None = None,
                 username: str | None = None, password: str | None = None) -> FakeRequest:
        self.n += 1
        auth = ""
        if challenge:
            value = self.digest.authorization(
                parse_challenge(challenge), method="REGISTER", uri=f"sip:{self.domain}",
                username=username or self.user, password=password or self.password)
            auth = f"Authorization: {value}\n"
        if contact == "default":
            contact = f"<sip:{self.user}@192.0.2.10:5072>"
        return FakeRequest(REGISTER.format(
            domain=self.domain, user=self.user, to=to or self.user, n=self.n,
            contact=f"Contact: {contact}\n" if contact else "",
            expires=f"Expires: {expires}\n" if expires is not None else "", auth=auth))


async def challenge_of(rt: Any, phone: Phone, **kw: Any) -> str:
    req = phone.register(**kw)
    await run(rt, "registration", req)
    assert req.status == 401, req.replies
    return req.reply_header("WWW-Authenticate")[0]


async def test_no_credentials_gets_401_with_realm_the_domain() -> None:
    svc = make_services()
    rt = make_runtime(svc)
    ch = await challenge_of(rt, Phone("alice", "secret"))
    parsed = parse_challenge(ch)
    assert parsed.realm == "pbx.test" and "auth" in parsed.qop and parsed.algorithm == "MD5"


async def test_static_password_registers_with_binding_and_ttl() -> None:
    svc = make_services()
    rt = make_runtime(svc)
    phone = Phone("alice", "secret")
    ch = await challenge_of(rt, phone)
    req = phone.register(challenge=ch, expires=300)
    inst = await run(rt, "registration", req)
    assert req.status == 200, req.replies
    assert req.reply_header("Expires") == ["300"]
    assert req.reply_header("Contact") == ["<sip:alice@192.0.2.10:5072>;expires=300"]
    fields = svc.store.hash("client:pbx.test:alice")
    assert fields["contact"] == "sip:alice@192.0.2.10:5072"
    assert fields["proxy"] == "sip:192.0.2.10:5072"
    assert fields["dialplan"] == '{"1???":"http://hooks/call"}'
    assert fields["codecs"] == '["PCMU"]'
    assert fields["transport"] == "udp" and fields["user_agent"] == "TestPhone/1.0"
    assert svc.store.ttl("client:pbx.test:alice") == 300
    assert inst.trace.path()[-1] == "done"


async def test_grant_expiry_limits_the_request_and_clamps() -> None:
    svc = make_services()
    rt = make_runtime(svc)
    phone = Phone("alice", "secret")
    req = phone.register(challenge=await challenge_of(rt, phone), expires=7200)
    await run(rt, "registration", req)
    assert req.reply_header("Expires") == ["600"]  # the client's configured expires


async def test_wrong_password_is_403() -> None:
    rt = make_runtime(make_services())
    phone = Phone("alice", "wrong")
    req = phone.register(challenge=await challenge_of(rt, phone))
    await run(rt, "registration", req)
    assert req.status == 403 and req.reply_header("X-Reason") == ["invalid credentials"]


async def test_replayed_nonce_count_is_challenged_again() -> None:
    rt = make_runtime(make_services())
    phone = Phone("alice", "secret")
    ch = await challenge_of(rt, phone)
    first = phone.register(challenge=ch)
    await run(rt, "registration", first)
    assert first.status == 200
    replay = FakeRequest(first.message.to_bytes().decode().replace("\r\n", "\n"))
    await run(rt, "registration", replay)
    assert replay.status == 401


async def test_stale_nonce_gets_stale_true() -> None:
    svc = make_services()
    rt = make_runtime(svc)
    phone = Phone("alice", "secret")
    ch = await challenge_of(rt, phone)
    svc.digest._clock = lambda: 10**10  # the nonce is now far older than its lifetime
    req = phone.register(challenge=ch)
    await run(rt, "registration", req)
    assert req.status == 401
    assert "stale=true" in req.reply_header("WWW-Authenticate")[0]


async def test_forged_nonce_is_challenged() -> None:
    rt = make_runtime(make_services())
    phone = Phone("alice", "secret")
    forged = ('Digest realm="pbx.test", nonce="AAAAAAAAAAA.BBBBBBBBBBBBBBBBBBBBBB", '
              'qop="auth", algorithm=MD5')
    req = phone.register(challenge=forged)
    await run(rt, "registration", req)
    assert req.status == 401


async def test_unknown_domain_is_404() -> None:
    rt = make_runtime(make_services())
    req = Phone("alice", "secret", domain="other.test").register()
    await run(rt, "registration", req)
    assert req.status == 404 and req.reply_header("X-Reason") == ["unknown domain"]


async def test_no_matching_client_is_403() -> None:
    rt = make_runtime(make_services())
    phone = Phone("mallory", "x")
    req = phone.register(challenge=await challenge_of(rt, phone))
    await run(rt, "registration", req)
    assert req.status == 403 and req.reply_header("X-Reason") == ["no matching client"]


async def test_expires_zero_removes_the_binding() -> None:
    svc = make_services()
    rt = make_runtime(svc)
    phone = Phone("alice", "secret")
    ch = await challenge_of(rt, phone)
    await run(rt, "registration", phone.register(challenge=ch))
    assert svc.store.hash("client:pbx.test:alice")
    req = phone.register(challenge=ch, expires=0)
    await run(rt, "registration", req)
    assert req.status == 200 and req.reply_header("Expires") == ["0"]
    assert not svc.store.hash("client:pbx.test:alice")


async def test_too_brief_is_423_with_min_expires() -> None:
    rt = make_runtime(make_services())
    phone = Phone("alice", "secret")
    req = phone.register(challenge=await challenge_of(rt, phone), expires=10)
    await run(rt, "registration", req)
    assert req.status == 423 and req.reply_header("Min-Expires") == ["30"]


async def test_query_without_contact_lists_the_binding() -> None:
    svc = make_services()
    rt = make_runtime(svc)
    phone = Phone("alice", "secret")
    ch = await challenge_of(rt, phone)
    await run(rt, "registration", phone.register(challenge=ch))
    svc.clock.advance(100)
    req = phone.register(challenge=ch, contact=None, expires=None)
    await run(rt, "registration", req)
    assert req.status == 200
    assert req.reply_header("Contact") == ["<sip:alice@192.0.2.10:5072>;expires=200"]


async def test_credentials_for_another_user_cannot_bind_it() -> None:
    svc = make_services()
    rt = make_runtime(svc)
    phone = Phone("alice", "secret")
    req = phone.register(challenge=await challenge_of(rt, phone), to="bob")
    await run(rt, "registration", req)
    assert req.status == 403
    assert not [k for k in sorted(svc.store.keys()) if k.startswith("client:")]


async def test_reghook_receives_the_exact_body_and_grants() -> None:
    svc = make_services()
    rt = make_runtime(svc)
    svc.caller.ok("http://hooks/reg", {"status": "OK", "expires": 120,
                                       "dialplan": {"*": "http://hooks/c"},
                                       "codecs": ["PCMA", "DIRECT"]})
    phone = Phone("2001", "pw")
    req = phone.register(challenge=await challenge_of(rt, phone), expires=300)
    await run(rt, "registration", req)
    assert req.status == 200 and req.reply_header("Expires") == ["120"]
    url, body = svc.caller.calls[0]
    assert url == "http://hooks/reg"
    assert list(body)[:10] == ["source_address", "source_port", "method", "expires", "scheme",
                              "username", "realm", "nonce", "uri", "response"]
    assert body["realm"] == "pbx.test" and body["expires"] == 300
    assert body["method"] == "REGISTER" and body["username"] == "2001"
    assert body["source_address"] == "192.0.2.10" and body["source_port"] == 5072
    assert svc.store.hash("client:pbx.test:2001")["codecs"] == '["PCMA","DIRECT"]'


@pytest.mark.parametrize(("reply", "status", "why"), [
    ({"status": "fail"}, 403, "invalid credentials"),
    ({"status": "fail", "blacklist": True}, 403, "potential spammer"),
    (HookReply(500, b"oops"), 500, "RegHook answered HTTP 500"),
    (HookReply(404, b""), 404, "RegHook answered HTTP 404"),
    (HookReply(418, b""), 500, "RegHook HTTP error"),
    (HookReply(200, b"not json"), 500, "invalid RegHook reply"),
    (HookError("slow", kind="timeout"), 504, "RegHook timed out"),
    (HookError("refused", kind="connect"), 503, "RegHook unreachable"),
])
async def test_reghook_outcomes_map_to_defined_statuses(reply: Any, status: int,
                                                        why: str) -> None:
    svc = make_services()
    rt = make_runtime(svc)
    if isinstance(reply, dict):
        svc.caller.ok("http://hooks/reg", reply)
    else:
        svc.caller.replies["http://hooks/reg"] = reply
    phone = Phone("2001", "pw")
    req = phone.register(challenge=await challenge_of(rt, phone))
    await run(rt, "registration", req)
    assert req.status == status and req.reply_header("X-Reason") == [why]
    assert not [k for k in sorted(svc.store.keys()) if k.startswith("client:")]


async def test_store_failure_is_503_with_retry_after_and_nothing_crashes() -> None:
    svc = make_services()
    rt = make_runtime(svc)
    phone = Phone("alice", "secret")
    ch = await challenge_of(rt, phone)
    svc.store.down = True
    req = phone.register(challenge=ch)
    await run(rt, "registration", req)
    assert req.status == 503
    assert req.reply_header("Retry-After") == ["5"]
