"""RegHook fallback URL and breaker plumbing (pure decisions; a scripted fake HookCaller).

The real-socket and real-daemon behaviour is in tests/e2e/test_hook_fallback.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from engine.errors import HookError
from engine.hooks.breaker import Breakers
from engine.hooks.callhook import CallHook, CallHookFailed, CallHookReply
from engine.hooks.callhook import wants_fallback as callhook_wants_fallback
from engine.hooks.client import dumps
from engine.hooks.reghook import Denied, Granted, HookFailed, RegHook, wants_fallback
from engine.ports import HookReply

PRIMARY = "http://h/reg"
FALLBACK = "http://h/reg-fb"
OK = {"status": "ok", "dialplan": {"*": "http://h/c"}, "codecs": ["PCMU"]}


class Scripted:
    """A HookCaller whose answer per URL is a reply dict, an HTTP status or a HookError."""

    def __init__(self, answers: Mapping[str, Any]) -> None:
        self.answers = dict(answers)
        self.sent: list[str] = []

    async def post(self, url: str, payload: Any, *, timeout: float) -> HookReply:
        self.sent.append(url)
        answer = self.answers[url]
        if isinstance(answer, HookError):
            raise answer
        if isinstance(answer, int):
            return HookReply(status=answer, body=b"")
        body = dumps(answer)
        return HookReply(status=200, body=body, json=answer, is_json=True)


def call(caller: Scripted, *, fallback: str | None = FALLBACK,
         breakers: Breakers | None = None) -> Any:
    hook = RegHook(caller, timeout=1, breakers=breakers)
    return asyncio.run(hook.call(PRIMARY, {"username": "u"}, fallback=fallback))


@pytest.mark.parametrize("primary", [
    HookError("refused", kind="connect"),
    HookError("slow", kind="timeout"),
    500, 503,
    {"no": "status"},  # schema-invalid reply
])
def test_failed_primary_is_answered_by_the_fallback(primary: Any) -> None:
    caller = Scripted({PRIMARY: primary, FALLBACK: OK})
    assert isinstance(call(caller), Granted)
    assert caller.sent == [PRIMARY, FALLBACK]


@pytest.mark.parametrize("primary", [{"status": "fail"}, 404, 403])
def test_a_decision_of_the_primary_is_not_overridden(primary: Any) -> None:
    caller = Scripted({PRIMARY: primary, FALLBACK: OK})
    result = call(caller)
    assert isinstance(result, Denied | HookFailed) and not isinstance(result, Granted)
    assert caller.sent == [PRIMARY]


def test_both_failing_gives_the_fallbacks_outcome() -> None:
    caller = Scripted({PRIMARY: HookError("slow", kind="timeout"),
                       FALLBACK: HookError("refused", kind="connect")})
    result = call(caller)
    assert isinstance(result, HookFailed) and result.kind == "connect"


def test_without_fallback_the_outcome_is_unchanged() -> None:
    caller = Scripted({PRIMARY: HookError("slow", kind="timeout")})
    result = call(caller, fallback=None)
    assert isinstance(result, HookFailed) and result.kind == "timeout"
    assert caller.sent == [PRIMARY]


def test_same_url_as_fallback_is_never_sent_twice() -> None:
    caller = Scripted({PRIMARY: HookError("slow", kind="timeout")})
    call(caller, fallback=PRIMARY)
    assert caller.sent == [PRIMARY]


def test_open_breaker_skips_the_primary_and_goes_to_the_fallback() -> None:
    breakers = Breakers(threshold=2, cooldown=60)
    caller = Scripted({PRIMARY: 500, FALLBACK: OK})
    for _ in range(4):
        assert isinstance(call(caller, breakers=breakers), Granted)
    assert caller.sent == [PRIMARY, FALLBACK, PRIMARY, FALLBACK, FALLBACK, FALLBACK]


def test_open_breaker_without_fallback_is_circuit_open() -> None:
    breakers = Breakers(threshold=1, cooldown=60)
    caller = Scripted({PRIMARY: HookError("refused", kind="connect")})
    call(caller, fallback=None, breakers=breakers)
    result = call(caller, fallback=None, breakers=breakers)
    assert isinstance(result, HookFailed) and result.kind == "circuit_open"
    assert caller.sent == [PRIMARY]


def test_relayed_4xx_does_not_open_the_breaker() -> None:
    breakers = Breakers(threshold=1, cooldown=60)
    caller = Scripted({PRIMARY: 404})
    for _ in range(3):
        result = call(caller, fallback=None, breakers=breakers)
        assert isinstance(result, HookFailed) and result.status == 404
    assert caller.sent == [PRIMARY] * 3


def test_shutdown_is_not_a_reason_to_ask_the_fallback() -> None:
    assert not wants_fallback(HookFailed("closed"))
    assert not callhook_wants_fallback(CallHookFailed("closed"))
    assert callhook_wants_fallback(CallHookFailed("status", 404))  # CallHook: any non-2xx
    assert not callhook_wants_fallback(CallHookReply([]))


def test_callhook_breaker_fails_fast_with_480() -> None:
    breakers = Breakers(threshold=2, cooldown=60)
    caller = Scripted({"http://h/call": 500})
    hook = CallHook(caller, timeout=1, breakers=breakers)

    async def run() -> list[Any]:
        return [await hook.fetch("http://h/call", {"callId": "c"}) for _ in range(3)]

    results = asyncio.run(run())
    assert [r.kind for r in results] == ["status", "status", "circuit_open"]
    assert results[2].status is None and caller.sent == ["http://h/call"] * 2
