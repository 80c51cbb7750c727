"""RTPEngine faults during live calls (issue 10, defect 7), end to end.

The real daemon with its own private rtpengine (which the tests restart, freeze and
thaw), a real Redis, SIPp callers and callees with RTP both ways:

* RTPEngine restarts during three bridged calls: every call is either re-established
  (RTP flows both ways again through the restarted instance) or ended with BYE to both
  sides and StatusHook ``media:lost``; afterwards Redis and RTPEngine hold nothing.
* RTPEngine is frozen (SIGSTOP) while calls end: the deletes that timed out are retried
  after SIGCONT, so RTPEngine holds no session for them long before its own timeout.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from engine.rtpengine.ng import decode_message, encode_message
from tests.e2e.test_calls import DOMAIN, register
from tests.fixtures.daemon import Pbx, start_pbx
from tests.fixtures.procs import send_signal
from tests.fixtures.rtpengine import RtpEngine
from tests.fixtures.sipp import (
    SippResult,
    SippServer,
    free_udp_port,
    run_sipp,
    scenario,
    start_sipp,
)
from tests.fixtures.webhooks import WebhookServer

pytestmark = [pytest.mark.e2e]

CALLEES = ("bob", "carol", "dave")


def config(hooks: WebhookServer) -> dict[str, Any]:
    plan = {"1???": {"callHook": hooks.url("/call"), "statusHook": hooks.url("/status")}}
    clients = [{"username": u, "password": "secret", "codecs": ["PCMA", "PCMU"],
                "dialplan": plan} for u in ("alice", *CALLEES)]
    return {"domains": {DOMAIN: {"domain_id": 1, "clients": clients, "trunks": []}}}


@pytest.fixture
def faulty_pbx(tmp_path: Path, redis_server: str, rtpengine_spare: RtpEngine,
               webhooks: WebhookServer) -> Iterator[Pbx]:
    """A daemon whose only RTPEngine is the test's private instance (pings every 1 s)."""
    pbx = start_pbx(tmp_path / "pbx", config(webhooks), redis_url=redis_server,
                    rtpengine=rtpengine_spare, env={"RTPENGINE_PING_SECS": "1"})
    register(pbx, "alice", free_udp_port())  # a client call uses its registration's dialplan
    yield pbx
    with contextlib.suppress(ProcessLookupError):  # never leave the instance frozen
        os.killpg(rtpengine_spare.service.proc.pid, signal.SIGCONT)
    rc = pbx.stop()
    assert rc == 0, f"daemon exited {rc}:\n{pbx.tail()}"


@pytest.fixture
def servers() -> Iterator[list[SippServer]]:
    started: list[SippServer] = []
    yield started
    for s in started:
        s.stop()


def route_to_callees(hooks: WebhookServer) -> None:
    """CallHook: 1001 → bob, 1002 → carol, 1003 → dave."""
    def reply(body: dict[str, Any]) -> list[dict[str, Any]]:
        user = CALLEES[int(body["to"]) - 1001]
        return [{"verb": "connect", "dest": {"type": "client", "address": user}}]

    hooks.reply("/call", json=reply)
    hooks.reply("/status", json={"ok": True})


def start_callees(pbx: Pbx, servers: list[SippServer], name: str) -> list[SippServer]:
    out = []
    for user in CALLEES:
        port = free_udp_port()
        register(pbx, user, port)
        server = start_sipp(scenario(name), port=port, media=True, timeout=90,
                            extra=["-rtp_echo", "-m", "1"])
        servers.append(server)
        out.append(server)
    return out


def start_callers(pbx: Pbx, name: str, hold_ms: int, calls: int = 3
                  ) -> tuple[list[threading.Thread], dict[int, SippResult]]:
    """One SIPp caller per callee, each in a thread (SIPp runs to completion)."""
    results: dict[int, SippResult] = {}

    def run(i: int) -> None:
        results[i] = run_sipp(scenario(name), pbx.address, media=True, timeout=80,
                              keys={"domain": DOMAIN, "caller": "alice"},
                              extra=["-s", str(1001 + i), "-au", "alice", "-ap", "secret",
                                     "-m", "1", "-d", str(hold_ms)])

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(calls)]
    for t in threads:
        t.start()
    return threads, results


def status_events(hooks: WebhookServer, event: str) -> list[dict[str, Any]]:
    return [r.json for r in hooks.requests("/status") if r.json["event"].strip() == event]


def wait_for(predicate: Callable[[], Any], timeout: float, what: str,
             pbx: Pbx | None = None, results: dict[int, SippResult] | None = None) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    callers = "".join(f"\n--- caller {i}: {r.explain()}" for i, r in (results or {}).items())
    raise AssertionError(f"timed out waiting for {what}" + (f"\n{pbx.tail(40)}" if pbx else "")
                         + callers)


def ng(pbx: Pbx, command: dict[str, Any], attempts: int = 5) -> dict[str, Any]:
    """One read-only ng command to the test's RTPEngine, re-sent if a datagram is lost
    (right after SIGCONT its socket may still be full)."""
    host, port = pbx.rtpengine.address.rsplit(":", 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(1)
        for attempt in range(attempts):
            cookie = f"mf{time.monotonic_ns()}_{attempt}"
            sock.sendto(encode_message(cookie, command), (host, int(port)))
            try:
                while True:
                    got, reply = decode_message(sock.recv(65535))
                    if got == cookie:
                        return reply
            except TimeoutError:
                continue
    raise AssertionError(f"rtpengine did not answer {command['command']}")


def rtpengine_calls(pbx: Pbx) -> list[str]:
    return list(ng(pbx, {"command": "list"}).get("calls", []))


def packets_by_tag(pbx: Pbx, call_id: str) -> dict[str, int]:
    """RTP packets RTPEngine received per party (tag) of ``call_id``; {} if unknown."""
    reply = ng(pbx, {"command": "query", "call-id": call_id})
    out: dict[str, int] = {}
    for tag, info in (reply.get("tags") or {}).items():
        out[tag] = sum(int(stream.get("stats", {}).get("packets", 0))
                       for media in info.get("medias", []) for stream in media.get("streams", []))
    return out


def assert_clean(pbx: Pbx, call_ids: list[str], timeout: float = 15) -> None:
    """No ``call:*`` key in Redis, nothing in RTPEngine's ``list``, and ``query`` of each
    call-id answers "Unknown call-id"."""
    rdb = redis.Redis.from_url(pbx.redis_url, decode_responses=True)
    end = time.monotonic() + timeout
    while True:
        listed = rtpengine_calls(pbx)
        live = list(rdb.scan_iter("call:*"))
        known = [c for c in call_ids
                 if ng(pbx, {"command": "query", "call-id": c}).get("result") == "ok"]
        if not listed and not live and not known:
            return
        if time.monotonic() > end:
            raise AssertionError(f"left over: rtpengine list {listed}, queried {known}, "
                                 f"redis {live}")
        time.sleep(0.2)


def freeze(engine: RtpEngine, sig: int) -> None:
    assert engine.service is not None
    send_signal(engine.service.proc.pid, sig, group=True)


def fill_ng_socket(engine: RtpEngine, datagrams: int = 3000) -> None:
    """Fill the frozen daemon's ng receive buffer with pings (bounded: 3,000 × 1 KB), so
    the commands sent to it meanwhile are dropped, as a frozen daemon under load drops
    them. Without this the kernel would queue our deletes and the daemon would run them
    on SIGCONT, hiding whether the PBX retries."""
    padding = "x" * 1000
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        for n in range(datagrams):
            with contextlib.suppress(BlockingIOError):
                sock.sendto(encode_message(f"fill{n}", {"command": "ping", "pad": padding}),
                            (engine.host, engine.ng_port))


# --------------------------------------------------------------------------- tests


def test_rtpengine_restart_during_bridged_calls(faulty_pbx: Pbx, rtpengine_spare: RtpEngine,
                                                webhooks: WebhookServer,
                                                servers: list[SippServer]) -> None:
    pbx = faulty_pbx
    route_to_callees(webhooks)
    callees = start_callees(pbx, servers, "call_uas_media_fault")
    threads, results = start_callers(pbx, "call_uac_media_fault", hold_ms=4000)

    wait_for(lambda: len(status_events(webhooks, "connect:answered")) == 3, 20, "3 answers", pbx,
             results)
    call_ids = wait_for(lambda: (c := rtpengine_calls(pbx)) and len(c) == 3 and c, 10,
                        "3 calls on rtpengine", pbx)
    time.sleep(1.5)  # RTP flows both ways before the crash
    before = {c: packets_by_tag(pbx, c) for c in call_ids}
    assert all(sum(1 for n in tags.values() if n > 10) >= 2 for tags in before.values()), before

    rtpengine_spare.restart()  # SIGKILL and start again on the same ports: every call is lost
    assert rtpengine_calls(pbx) == []

    # Each call is re-created on the restarted instance (RTP both ways again) or ended.
    lost = wait_for(lambda: (ev := status_events(webhooks, "media:lost")) and len(ev) == 3
                    and ev, 30, "media:lost for each call", pbx)
    outcomes = {e["callId"]: e["outcome"] for e in lost}
    assert set(outcomes) == set(call_ids), outcomes
    restored = [c for c, o in outcomes.items() if o == "restored"]
    flowing: dict[str, dict[str, int]] = {}

    def rtp_both_ways() -> bool:
        for c in restored:
            flowing[c] = packets_by_tag(pbx, c)
        return all(sum(1 for n in flowing[c].values() if n > 20) >= 2 for c in restored)

    try:
        wait_for(rtp_both_ways, 10, "RTP both ways through the new instance", pbx)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\npackets per tag: {flowing}") from None

    for t in threads:
        t.join(90)
    for result in results.values():
        assert result.rc == 0, result.explain()
        if outcomes.get(_call_id_of(result)) == "hangup":
            assert received_bye(result.messages), result.explain()
    for server in callees:
        done = server.wait(30)
        assert done.rc == 0, done.explain()
    assert set(outcomes.values()) <= {"restored", "hangup"}
    assert_clean(pbx, call_ids)
    warnings = [line for line in pbx.log_lines()
                if line.get("msg") == "rtpengine instance lost calls"]
    assert len(warnings) == 1 and warnings[0]["affected"] == 3, warnings


def test_frozen_rtpengine_deletes_are_retried(faulty_pbx: Pbx, rtpengine_spare: RtpEngine,
                                              webhooks: WebhookServer,
                                              servers: list[SippServer]) -> None:
    pbx = faulty_pbx
    route_to_callees(webhooks)
    callees = start_callees(pbx, servers, "call_uas")
    threads, results = start_callers(pbx, "call_uac", hold_ms=3000)

    wait_for(lambda: len(status_events(webhooks, "connect:answered")) == 3, 20, "3 answers", pbx,
             results)
    call_ids = wait_for(lambda: (c := rtpengine_calls(pbx)) and len(c) == 3 and c, 10,
                        "3 calls on rtpengine", pbx)
    freeze(rtpengine_spare, signal.SIGSTOP)  # the calls end while RTPEngine is frozen
    frozen_at = time.monotonic()
    fill_ng_socket(rtpengine_spare)
    for t in threads:
        t.join(60)
    for result in results.values():
        assert result.rc == 0, result.explain()
    for server in callees:
        assert server.wait(30).rc == 0
    # the calls ended ~3 s after the freeze and every delete timed out 3.5 s later
    time.sleep(max(0.0, frozen_at + 9 - time.monotonic()))
    freeze(rtpengine_spare, signal.SIGCONT)
    thawed = time.monotonic()
    # Without retries the sessions stay until rtpengine's own --timeout=60 s.
    assert_clean(pbx, call_ids, timeout=15)
    assert time.monotonic() - thawed < 15
    assert "rtpengine session deleted after retrying" in pbx.log_text()


def test_media_that_cannot_be_recreated_ends_the_calls(
        faulty_pbx: Pbx, rtpengine_spare: RtpEngine, webhooks: WebhookServer,
        servers: list[SippServer]) -> None:
    """RTPEngine comes back without room for the calls (2 media ports): re-creating their
    sessions fails, so each call ends with BYE to both sides and media:lost {hangup}."""
    pbx = faulty_pbx
    route_to_callees(webhooks)
    callees = start_callees(pbx, servers, "call_uas_media_fault")[:2]
    servers[2].stop()  # two calls are enough here
    threads, results = start_callers(pbx, "call_uac_media_fault", hold_ms=20000, calls=2)
    wait_for(lambda: len(status_events(webhooks, "connect:answered")) == 2, 20, "2 answers", pbx,
             results)
    call_ids = wait_for(lambda: (c := rtpengine_calls(pbx)) and len(c) == 2 and c, 10,
                        "2 calls on rtpengine", pbx)
    time.sleep(1.5)  # RTP flows before the crash

    rtpengine_spare.kill()
    rtpengine_spare.port_max = rtpengine_spare.port_min + 1  # room for one RTP/RTCP pair
    rtpengine_spare.start()
    restarted = time.monotonic()

    lost = wait_for(lambda: (ev := status_events(webhooks, "media:lost")) and len(ev) == 2
                    and ev, 30, "media:lost for each call", pbx)
    assert {e["callId"] for e in lost} == set(call_ids)
    # "restarted" (uptime) or "back after an outage" (a ping found it dead meanwhile)
    assert all(e["outcome"] == "hangup" and e["reason"] in ("restarted", "back after an outage")
               for e in lost), lost
    for t in threads:
        t.join(60)
    assert time.monotonic() - restarted < 15  # long before the callers' 20 s hold ended
    for result in results.values():  # each caller got a BYE (and answered it)
        assert result.rc == 0, result.explain()
        assert received_bye(result.messages), result.explain()
    for server in callees:  # and so did each callee
        done = server.wait(30)
        assert done.rc == 0, done.explain()
        assert received_bye(done.messages), done.explain()
    names = [r.json["event"].strip() for r in webhooks.requests("/status")]
    assert names.count("connect:complete") == 2, names
    assert_clean(pbx, call_ids)


def received_bye(messages: str) -> bool:
    """SIPp's trace shows a BYE it received (not only one it sent)."""
    return re.search(r"message received \[\d+\] bytes :\s+BYE ", messages) is not None


def _call_id_of(result: SippResult) -> str:
    for line in result.messages.splitlines():
        if line.lower().startswith("call-id:"):
            return line.split(":", 1)[1].strip()
    return ""
