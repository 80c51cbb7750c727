"""The CallHook adapter reports what happened, one event per kind, and inbound_call.yaml
chooses the SIP status (spec §5.2: 480 when no usable reply came, 500 for a reply that
is no CallScript or a URL that cannot be called); every failure is a callhook:error."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from engine.errors import HookError
from engine.hooks.breaker import Breakers
from engine.hooks.callhook import CallHook
from engine.ports import HookReply
from tests.unit.machines.harness import CONFIG, make_runtime, make_services, run
from tests.unit.machines.test_inbound_call import invite

URL = "http://hooks/did"


def services() -> Any:
    config = copy.deepcopy(CONFIG)
    config["domains"]["pbx.test"]["trunks"][0]["dialplan"]["44*"] = {
        "callHook": URL, "statusHook": "http://hooks/status"}
    return make_services(config)


@pytest.mark.parametrize(("reply", "event", "status"), [
    (HookReply(500, b"boom"), "script.http_error", 480),
    (HookReply(302, b""), "script.http_error", 480),
    (HookError("slow", kind="timeout"), "script.timeout", 480),
    (HookError("refused", kind="connect"), "script.unreachable", 480),
    (HookReply(200, b"not json"), "script.invalid_reply", 480),
    (HookError("big", kind="too_large"), "script.invalid_reply", 480),
    (HookReply(200, b"0", 0, True), "script.invalid", 500),
    (HookReply(200, b'[{"verb":"dance"}]', [{"verb": "dance"}], True), "script.invalid", 500),
    (HookError("bad host", kind="url"), "script.bad_request", 500),
])
async def test_each_failure_is_its_own_event_and_the_machine_picks_the_status(
        reply: Any, event: str, status: int) -> None:
    svc = services()
    svc.caller.replies[URL] = reply
    rt = make_runtime(svc)
    req = invite("441234")
    inst = await run(rt, "inbound_call", req)
    assert event in [e.event for e in inst.trace], inst.trace.to_list()
    assert req.status == status and req.reply_header("X-Reason"), req.replies
    assert svc.statushook.names() == ["callhook:error"]
    assert inst.trace.path()[-1] == "rejected"


async def test_open_circuit_is_480_without_asking_the_hook() -> None:
    svc = services()
    svc.callhook = CallHook(svc.caller, timeout=1.0, breakers=Breakers(threshold=1,
                                                                      cooldown=60))
    svc.caller.replies[URL] = HookReply(500, b"boom")
    rt = make_runtime(svc)
    await run(rt, "inbound_call", invite("441234"))
    req = invite("441234", n=2)
    inst = await run(rt, "inbound_call", req)
    assert "script.circuit_open" in [e.event for e in inst.trace]
    assert req.status == 480 and len(svc.caller.calls) == 1
    error = svc.statushook.events[-1]["error"]
    assert error["name"] == "CallHookError" and "circuit open" in error["message"]
