"""machines/digest_auth.yaml alone: the child machine both the registration and the call
machines spawn, in its two challenge modes (401/WWW-Authenticate and 407/Proxy-
Authenticate), with and without auth trunks; and how a parent gets its outcome."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from engine.actions.auth import digest_auth_vars
from engine.actions.reg import Grant
from engine.hooks.reghook import Granted
from engine.ports import Peer
from engine.sip.digest import DigestClient, parse_challenge
from tests.unit.machines.harness import CONFIG, FakeRequest, make_runtime, make_services, run
from tests.unit.machines.test_inbound_call import INVITE

AUTH_TRUNK = {"id": 9, "name": "branch", "authType": "authentication", "authUser": "branch",
              "authPass": "branchpw", "dialplan": {"1*": "http://hooks/branch"}}


def config_with_auth_trunk() -> dict[str, Any]:
    config = copy.deepcopy(CONFIG)
    config["domains"]["pbx.test"]["trunks"].append(AUTH_TRUNK)
    return config


def request(user: str, *, header: str | None = None, n: int = 1) -> FakeRequest:
    """An INVITE from ``user`` (From), with an optional credentials header line."""
    raw = INVITE.format(number="1000", caller=user, host="192.0.2.10", n=n)
    if header:
        raw = raw.replace("Max-Forwards: 70", f"Max-Forwards: 70\n{header}")
    return FakeRequest(raw, source=Peer("192.0.2.10", 5072, "udp"))


async def authenticate(rt: Any, req: FakeRequest, *, proxy: bool = False,
                       trunks: bool = False) -> Any:
    """Run digest_auth alone for ``req``, as ``auth.authenticate`` starts it."""
    child = rt.spawn("digest_auth", vars=digest_auth_vars(req, "pbx.test", proxy=proxy,
                                                          trunks=trunks))
    await child.send("start")
    for _ in range(50):
        if child.done:
            break
        await asyncio.sleep(0)
    assert child.done, child.trace.to_list()
    return child


def answer(challenge: str, *, proxy: bool, user: str, password: str) -> str:
    value = DigestClient().authorization(parse_challenge(challenge), method="INVITE",
                                         uri="sip:1000@pbx.test", username=user,
                                         password=password)
    return f"{'Proxy-Authorization' if proxy else 'Authorization'}: {value}"


async def challenged_then(rt: Any, user: str, password: str, *, proxy: bool = False,
                          trunks: bool = False) -> tuple[FakeRequest, Any]:
    """First request → challenge; the answered one → the child that decided it."""
    first = request(user)
    child = await authenticate(rt, first, proxy=proxy, trunks=trunks)
    assert child.state == "challenged"
    name = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
    header = answer(first.reply_header(name)[0], proxy=proxy, user=user, password=password)
    req = request(user, header=header, n=2)
    return req, await authenticate(rt, req, proxy=proxy, trunks=trunks)


@pytest.mark.parametrize(("proxy", "status", "header"), [
    (False, 401, "WWW-Authenticate"), (True, 407, "Proxy-Authenticate")])
async def test_no_credentials_is_challenged_in_the_mode_asked(proxy: bool, status: int,
                                                              header: str) -> None:
    rt = make_runtime(make_services())
    req = request("alice")
    child = await authenticate(rt, req, proxy=proxy)
    assert child.state == "challenged" and req.status == status
    other = "WWW-Authenticate" if proxy else "Proxy-Authenticate"
    assert parse_challenge(req.reply_header(header)[0]).realm == "pbx.test"
    assert req.reply_header(other) == []
    assert child.result == {"creds": None, "grant": None, "trunk": None, "status": status,
                            "why": None, "challenge": True}


@pytest.mark.parametrize("proxy", [False, True])
async def test_static_password_is_granted_with_the_clients_settings(proxy: bool) -> None:
    rt = make_runtime(make_services())
    req, child = await challenged_then(rt, "alice", "secret", proxy=proxy)
    assert child.state == "granted" and req.replies == []  # the parent answers a grant
    result = child.result
    assert result["creds"].username == "alice" and result["status"] is None
    assert isinstance(result["grant"], Grant) and result["grant"].expires == 600
    assert result["trunk"] is None


async def test_proxy_mode_reads_only_proxy_authorization() -> None:
    rt = make_runtime(make_services())
    first = request("alice")
    await authenticate(rt, first)
    www = answer(first.reply_header("WWW-Authenticate")[0], proxy=False, user="alice",
                 password="secret")
    req = request("alice", header=www, n=2)
    child = await authenticate(rt, req, proxy=True)
    assert child.state == "challenged" and req.status == 407


@pytest.mark.parametrize("proxy", [False, True])
async def test_wrong_password_is_rejected_403_and_reported(proxy: bool) -> None:
    rt = make_runtime(make_services())
    req, child = await challenged_then(rt, "alice", "guess", proxy=proxy)
    assert child.state == "rejected" and req.status == 403
    assert req.reply_header("X-Reason") == ["invalid credentials"]
    assert child.result["status"] == 403 and child.result["why"] == "invalid credentials"
    assert child.result["challenge"] is False and child.result["creds"].username == "alice"


async def test_auth_trunk_is_tried_only_when_asked() -> None:
    rt = make_runtime(make_services(config_with_auth_trunk()))
    req, child = await challenged_then(rt, "branch", "branchpw", trunks=True)
    assert child.state == "granted" and req.replies == []
    assert child.result["trunk"].name == "branch" and child.result["grant"] is None
    # a REGISTER-style check (no trunks): "branch" is no client of the domain
    req, child = await challenged_then(rt, "branch", "branchpw", trunks=False)
    assert child.state == "rejected" and req.reply_header("X-Reason") == [
        "no matching client"]


async def test_wrong_trunk_password_is_403() -> None:
    rt = make_runtime(make_services(config_with_auth_trunk()))
    req, child = await challenged_then(rt, "branch", "guess", trunks=True)
    assert child.state == "rejected" and req.reply_header("X-Reason") == [
        "invalid trunk credentials"]


async def test_reghook_grant_and_blacklist() -> None:
    svc = make_services()
    rt = make_runtime(svc)
    svc.caller.ok("http://hooks/reg", {"status": "ok", "expires": 90})
    req, child = await challenged_then(rt, "2001", "pw", proxy=True)
    assert child.state == "granted" and isinstance(child.result["grant"], Granted)
    assert svc.caller.calls[0][1]["method"] == "INVITE"
    svc.caller.ok("http://hooks/reg", {"status": "no", "blacklist": True})
    req, child = await challenged_then(rt, "2002", "pw")
    assert child.state == "rejected" and req.reply_header("X-Reason") == ["potential spammer"]


async def test_stale_nonce_is_challenged_with_stale_true() -> None:
    svc = make_services()
    rt = make_runtime(svc)
    first = request("alice")
    await authenticate(rt, first, proxy=True)
    svc.digest._clock = lambda: 10**10  # the nonce is now far older than its lifetime
    header = answer(first.reply_header("Proxy-Authenticate")[0], proxy=True, user="alice",
                    password="secret")
    req = request("alice", header=header, n=2)
    child = await authenticate(rt, req, proxy=True)
    assert child.state == "challenged" and req.status == 407
    assert "stale=true" in req.reply_header("Proxy-Authenticate")[0]
    assert child.result["creds"].username == "alice"


async def test_malformed_credentials_are_400() -> None:
    rt = make_runtime(make_services())
    req = request("alice", header='Authorization: Digest username="alice"')
    child = await authenticate(rt, req)
    assert child.state == "rejected" and req.status == 400


def broken_challenges(svc: Any) -> None:
    def boom(*args: Any, **kw: Any) -> Any:
        raise RuntimeError("challenge cannot be built")
    svc.digest.challenge_headers = boom


async def test_an_action_failure_ends_failed_without_a_reply() -> None:
    svc = make_services()
    broken_challenges(svc)
    rt = make_runtime(svc)
    req = request("alice")
    child = await authenticate(rt, req)
    assert child.status == "failed" and req.replies == []


# ------------------------------------------------------------------ in a parent


@pytest.mark.parametrize("machine", ["registration", "inbound_call"])
async def test_a_failed_child_makes_the_parent_answer_500(machine: str) -> None:
    svc = make_services()
    broken_challenges(svc)
    rt = make_runtime(svc)
    req = request("alice")
    if machine == "registration":
        req = FakeRequest(str(req.message.to_bytes(), "utf-8").replace("\r\n", "\n").replace(
            "INVITE sip:1000@pbx.test", "REGISTER sip:pbx.test").replace("1 INVITE",
                                                                         "1 REGISTER"))
    inst = await run(rt, machine, req)
    assert inst.trace.path()[-1] in ("failed", "ending"), inst.trace.to_list()
    assert req.status == 500 and req.reply_header("X-Reason") == ["internal error"]


async def test_a_cancelled_call_ends_its_pending_authentication() -> None:
    svc = make_services()
    rt = make_runtime(svc)
    first = request("2001")
    await authenticate(rt, first)
    header = answer(first.reply_header("WWW-Authenticate")[0], proxy=False, user="2001",
                    password="pw")
    # the RegHook answers only after the caller has cancelled
    svc.caller.replies["http://hooks/reg"] = (0.05, None)
    req = request("2001", header=header, n=2)
    call = rt.spawn("inbound_call", vars={"req": req})
    await call.send("start")
    for _ in range(10):
        await asyncio.sleep(0)
    (child,) = [i for i in rt.live.values() if i.machine.name == "digest_auth"]
    assert child.state == "calling_reghook" and child.parent is call
    await call.send("sip.cancel")
    assert call.state == "cancelled" and child.status == "killed"
    await asyncio.sleep(0.1)
    assert req.replies == []  # the killed child never answered
