"""The inbound_call pipeline and CallScript runner, with fakes (no media legs here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine.ports import Binding, HookReply, Peer
from tests.unit.machines.harness import FakeRequest, make_runtime, make_services, run

INVITE = """INVITE sip:{number}@pbx.test SIP/2.0
Via: SIP/2.0/UDP {host}:5072;branch=z9hG4bK-{n}
From: "Alice" <sip:{caller}@pbx.test>;tag=a{n}
To: <sip:{number}@pbx.test>
Call-ID: call-{n}@{host}
CSeq: 1 INVITE
Contact: <sip:{caller}@{host}:5072>
Max-Forwards: 70
X-Custom: hello
Content-Type: application/sdp
Content-Length: 0

"""


def invite(number: str, *, caller: str = "alice", host: str = "203.0.113.9",
           n: int = 1) -> FakeRequest:
    return FakeRequest(INVITE.format(number=number, caller=caller, host=host, n=n),
                       source=Peer(host, 5072, "udp"))


def script_reply(svc: Any, url: str, script: Any, status: int = 200) -> None:
    svc.caller.replies[url] = HookReply(status, json.dumps(script).encode(), script, True)


async def test_trunk_call_reaches_the_callhook_and_a_response_verb_answers() -> None:
    svc = make_services()
    rt = make_runtime(svc)
    script_reply(svc, "http://hooks/did", [{"verb": "response", "code": 486}])
    req = invite("441234")
    inst = await run(rt, "inbound_call", req)
    assert req.status == 486, inst.trace.to_list()
    url, body = svc.caller.calls[0]
    assert url == "http://hooks/did"
    assert body["source"] == {"id": 7, "name": "carrier"}  # no credentials (S-4)
    assert body["to"] == "441234" and body["from"] == "alice" and body["count"] == 0
    assert body["domain"] == "pbx.test" and body["sourceAddress"] == "203.0.113.9"
    assert body["headers"]["X-Custom"] == "hello" and "authorization" not in body["headers"]
    assert inst.state == "ending" and inst.status == "done"


async def test_response_ends_the_script() -> None:
    svc = make_services()
    rt = make_runtime(svc)
    script_reply(svc, "http://hooks/did", [{"verb": "response", "code": 404},
                                           {"verb": "pause", "duration": 5}])
    req = invite("441234")
    inst = await run(rt, "inbound_call", req)
    assert req.status == 404
    assert [e.event for e in inst.trace].count("verb.done") == 1  # the pause never ran (D-11)
    assert inst.done


async def test_no_dialplan_match_is_404() -> None:
    svc = make_services()
    rt = make_runtime(svc)
    req = invite("12345")
    await run(rt, "inbound_call", req)
    assert req.status == 404 and req.reply_header("X-Reason") == ["no dialplan match"]


async def test_client_without_credentials_is_challenged() -> None:
    rt = make_runtime(make_services())
    req = invite("1000", host="192.0.2.10")
    await run(rt, "inbound_call", req)
    assert req.status == 401


async def test_callhook_failures_map_to_480_and_500() -> None:
    svc = make_services()
    rt = make_runtime(svc)
    cases = [
        (HookReply(500, b"boom"), 480), (HookReply(200, b"not json"), 480),
        (HookReply(200, b'{"verb":"x"}', {"verb": "x"}, True), 500),
        (HookReply(200, b'[{"verb":"dance"}]', [{"verb": "dance"}], True), 500),
    ]
    for n, (reply, status) in enumerate(cases):
        svc.caller.replies["http://hooks/did"] = reply
        req = invite("441234", n=n)
        await run(rt, "inbound_call", req)
        assert req.status == status, (reply, req.replies)
        assert req.reply_header("X-Reason"), req.replies


async def test_unresolved_script_refetches_with_count_and_runs_the_new_script() -> None:
    svc = make_services()
    rt = make_runtime(svc)

    def script(body: dict[str, Any]) -> list[dict[str, Any]]:
        if body["count"] == 0:
            return [{"verb": "connect", "dest": {"type": "client", "address": "nobody"}}]
        return [{"verb": "response", "code": 486}]

    class Dynamic:
        async def post(self, url: str, payload: Any, *, timeout: float) -> HookReply:
            svc.caller.calls.append((url, payload))
            value = script(payload)
            return HookReply(200, json.dumps(value).encode(), value, True)

    svc.callhook._caller = Dynamic()
    req = invite("441234")
    await run(rt, "inbound_call", req, settle=200)
    assert [b["count"] for _, b in svc.caller.calls] == [0, 1]
    assert req.status == 486


async def test_script_that_never_resolves_ends_with_604_after_the_retries() -> None:
    svc = make_services(CALLHOOK_MAX_RETRIES="2")
    rt = make_runtime(svc)
    script_reply(svc, "http://hooks/did", [{"verb": "pause", "duration": 0}])
    req = invite("441234")
    await run(rt, "inbound_call", req, settle=300, tick=0.1)
    assert len(svc.caller.calls) == 3
    assert req.status == 604


async def test_registered_client_call_uses_its_registration_dialplan() -> None:
    svc = make_services()
    rt = make_runtime(svc)
    await svc.store.save_binding(domain="pbx.test", user="alice", binding=Binding(
        contact="sip:alice@192.0.2.10:5072", proxy="sip:192.0.2.10:5072",
        dialplan={"1???": "http://hooks/call"}, codecs=["PCMU"], expires=300))
    script_reply(svc, "http://hooks/call", [{"verb": "response", "code": 480}])
    from engine.sip.digest import DigestClient, parse_challenge

    first = invite("1000", host="192.0.2.10")
    await run(rt, "inbound_call", first)
    challenge = parse_challenge(first.reply_header("WWW-Authenticate")[0])
    auth = DigestClient().authorization(challenge, method="INVITE", uri="sip:1000@pbx.test",
                                        username="alice", password="secret")
    raw = INVITE.format(number="1000", caller="alice", host="192.0.2.10", n=2).replace(
        "Max-Forwards: 70", f"Max-Forwards: 70\nAuthorization: {auth}")
    req = FakeRequest(raw, source=Peer("192.0.2.10", 5072, "udp"))
    inst = await run(rt, "inbound_call", req)
    assert req.status == 480, inst.trace.to_list()
    assert svc.caller.calls[-1][1]["source"] == "client"


async def test_file_callhook_renders_a_template(tmp_path: Path) -> None:
    (tmp_path / "script.json").write_text(
        '[{"verb": "response", "code": {{ 486 if to == "9900" else 603 }}}]')
    svc = make_services(FILE_PATH=str(tmp_path))
    rt = make_runtime(svc)
    req = invite("9900")
    await run(rt, "inbound_call", req)
    assert req.status == 486


async def test_unknown_domain_404() -> None:
    rt = make_runtime(make_services())
    req = FakeRequest(INVITE.format(number="1", caller="a", host="203.0.113.9", n=1).replace(
        "INVITE sip:1@pbx.test", "INVITE sip:1@elsewhere.test"))
    await run(rt, "inbound_call", req)
    assert req.status == 404 and req.reply_header("X-Reason") == ["unknown domain"]


def _trunk_invite(ruri_user: str, to_user: str, n: int = 9) -> FakeRequest:
    raw = INVITE.format(number=ruri_user, caller="alice", host="203.0.113.9", n=n)
    raw = raw.replace(f"To: <sip:{ruri_user}@pbx.test>", f"To: <sip:{to_user}@pbx.test>")
    return FakeRequest(raw, source=Peer("203.0.113.9", 5072, "udp"))


async def test_trunk_call_routes_the_request_uri_user_by_default() -> None:
    svc = make_services()
    rt = make_runtime(svc)
    script_reply(svc, "http://hooks/did", [{"verb": "response", "code": 486}])
    req = _trunk_invite("441234", "550000")
    await run(rt, "inbound_call", req)
    assert req.status == 486 and svc.caller.calls[0][1]["to"] == "441234"


async def test_trunk_number_from_to_routes_the_to_user() -> None:
    import copy

    from tests.unit.machines.harness import CONFIG

    config = copy.deepcopy(CONFIG)
    config["domains"]["pbx.test"]["trunks"][0]["number_from"] = "to"
    svc = make_services(config)
    rt = make_runtime(svc)
    script_reply(svc, "http://hooks/did", [{"verb": "response", "code": 486}])
    routed = _trunk_invite("550000", "441234")  # the To user matches "44*"
    await run(rt, "inbound_call", routed)
    assert routed.status == 486 and svc.caller.calls[0][1]["to"] == "441234"
    unrouted = _trunk_invite("441234", "550000", n=10)  # the Request-URI user no longer counts
    await run(rt, "inbound_call", unrouted)
    assert unrouted.status == 404 and len(svc.caller.calls) == 1
