"""RegHook reply schema/classification and CallHook reply classification (pure)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from engine.hooks.callhook import CallHookFailed, CallHookReply
from engine.hooks.callhook import interpret_reply as callhook_reply
from engine.hooks.reghook import Denied, Granted, HookFailed, interpret_reply, reply_validator


def test_schema_file_is_valid_2020_12() -> None:
    validator = reply_validator()
    assert validator.schema["$schema"].endswith("2020-12/schema")


def test_grant_full() -> None:
    reply = {"status": "ok", "expires": 600, "dialplan": {"*": "http://h/c"},
             "codecs": ["PCMU", "DIRECT"], "extra": {"kept": True}}
    result = interpret_reply(200, reply)
    assert result == Granted(expires=600, dialplan={"*": "http://h/c"},
                             codecs=("PCMU", "DIRECT"), aor=None, raw=reply)
    assert result.raw["extra"] == {"kept": True}  # type: ignore[union-attr]


@pytest.mark.parametrize("status", ["OK", "Ok", "oK", "ok"])
def test_grant_status_is_case_insensitive(status: str) -> None:
    assert isinstance(interpret_reply(200, {"status": status}), Granted)


def test_grant_minimal_has_none_fields() -> None:
    assert interpret_reply(201, {"status": "ok"}) == Granted(
        expires=None, dialplan=None, codecs=None, aor=None, raw={"status": "ok"})


def test_grant_expires_float_integral_becomes_int() -> None:
    result = interpret_reply(200, {"status": "ok", "expires": 3600.0})
    assert isinstance(result, Granted)
    assert result.expires == 3600
    assert type(result.expires) is int


@pytest.mark.parametrize(("reply", "aor"), [
    ({"status": "ok", "aor": "2000"}, "2000"),
    ({"status": "ok", "user": "3000"}, "3000"),
    ({"status": "ok", "aor": "2000", "user": "3000"}, "2000"),
])
def test_grant_aor_or_user_s2(reply: dict[str, Any], aor: str) -> None:
    result = interpret_reply(200, reply)
    assert isinstance(result, Granted)
    assert result.aor == aor


@pytest.mark.parametrize(("reply", "blacklist"), [
    ({"status": "fail"}, False),
    ({"status": "denied", "blacklist": True}, True),
    ({"status": "denied", "blacklist": False}, False),
    ({"status": ""}, False),
    # a denial with odd grant fields is still a denial (grant fields checked on grants only)
    ({"status": "nope", "expires": "soon", "codecs": "PCMU"}, False),
])
def test_denied(reply: dict[str, Any], blacklist: bool) -> None:
    assert interpret_reply(200, reply) == Denied(blacklist=blacklist, status=reply["status"])


@pytest.mark.parametrize("reply", [
    {},                                                 # no status (original crashed)
    {"status": 1},
    {"status": None},
    {"status": "ok", "expires": -1},
    {"status": "ok", "expires": "3600"},
    {"status": "ok", "expires": 1.5},
    {"status": "ok", "expires": True},
    {"status": "ok", "dialplan": ["x"]},
    {"status": "ok", "dialplan": "x"},
    {"status": "ok", "codecs": "PCMU"},
    {"status": "ok", "codecs": [1]},
    {"status": "ok", "codecs": [""]},
    {"status": "ok", "aor": ""},
    {"status": "ok", "user": 5},
    {"status": "no", "blacklist": "yes"},
])
def test_schema_violations_are_hook_failed(reply: dict[str, Any]) -> None:
    result = interpret_reply(200, reply)
    assert isinstance(result, HookFailed)
    assert result.kind == "schema"
    assert result.status == 200
    assert result.message


@pytest.mark.parametrize("payload", [None, [], "ok", 3, ["status", "ok"]])
def test_non_object_json_is_json_failure(payload: Any) -> None:
    result = interpret_reply(200, payload)
    assert result == HookFailed("json", 200, "RegHook reply is not a JSON object")


@pytest.mark.parametrize("status", [100, 204 + 100, 301, 404, 418, 500, 503])
def test_non_2xx_is_status_failure_with_http_code(status: int) -> None:
    result = interpret_reply(status, {"status": "ok"})
    assert isinstance(result, HookFailed)
    assert (result.kind, result.status) == ("status", status)


# --------------------------------------------------------------------------- CallHook


def test_callhook_array_script() -> None:
    script = [{"verb": "connect", "destination": [{"type": "client", "address": "2000"}]}]
    assert callhook_reply(200, json.dumps(script).encode()) == CallHookReply(script)


def test_callhook_object_returned_as_is() -> None:
    # Validating the CallHookReply shape is the call machine's job.
    assert callhook_reply(200, b'{"verb":"pause"}') == CallHookReply({"verb": "pause"})


@pytest.mark.parametrize("body", [b"null", b"false", b"0", b'""', b" 0.0 "])
def test_callhook_falsy_json_is_invalid_500(body: bytes) -> None:
    result = callhook_reply(200, body)
    assert isinstance(result, CallHookFailed)
    assert (result.kind, result.status) == ("empty", 200)


@pytest.mark.parametrize("body", [b"[]", b"{}", b"1", b"true", b'"x"'])
def test_callhook_truthy_json_values_pass(body: bytes) -> None:
    assert isinstance(callhook_reply(200, body), CallHookReply)


@pytest.mark.parametrize(("status", "body", "kind"), [
    (404, b"[]", "status"), (302, b"", "status"), (500, b"{}", "status"),
    (200, b"<html>", "json"), (200, b"", "json"), (200, b"\xff\xfe", "json"),
])
def test_callhook_unavailable_480(status: int, body: bytes, kind: str) -> None:
    result = callhook_reply(status, body)
    assert isinstance(result, CallHookFailed)
    assert (result.kind, result.status) == (kind, status)


class _ScriptedCaller:
    """HookCaller returning queued replies (a unit fake: no network)."""

    def __init__(self, *replies: Any) -> None:
        self.replies = list(replies)
        self.calls = 0

    async def post(self, url: str, payload: Any, *, timeout: float) -> Any:
        from engine.ports import HookReply

        self.calls += 1
        status, body = self.replies.pop(0)
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        try:
            parsed, is_json = json.loads(raw), True
        except ValueError:
            parsed, is_json = None, False
        return HookReply(status, raw, parsed, is_json)


async def test_identical_reply_bodies_share_one_decision(monkeypatch) -> None:
    import engine.hooks.reghook as reghook_mod

    grant = {"status": "ok", "expires": 60}
    caller = _ScriptedCaller((200, grant), (200, grant), (200, {"status": "fail"}),
                             (200, {"status": "ok", "expires": "x"}),
                             (200, {"status": "ok", "expires": "x"}), (500, grant))
    hook = reghook_mod.RegHook(caller, timeout=1)
    seen: list[Any] = []
    real = reghook_mod.interpret_reply
    monkeypatch.setattr(reghook_mod, "interpret_reply",
                        lambda status, payload: seen.append(payload) or real(status, payload))
    first = await hook.call("http://h/r", {})
    second = await hook.call("http://h/r", {})
    assert isinstance(first, Granted) and second is first
    assert isinstance(await hook.call("http://h/r", {}), Denied)
    # invalid replies are judged every time (and logged every time), never remembered
    for _ in range(2):
        bad = await hook.call("http://h/r", {})
        assert isinstance(bad, HookFailed) and bad.kind == "schema"
    # the same bytes with a failing HTTP status are a failure, not the remembered grant
    failed = await hook.call("http://h/r", {})
    assert isinstance(failed, HookFailed) and failed.status == 500
    assert len(seen) == 5  # the second grant was the only one not re-validated
