"""Where the registration and inbound_call machines consult the abuse protection: a
scripted abuse service stands in for the Redis counters (those are tested against
Redis in tests/integration/abuse)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.errors import StoreError
from engine.ports import Peer
from engine.sip.digest import DigestClient, parse_challenge
from tests.unit.machines.harness import FakeRequest, make_runtime, make_services, run
from tests.unit.machines.test_inbound_call import INVITE
from tests.unit.machines.test_registration import Phone, challenge_of


@dataclass
class ScriptedAbuse:
    verdict: str | Exception = "clear"
    exempt_sources: set[str] = field(default_factory=set)
    checks: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    pending_reply: list[FakeRequest] = field(default_factory=list)

    def exempt(self, host: str) -> bool:
        return host in self.exempt_sources

    async def check(self, **kw: Any) -> str:
        self.checks.append(kw)
        if isinstance(self.verdict, Exception):
            raise self.verdict
        return self.verdict

    async def record_failure(self, **kw: Any) -> None:
        # the request is still unanswered while its failure is counted
        kw["answered"] = [r.final_sent for r in self.pending_reply]
        self.failures.append(kw)


def setup(verdict: str | Exception = "clear") -> tuple[Any, Any, ScriptedAbuse]:
    svc = make_services()
    svc.abuse = ScriptedAbuse(verdict)
    return svc, make_runtime(svc), svc.abuse


async def test_banned_source_is_refused_before_the_password_check() -> None:
    svc, rt, abuse = setup("banned")
    phone = Phone("alice", "secret")
    req = phone.register(challenge=await challenge_of(rt, phone))
    await run(rt, "registration", req)
    assert req.status == 403 and req.reply_header("X-Reason") == [
        "too many failed authentications"]
    assert abuse.checks[0]["user"] == "alice" and abuse.checks[0]["source"] == "192.0.2.10"
    assert not svc.store.keys()  # no binding, and the nonce count was never advanced


async def test_banned_source_never_reaches_the_reghook() -> None:
    svc, rt, _ = setup("banned")
    phone = Phone("2001", "pw")
    req = phone.register(challenge=await challenge_of(rt, phone))
    await run(rt, "registration", req)
    assert req.status == 403 and svc.caller.calls == []


async def test_spent_nonce_gets_a_fresh_challenge() -> None:
    _, rt, _ = setup("nonce_spent")
    phone = Phone("alice", "secret")
    first = await challenge_of(rt, phone)
    req = phone.register(challenge=first)
    await run(rt, "registration", req)
    assert req.status == 401
    fresh = req.reply_header("WWW-Authenticate")[0]
    assert parse_challenge(fresh).nonce != parse_challenge(first).nonce
    assert "stale" not in fresh


async def test_failures_are_counted_before_the_403() -> None:
    _, rt, abuse = setup()
    for user, password, why in (("alice", "wrong", "invalid credentials"),
                                ("carol", "x", "no matching client")):
        phone = Phone(user, password)
        req = phone.register(challenge=await challenge_of(rt, phone))
        abuse.pending_reply[:] = [req]
        await run(rt, "registration", req)
        assert req.status == 403 and req.reply_header("X-Reason") == [why]
        assert abuse.failures[-1]["user"] == user and abuse.failures[-1]["answered"] == [False]
    assert len(abuse.failures) == 2


async def test_denying_reghook_counts_a_failure() -> None:
    svc, rt, abuse = setup()
    svc.caller.ok("http://hooks/reg", {"status": "fail"})
    phone = Phone("2001", "pw")
    req = phone.register(challenge=await challenge_of(rt, phone))
    await run(rt, "registration", req)
    assert req.status == 403 and [f["user"] for f in abuse.failures] == ["2001"]


async def test_exempt_source_is_not_checked() -> None:
    _, rt, abuse = setup("banned")
    abuse.exempt_sources.add("192.0.2.10")
    phone = Phone("alice", "secret")
    req = phone.register(challenge=await challenge_of(rt, phone))
    await run(rt, "registration", req)
    assert req.status == 200 and abuse.checks == []


async def test_unavailable_abuse_store_is_503_with_retry_after() -> None:
    _, rt, _ = setup(StoreError("down"))
    phone = Phone("alice", "secret")
    req = phone.register(challenge=await challenge_of(rt, phone))
    await run(rt, "registration", req)
    assert req.status == 503 and req.reply_header("Retry-After") == ["30"]


def _invite_with(auth: str, n: int) -> FakeRequest:
    raw = INVITE.format(number="1000", caller="alice", host="192.0.2.10", n=n).replace(
        "Max-Forwards: 70", f"Max-Forwards: 70\nAuthorization: {auth}")
    return FakeRequest(raw, source=Peer("192.0.2.10", 5072, "udp"))


async def _client_invite(rt: Any, password: str) -> FakeRequest:
    first = FakeRequest(INVITE.format(number="1000", caller="alice", host="192.0.2.10", n=1),
                        source=Peer("192.0.2.10", 5072, "udp"))
    await run(rt, "inbound_call", first)
    challenge = parse_challenge(first.reply_header("WWW-Authenticate")[0])
    auth = DigestClient().authorization(challenge, method="INVITE", uri="sip:1000@pbx.test",
                                        username="alice", password=password)
    req = _invite_with(auth, 2)
    await run(rt, "inbound_call", req)
    return req


async def test_invite_from_banned_source_is_refused() -> None:
    _, rt, abuse = setup("banned")
    req = await _client_invite(rt, "secret")
    assert req.status == 403 and req.reply_header("X-Reason") == [
        "too many failed authentications"]
    assert abuse.failures == []


async def test_invite_with_wrong_password_is_counted() -> None:
    _, rt, abuse = setup()
    req = await _client_invite(rt, "wrong")
    assert req.status == 403 and req.reply_header("X-Reason") == ["invalid credentials"]
    assert [(f["user"], f["method"]) for f in abuse.failures] == [("alice", "INVITE")]
