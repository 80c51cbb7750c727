"""Calls end to end: the real daemon, Redis, RTPEngine and a recording webhook server,
driven by SIPp callers and callees (callees register first, from the port they answer on).

Each case checks the SIP outcome at both ends, the CallHook/StatusHook requests, that
RTP flowed through RTPEngine where a call was bridged, and — after every call — that
RTPEngine and Redis hold nothing left over.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from engine.rtpengine.ng import decode_message, encode_message
from tests.fixtures.daemon import Pbx
from tests.fixtures.procs import wait_until
from tests.fixtures.sipp import (
    SippResult,
    SippServer,
    free_udp_port,
    run_sipp,
    scenario,
    scenario_with,
    start_sipp,
)
from tests.fixtures.webhooks import WebhookServer

pytestmark = [pytest.mark.e2e]

DOMAIN = "pbx.test"


def config(hooks: WebhookServer) -> dict[str, Any]:
    plan = {"1???": {"callHook": hooks.url("/call"), "statusHook": hooks.url("/status")}}
    clients = [{"username": u, "password": "secret", "codecs": ["PCMA", "PCMU"],
                "dialplan": plan} for u in ("alice", "bob", "carol")]
    return {"domains": {DOMAIN: {"domain_id": 1, "clients": clients, "trunks": []}}}


@pytest.fixture(scope="module")
def pbx(pbx_factory: Callable[..., Pbx], webhook_server: WebhookServer,
        sip_backend: str) -> Pbx:
    """Every case runs on both SIP backends (embedded, and behind drachtio-server)."""
    pbx = pbx_factory(config(webhook_server), backend=sip_backend)
    register(pbx, "alice", free_udp_port())  # a client call uses its registration's dialplan
    return pbx


# --------------------------------------------------------------------------- helpers


def ng(pbx: Pbx, command: dict[str, Any]) -> dict[str, Any]:
    """One ng command to the test's RTPEngine (not through the PBX)."""
    host, port = pbx.rtpengine.address.rsplit(":", 1)
    cookie = f"e2e{time.monotonic_ns()}"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.sendto(encode_message(cookie, command), (host, int(port)))
        data = s.recv(65535)
    return decode_message(data)[1]


def rtpengine_calls(pbx: Pbx) -> list[str]:
    reply = ng(pbx, {"command": "list"})
    return [c.decode() if isinstance(c, bytes) else c for c in reply.get("calls", [])]


class MediaProbe:
    """Polls RTPEngine during a call and keeps the highest packet counts seen per tag."""

    def __init__(self, pbx: Pbx):
        self.pbx = pbx
        self.packets: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> MediaProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(0.3):
            try:
                for call_id in rtpengine_calls(self.pbx):
                    reply = ng(self.pbx, {"command": "query", "call-id": call_id})
                    for tag, info in (reply.get("tags") or {}).items():
                        count = 0
                        for media in info.get("medias", []):
                            for stream in media.get("streams", []):
                                count += int(stream.get("stats", {}).get("packets", 0))
                        key = tag.decode() if isinstance(tag, bytes) else tag
                        self.packets[key] = max(self.packets.get(key, 0), count)
            except OSError:
                continue


def register(pbx: Pbx, user: str, port: int) -> None:
    """Register ``user`` with its Contact on ``port`` — where its callee SIPp will listen
    (the PBX calls the registered source address)."""
    result = run_sipp(scenario_with("reg_auth", code=200), pbx.address, port=port,
                      keys={"domain": DOMAIN, "expires": "300"},
                      extra=["-s", user, "-au", user, "-ap", "secret", "-m", "1"], timeout=15)
    assert result.rc == 0, result.explain()


def callee(servers: list[SippServer], pbx: Pbx, user: str, name: str = "call_uas",
           hold_ms: int = 300, calls: int = 1) -> SippServer:
    port = free_udp_port()
    register(pbx, user, port)
    server = start_sipp(scenario(name), port=port, media=True, timeout=60,
                        extra=["-rtp_echo", "-m", str(calls), "-d", str(hold_ms)])
    servers.append(server)
    return server


def call(pbx: Pbx, number: str, name: str = "call_uac", *, code: int | None = None,
         hold_ms: int = 2500, caller: str = "alice", timeout: float = 45) -> SippResult:
    scen = scenario_with(name, code=code) if code is not None else scenario(name)
    return run_sipp(scen, pbx.address, media=True, timeout=timeout,
                    keys={"domain": DOMAIN, "caller": caller},
                    extra=["-s", number, "-au", caller, "-ap", "secret", "-m", "1",
                           "-d", str(hold_ms)])


def events(hooks: WebhookServer) -> list[str]:
    return [r.json["event"] for r in hooks.requests("/status")]


def wait_events(hooks: WebhookServer, needed: str, timeout: float = 10) -> list[str]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if needed in events(hooks):
            break
        time.sleep(0.05)
    return events(hooks)


def assert_clean(pbx: Pbx, timeout: float = 10) -> None:
    """No RTPEngine session and no live-call record is left once calls ended."""
    rdb = redis.Redis.from_url(pbx.redis_url, decode_responses=True)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        calls = rtpengine_calls(pbx)
        live = list(rdb.scan_iter("call:*"))
        if not calls and not live:
            return
        time.sleep(0.1)
    raise AssertionError(f"left over: rtpengine calls {calls}, redis {live}")


@pytest.fixture
def servers() -> Iterator[list[SippServer]]:
    started: list[SippServer] = []
    yield started
    for s in started:
        s.stop()


def script(hooks: WebhookServer, value: Any) -> None:
    hooks.reply("/call", json=value)


@pytest.fixture(autouse=True)
def status_receiver(webhooks: WebhookServer) -> None:
    webhooks.reply("/status", json={"ok": True})


# --------------------------------------------------------------------------- tests


def test_client_to_client_call(pbx: Pbx, webhooks: WebhookServer,
                               servers: list[SippServer]) -> None:
    bob = callee(servers, pbx, "bob", hold_ms=500)
    script(webhooks, [{"verb": "connect", "dest": {"type": "client", "address": "bob"}}])
    with MediaProbe(pbx) as probe:
        result = call(pbx, "1001", hold_ms=3000)
    assert result.rc == 0, result.explain()
    assert bob.wait(20).rc == 0
    body = webhooks.requests("/call")[0].json
    assert body == {**body, "domain": DOMAIN, "from": "alice", "to": "1001", "source": "client",
                    "refer": False, "count": 0, "sourceAddress": "127.0.0.1"}
    # wire compatibility: the original sends "refer": false on every ordinary fetch
    assert list(body)[-2:] == ["refer", "count"] and body["refer"] is False
    assert body["headers"]["X-Test"] == "e2e" and "authorization" not in body["headers"]
    # the caller's 200 carries RTPEngine's SDP (its media port), not the callee's
    answer = result.messages.split("SIP/2.0 200 OK")[1].split("\n\n")[1]
    port = int(re.search(r"m=audio (\d+)", answer).group(1))
    assert pbx.rtpengine.port_min <= port <= pbx.rtpengine.port_max, answer
    # RTP flowed both ways through RTPEngine
    # caller and callee both sent RTP to RTPEngine (the ringback placeholder tag sends none)
    assert sum(1 for n in probe.packets.values() if n > 20) >= 2, probe.packets
    names = wait_events(webhooks, "connect:complete")
    for e in ("connect:start", "connect:trying", "connect:answered", "connect:hangup",
              "connect:complete"):
        assert e in names, names
    hangup = next(r.json for r in webhooks.requests("/status")
                  if r.json["event"] == "connect:hangup")
    assert hangup["endedby"] == "A"
    assert_clean(pbx)


def test_callee_hangs_up(pbx: Pbx, webhooks: WebhookServer, servers: list[SippServer]) -> None:
    carol = callee(servers, pbx, "carol", "call_uas_bye")
    script(webhooks, [{"verb": "connect", "dest": {"type": "client", "address": "carol"}}])
    result = call(pbx, "1002", "call_uac_wait_bye")
    assert result.rc == 0, result.explain()
    assert carol.wait(20).rc == 0
    names = wait_events(webhooks, "connect:complete")
    hangup = next(r.json for r in webhooks.requests("/status")
                  if r.json["event"] == "connect:hangup")
    assert hangup["endedby"] == "B", names
    assert_clean(pbx)


def test_response_verb(pbx: Pbx, webhooks: WebhookServer) -> None:
    script(webhooks, [{"verb": "response", "code": 486}])
    result = call(pbx, "1003", "call_uac_expect", code=486)
    assert result.rc == 0, result.explain()
    assert_clean(pbx)


@pytest.mark.parametrize(("reply", "code"), [
    ({"status": 500}, 480),
    ({"status": 200, "body": b"{not json"}, 480),
    ({"json": [{"verb": "response", "code": 486}], "delay": 4}, 480),
    ({"json": [{"verb": "teleport"}]}, 500),
])
def test_callhook_failures(pbx: Pbx, webhooks: WebhookServer, reply: dict[str, Any],
                           code: int) -> None:
    webhooks.reply("/call", **reply)
    result = call(pbx, "1004", "call_uac_expect", code=code)
    assert result.rc == 0, result.explain()
    assert "X-Reason:" in result.messages.split(f"SIP/2.0 {code}")[1].split("\n\n")[0]
    assert "callhook:error" in wait_events(webhooks, "callhook:error")


def test_no_dialplan_match_is_404(pbx: Pbx, webhooks: WebhookServer) -> None:
    result = call(pbx, "999", "call_uac_expect", code=404)
    assert result.rc == 0, result.explain()
    assert not webhooks.requests("/call")


def test_unregistered_callee_then_next_verb(pbx: Pbx, webhooks: WebhookServer) -> None:
    script(webhooks, [{"verb": "connect", "dest": {"type": "client", "address": "nobody"}},
                      {"verb": "response", "code": 480}])
    result = call(pbx, "1005", "call_uac_expect", code=480)
    assert result.rc == 0, result.explain()
    names = wait_events(webhooks, "connect:error")
    assert "connect:error" in names
    assert_clean(pbx)


def test_parallel_fork_answer_wins_other_cancelled(pbx: Pbx, webhooks: WebhookServer,
                                                   servers: list[SippServer]) -> None:
    bob = callee(servers, pbx, "bob", "call_uas", hold_ms=800)
    carol = callee(servers, pbx, "carol", "call_uas_ring")
    script(webhooks, [{"verb": "connect", "dest": [{"type": "client", "address": "bob"},
                                                   {"type": "client", "address": "carol"}]}])
    result = call(pbx, "1006", hold_ms=1500)
    assert result.rc == 0, result.explain()
    assert bob.wait(20).rc == 0
    loser = carol.wait(20)
    assert loser.rc == 0, loser.explain()  # carol saw CANCEL and answered 487
    names = wait_events(webhooks, "connect:complete")
    assert "connect:cancel" in names
    assert_clean(pbx)


def test_ring_timeout_cancels_then_next_verb(pbx: Pbx, webhooks: WebhookServer,
                                             servers: list[SippServer]) -> None:
    carol = callee(servers, pbx, "carol", "call_uas_ring")
    script(webhooks, [{"verb": "connect", "dest": {"type": "client", "address": "carol",
                                                   "timeout": 2}},
                      {"verb": "response", "code": 486}])
    result = call(pbx, "1007", "call_uac_expect", code=486)
    assert result.rc == 0, result.explain()
    assert carol.wait(20).rc == 0
    assert "connect:timeout" in wait_events(webhooks, "connect:timeout")
    assert_clean(pbx)


def test_retry_runs_the_new_script(pbx: Pbx, webhooks: WebhookServer,
                                   servers: list[SippServer]) -> None:
    carol = callee(servers, pbx, "carol", "call_uas_ring")

    def reply(body: dict[str, Any]) -> list[dict[str, Any]]:
        if body["count"] == 0:
            return [{"verb": "connect", "dest": {"type": "client", "address": "carol",
                                                 "timeout": 2}}]
        return [{"verb": "response", "code": 486}]

    webhooks.reply("/call", json=reply)
    result = call(pbx, "1008", "call_uac_expect", code=486)
    assert result.rc == 0, result.explain()
    assert carol.wait(20).rc == 0
    assert [r.json["count"] for r in webhooks.requests("/call")] == [0, 1]
    assert_clean(pbx)


def test_caller_cancel_while_ringing(pbx: Pbx, webhooks: WebhookServer,
                                     servers: list[SippServer]) -> None:
    carol = callee(servers, pbx, "carol", "call_uas_silent")
    script(webhooks, [{"verb": "connect", "dest": {"type": "client", "address": "carol"}}])
    result = call(pbx, "1009", "call_uac_cancel", hold_ms=1500)
    assert result.rc == 0, result.explain()
    got = carol.wait(20)
    assert got.rc == 0, got.explain()
    assert "CANCEL sip:" in got.messages  # carol got the CANCEL
    assert_clean(pbx)


def test_caller_cancel_before_the_callee_answers_anything(
        pbx: Pbx, webhooks: WebhookServer, servers: list[SippServer]) -> None:
    """A callee that answers nothing, not even 100 Trying, cannot be CANCELled yet (RFC 3261
    §9.1: the stack keeps the CANCEL until a provisional response, or the INVITE times out
    after 32 s). The caller's CANCEL still ends the call at once: the leg is given up
    (``connect:error`` 487, then ``connect:complete``) without waiting for the INVITE."""
    carol = callee(servers, pbx, "carol", "call_uas_mute")
    script(webhooks, [{"verb": "connect", "dest": {"type": "client", "address": "carol"}}])
    before = len(events(webhooks))
    started = time.monotonic()
    result = call(pbx, "1011", "call_uac_cancel", hold_ms=1500)
    assert result.rc == 0, result.explain()
    wait_until(lambda: "connect:complete" in events(webhooks)[before:], 5,
               "connect:complete within 5 s of the CANCEL")
    assert time.monotonic() - started < 10  # not the 10 s "verb did not stop" fallback
    error = next(r.json for r in webhooks.requests("/status")[before:]
                 if r.json["event"].strip() == "connect:error")
    assert error["error"]["status"] == 487, error
    assert_clean(pbx)
    if pbx.backend == "embedded":  # drachtio-server sends CANCELs by its own rules
        assert "CANCEL sip:" not in carol.wait(20).messages


def test_announce_is_early_media(pbx: Pbx, webhooks: WebhookServer) -> None:
    script(webhooks, [{"verb": "announce", "url": "file:announcement.wav"},
                      {"verb": "response", "code": 480}])
    with MediaProbe(pbx) as probe:
        result = call(pbx, "1010", "call_uac_expect", code=480)
    assert result.rc == 0, result.explain()
    assert "SIP/2.0 183" in result.messages and "m=audio" in result.messages
    names = wait_events(webhooks, "playback:complete")
    assert "playback:start" in names and "playback:complete" in names
    done = next(r.json for r in webhooks.requests("/status")
                if r.json["event"] == "playback:complete")
    assert done["duration"] > 0
    assert probe.packets, "RTPEngine never had the call"
    assert_clean(pbx)
