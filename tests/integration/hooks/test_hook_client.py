"""Webhook client and callers against a real local aiohttp server."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from engine.errors import HookError
from engine.hooks.breaker import Breakers
from engine.hooks.callhook import CallHook, CallHookFailed, CallHookReply
from engine.hooks.client import HookClient
from engine.hooks.payloads import reghook_body
from engine.hooks.reghook import Denied, Granted, HookFailed, RegHook
from engine.hooks.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from engine.hooks.statushook import StatusHook
from tests.fixtures.procs import free_port

pytestmark = pytest.mark.integration

SECRET = "hook-secret"


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    peer: tuple[str, int]
    at: float


@dataclass
class Hooks:
    base: str
    seen: list[Seen] = field(default_factory=list)
    # path → (status, body bytes, content-type, delay seconds)
    replies: dict[str, tuple[int, bytes, str, float]] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def reply(self, path: str, status: int = 200, body: Any = b"", *,
              content_type: str = "application/json", delay: float = 0.0) -> str:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.replies[path] = (status, raw, content_type, delay)
        return self.url(path)


@pytest.fixture
async def hooks() -> AsyncIterator[Hooks]:
    port = free_port()
    state = Hooks(base=f"http://127.0.0.1:{port}")

    async def handler(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        peer = request.transport.get_extra_info("peername") if request.transport else ("", 0)
        state.seen.append(Seen(request.method, request.path, dict(request.headers), body,
                               tuple(peer[:2]), time.monotonic()))
        status, raw, ctype, delay = state.replies.get(request.path, (200, b"{}",
                                                                     "application/json", 0.0))
        if delay:
            await asyncio.sleep(delay)
        if request.path == "/chunked":
            resp = web.StreamResponse(status=status)
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            await resp.write(raw)
            await resp.write_eof()
            return resp
        headers = {"Location": "/elsewhere"} if 300 <= status < 400 else None
        return web.Response(status=status, body=raw, content_type=ctype, headers=headers)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield state
    finally:
        await runner.cleanup()


@pytest.fixture
async def client() -> AsyncIterator[HookClient]:
    c = HookClient(user_agent="dragonpbx-test/1.0", secret=SECRET)
    try:
        yield c
    finally:
        await c.close()


# --------------------------------------------------------------------------- client


async def test_headers_user_agent_content_type_and_verifiable_signature(
        hooks: Hooks, client: HookClient) -> None:
    url = hooks.reply("/reg", 200, {"status": "ok"})
    reply = await client.post(url, {"b": 1, "a": "é"}, timeout=2)
    assert reply.status == 200
    assert reply.json == {"status": "ok"}
    seen = hooks.seen[-1]
    assert seen.method == "POST"
    assert seen.headers["User-Agent"] == "dragonpbx-test/1.0"
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.body == '{"b":1,"a":"é"}'.encode()
    assert seen.headers["Content-Length"] == str(len(seen.body))
    assert abs(int(seen.headers[TIMESTAMP_HEADER]) - time.time()) < 5
    assert verify(SECRET, seen.headers, seen.body)
    assert not verify("wrong", seen.headers, seen.body)


async def test_unsigned_without_secret(hooks: Hooks) -> None:
    plain = HookClient(user_agent="ua")
    try:
        await plain.post(hooks.url("/x"), {}, timeout=2)
    finally:
        await plain.close()
    headers = hooks.seen[-1].headers
    assert SIGNATURE_HEADER not in headers
    assert TIMESTAMP_HEADER not in headers
    assert headers["User-Agent"] == "ua"


async def test_timeout_raises_within_bound(hooks: Hooks, client: HookClient) -> None:
    url = hooks.reply("/slow", 200, {"status": "ok"}, delay=3.0)
    started = time.monotonic()
    with pytest.raises(HookError) as info:
        await client.post(url, {}, timeout=0.3)
    elapsed = time.monotonic() - started
    assert info.value.kind == "timeout"
    assert 0.25 <= elapsed < 1.0


async def test_connection_refused_is_connect(client: HookClient) -> None:
    url = f"http://127.0.0.1:{free_port()}/nothing-listens"
    started = time.monotonic()
    with pytest.raises(HookError) as info:
        await client.post(url, {}, timeout=2)
    assert info.value.kind == "connect"
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize("url", ["ftp://h/x", "not a url", "", "http://"])
async def test_bad_url_is_url_kind(client: HookClient, url: str) -> None:
    with pytest.raises(HookError) as info:
        await client.post(url, {}, timeout=1)
    assert info.value.kind == "url"


async def test_invalid_json_reply_gives_none_json(hooks: Hooks, client: HookClient) -> None:
    url = hooks.reply("/html", 200, b"<html>oops</html>", content_type="text/html")
    reply = await client.post(url, {}, timeout=2)
    assert (reply.status, reply.body, reply.json) == (200, b"<html>oops</html>", None)


async def test_json_parsed_whatever_the_content_type(hooks: Hooks, client: HookClient) -> None:
    url = hooks.reply("/text", 200, b'[{"verb":"pause"}]', content_type="text/plain")
    assert (await client.post(url, {}, timeout=2)).json == [{"verb": "pause"}]


@pytest.mark.parametrize("status", [201, 404, 418, 503])
async def test_non_2xx_status_is_returned(hooks: Hooks, client: HookClient, status: int) -> None:
    url = hooks.reply(f"/s{status}", status, {"status": "ok"})
    reply = await client.post(url, {}, timeout=2)
    assert reply.status == status


async def test_redirect_is_not_followed(hooks: Hooks, client: HookClient) -> None:
    url = hooks.reply("/moved", 302, b"")
    reply = await client.post(url, {}, timeout=2)
    assert reply.status == 302
    assert [s.path for s in hooks.seen] == ["/moved"]


async def test_keep_alive_reuses_one_connection(hooks: Hooks, client: HookClient) -> None:
    url = hooks.reply("/ka", 200, {"status": "ok"})
    for _ in range(5):
        await client.post(url, {"n": 1}, timeout=2)
    assert len(hooks.seen) == 5
    assert len({s.peer for s in hooks.seen}) == 1


async def test_reply_size_is_capped(hooks: Hooks) -> None:
    small = HookClient(user_agent="ua", max_reply_bytes=100)
    try:
        url = hooks.reply("/big", 200, b"[" + b"1," * 200 + b"1]")
        with pytest.raises(HookError) as info:
            await small.post(url, {}, timeout=2)
        assert info.value.kind == "too_large"
        chunked = hooks.reply("/chunked", 200, b"[" + b"1," * 200 + b"1]")
        with pytest.raises(HookError) as info:
            await small.post(chunked, {}, timeout=2)
        assert info.value.kind == "too_large"
        ok = hooks.reply("/chunked", 200, b"[1,2]")
        assert (await small.post(ok, {}, timeout=2)).json == [1, 2]
    finally:
        await small.close()


async def test_closed_client_refuses(hooks: Hooks) -> None:
    c = HookClient(user_agent="ua")
    await c.post(hooks.url("/x"), {}, timeout=2)
    await c.close()
    with pytest.raises(HookError) as info:
        await c.post(hooks.url("/x"), {}, timeout=2)
    assert info.value.kind == "closed"


async def test_unserialisable_payload_is_hook_error(hooks: Hooks, client: HookClient) -> None:
    with pytest.raises(HookError) as info:
        await client.post(hooks.url("/x"), {"x": object()}, timeout=2)
    assert info.value.kind == "payload"


# --------------------------------------------------------------------------- RegHook


def _reg_body() -> dict[str, Any]:
    return reghook_body(source_address="192.0.2.1", source_port=5060, method="REGISTER",
                        expires=300, realm="pbx.example", username="1000", nonce="n1",
                        uri="sip:pbx.example", response="deadbeefcafe0001")


async def test_reghook_grant_denied_and_failures(hooks: Hooks, client: HookClient) -> None:
    reg = RegHook(client, timeout=1.0)
    grant = {"status": "OK", "expires": 120, "dialplan": {"*": "http://h/c"}, "codecs": ["PCMU"]}
    result = await reg.call(hooks.reply("/grant", 200, grant), _reg_body())
    assert isinstance(result, Granted)
    assert (result.expires, result.codecs) == (120, ("PCMU",))
    assert json.loads(hooks.seen[-1].body) == _reg_body()
    assert list(json.loads(hooks.seen[-1].body)) == list(_reg_body())  # key order on the wire

    assert await reg.call(hooks.reply("/deny", 200, {"status": "no", "blacklist": True}),
                          _reg_body()) == Denied(blacklist=True, status="no")
    assert await reg.call(hooks.reply("/503", 503, b"busy"), _reg_body()) == HookFailed(
        "status", 503, "RegHook answered HTTP 503")
    bad = await reg.call(hooks.reply("/bad", 200, b"not json"), _reg_body())
    assert isinstance(bad, HookFailed)
    assert bad.kind == "json"
    schema = await reg.call(hooks.reply("/schema", 200, {"expires": 5}), _reg_body())
    assert isinstance(schema, HookFailed)
    assert schema.kind == "schema"
    slow = await reg.call(hooks.reply("/slow", 200, grant, delay=2), _reg_body(), timeout=0.2)
    assert isinstance(slow, HookFailed)
    assert slow.kind == "timeout"


async def test_reghook_logs_never_carry_the_digest_response(
        hooks: Hooks, client: HookClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    reg = RegHook(client, timeout=1.0)
    await reg.call(hooks.reply("/x?token=topsecret", 500, b"deadbeefcafe0001"), _reg_body())
    await reg.call(f"http://127.0.0.1:{free_port()}/r?token=topsecret", _reg_body())
    dump = " ".join(f"{r.getMessage()} {getattr(r, 'fields', '')}" for r in caplog.records)
    assert caplog.records
    assert "deadbeefcafe0001" not in dump
    assert "topsecret" not in dump


# --------------------------------------------------------------------------- CallHook


async def test_callhook_outcomes(hooks: Hooks, client: HookClient) -> None:
    call = CallHook(client, timeout=1.0)
    script = [{"verb": "connect", "destination": [{"type": "client", "address": "2000"}]}]
    assert await call.fetch(hooks.reply("/ok", 200, script), {"callId": "c"}) == CallHookReply(
        script)
    for path, status, body, kind in [
        ("/404", 404, script, "status"), ("/html", 200, b"<x>", "json"),
        ("/null", 200, b"null", "empty"), ("/zero", 200, b"0", "empty"),
    ]:
        result = await call.fetch(hooks.reply(path, status, body), {})
        assert isinstance(result, CallHookFailed), path
        assert (result.kind, result.status) == (kind, status), path
    slow = await call.fetch(hooks.reply("/slow", 200, script, delay=2), {}, timeout=0.2)
    assert isinstance(slow, CallHookFailed)
    assert slow.kind == "timeout"
    refused = await call.fetch(f"http://127.0.0.1:{free_port()}/", {})
    assert isinstance(refused, CallHookFailed)
    assert refused.kind == "connect"
    for url in (None, "", "file:x.json", "ftp://h/"):
        missing = await call.fetch(url, {})
        assert isinstance(missing, CallHookFailed)
        assert missing.kind == "url"


# --------------------------------------------------------------------------- StatusHook


async def test_statushook_delivers_in_order_signed_with_legacy_names(
        hooks: Hooks, client: HookClient) -> None:
    url = hooks.reply("/status", 200, b"")
    sender = StatusHook(client, timeout=1.0, legacy_names=True)
    assert sender.send(url, "call-1", "connect:start", label="l")
    assert sender.send(url, "call-1", "connect:trying", label="l", dest="sip:2000@h", index=0)
    assert sender.send(url, "call-1", "connect:answered", label="l", dest="sip:2000@h",
                       index=0)
    assert not sender.send(url, "call-1", "pause:start", label=False)  # suppressed
    assert not sender.send(None, "call-1", "pause:start")  # no statusHook configured
    await sender.close(grace=2)
    bodies = [s.body.decode() for s in hooks.seen]
    assert bodies == [
        '{"callId":"call-1","event":"connect:start","label":"l"}',
        '{"callId":"call-1","event":"connect:trying ","dest":"sip:2000@h","index":0,'
        '"label":"l"}',
        '{"callId":"call-1","event":"connect:answered ","dest":"sip:2000@h","index":0,'
        '"label":"l"}',
    ]
    assert all(verify(SECRET, s.headers, s.body) for s in hooks.seen)
    assert (sender.sent, sender.failed, sender.dropped) == (3, 0, 0)


async def test_statushook_never_blocks_on_a_slow_receiver(
        hooks: Hooks, client: HookClient) -> None:
    url = hooks.reply("/slowstatus", 200, b"", delay=1.0)
    sender = StatusHook(client, timeout=0.5, queue_size=8, workers=2)
    started = time.monotonic()
    results = [sender.send(url, f"call-{i % 4}", "pause:start", duration=i) for i in range(200)]
    send_elapsed = time.monotonic() - started
    assert send_elapsed < 0.2  # 200 sends, no await, no waiting on the receiver
    assert results.count(True) <= 8
    assert sender.dropped == 200 - results.count(True)
    assert sender.dropped >= 190
    # the loop stays responsive while workers wait on the slow hook
    tick = time.monotonic()
    await asyncio.sleep(0.05)
    assert time.monotonic() - tick < 0.2
    closing = time.monotonic()
    await sender.close(grace=0.2)
    assert time.monotonic() - closing < 1.0  # grace + cancellation, not the backlog
    assert not sender.send(url, "call-x", "pause:start")  # closed: dropped


async def test_statushook_failures_are_only_counted(hooks: Hooks, client: HookClient) -> None:
    sender = StatusHook(client, timeout=0.5)
    sender.send(hooks.reply("/down", 500, b"no"), "c", "pause:start")
    sender.send(f"http://127.0.0.1:{free_port()}/", "c", "pause:complete")
    await sender.close(grace=2)
    assert (sender.sent, sender.failed) == (0, 2)


async def test_a_slow_url_does_not_queue_requests_to_another_url(hooks: Hooks,
                                                                   client: HookClient) -> None:
    """Pools are per URL, not per host (issue 10, defect 9): 120 requests hanging on one
    path of the server hold its 100 connections; another path still answers at once."""
    slow = hooks.reply("/slow", body={"status": "ok"}, delay=3)
    fast = hooks.reply("/fast", body={"status": "ok"})
    hanging = [asyncio.ensure_future(client.post(slow, {}, timeout=2)) for _ in range(120)]
    try:
        while sum(s.path == "/slow" for s in hooks.seen) < 100:
            await asyncio.sleep(0.01)
        started = time.monotonic()
        reply = await client.post(fast, {}, timeout=2)
        assert reply.status == 200 and time.monotonic() - started < 0.5
    finally:
        for task in hanging:
            task.cancel()
        await asyncio.gather(*hanging, return_exceptions=True)


async def test_reghook_fallback_and_breaker_over_real_sockets(hooks: Hooks,
                                                              client: HookClient) -> None:
    down = f"http://127.0.0.1:{free_port()}/reg"  # nothing listens: refused
    backup = hooks.reply("/backup", body={"status": "ok"})
    reghook = RegHook(client, timeout=1, breakers=Breakers(threshold=2, cooldown=60))
    body = {"username": "u"}
    results = [await reghook.call(down, body, fallback=backup) for _ in range(4)]
    assert all(isinstance(r, Granted) for r in results)
    assert sum(s.path == "/backup" for s in hooks.seen) == 4
    alone = await reghook.call(down, body)
    assert isinstance(alone, HookFailed) and alone.kind == "circuit_open"
