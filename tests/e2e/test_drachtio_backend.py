"""SIP_BACKEND=drachtio specifics: start-up waits for drachtio-server, SIGTERM while
waiting, and a drachtio-server killed during a call (the call is cleaned up; the engine
serves again once the server is back). The shared suites (registration, calls,
mid-call, trunks, lifecycle) run on both backends through ``sip_backend``/``backend``."""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import pytest
import redis

from tests.e2e.test_calls import (
    DOMAIN,
    assert_clean,
    callee,
    config,
    register,
    rtpengine_calls,
    wait_events,
)
from tests.fixtures.daemon import start_pbx
from tests.fixtures.drachtio import Drachtio
from tests.fixtures.sipp import SippServer, free_udp_port, run_sipp, scenario, scenario_with
from tests.fixtures.webhooks import WebhookServer

pytestmark = [pytest.mark.e2e]


def _options_ok(pbx: Any) -> bool:
    return run_sipp(scenario("options_uac"), pbx.address, extra=["-m", "1"], timeout=5).rc == 0


def test_startup_waits_for_drachtio_then_serves(
        tmp_path_factory: pytest.TempPathFactory, redis_server: str, rtpengine_server: Any,
        webhooks: WebhookServer, drachtio_spare: Drachtio) -> None:
    drachtio_spare.kill()
    pbx = start_pbx(tmp_path_factory.mktemp("pbx-wait"), config(webhooks),
                    redis_url=redis_server, rtpengine=rtpengine_server, backend="drachtio",
                    drachtio=drachtio_spare, wait_ready=False)
    try:
        where = f"drachtio at 127.0.0.1:{drachtio_spare.admin_port}"
        pbx.wait_log(f"cannot reach {where}", timeout=10)
        pbx.wait_log('"dependency": "sip", "reason": "waiting for drachtio', timeout=5)
        time.sleep(1.0)
        assert '"msg": "ready"' not in pbx.log_text()
        assert "Traceback" not in pbx.log_text()
        drachtio_spare.start()
        started = time.monotonic()
        pbx.wait_log('"msg": "ready"', timeout=10)
        assert time.monotonic() - started < 5
        assert _options_ok(pbx)
    finally:
        rc = pbx.stop()
        pbx.release()
    assert rc == 0, pbx.tail()


def test_sigterm_while_waiting_for_drachtio_exits_0(
        tmp_path_factory: pytest.TempPathFactory, redis_server: str, rtpengine_server: Any,
        webhooks: WebhookServer, drachtio_spare: Drachtio) -> None:
    drachtio_spare.kill()
    pbx = start_pbx(tmp_path_factory.mktemp("pbx-wait-term"), config(webhooks),
                    redis_url=redis_server, rtpengine=rtpengine_server, backend="drachtio",
                    drachtio=drachtio_spare, wait_ready=False)
    try:
        pbx.wait_log("cannot reach drachtio", timeout=10)
        pbx.signal(signal.SIGTERM)
        assert pbx.proc.wait(10) == 0, pbx.tail()
        assert '"msg": "ready"' not in pbx.log_text()
    finally:
        pbx.stop()
        pbx.release()


def test_drachtio_killed_during_call_cleans_up_and_serves_again(
        tmp_path_factory: pytest.TempPathFactory, redis_server: str, rtpengine_server: Any,
        webhooks: WebhookServer, drachtio_spare: Drachtio) -> None:
    """The call's dialogs die with the control connection: the machines end the call
    (RTPEngine session deleted, call:* keys removed, StatusHook told); after a restart
    of drachtio the engine answers again within 5 s."""
    pbx = start_pbx(tmp_path_factory.mktemp("pbx-drachtio-kill"), config(webhooks),
                    redis_url=redis_server, rtpengine=rtpengine_server, backend="drachtio",
                    drachtio=drachtio_spare)
    servers: list[SippServer] = []
    try:
        register(pbx, "alice", free_udp_port())
        webhooks.reply("/call", json=[{"verb": "connect",
                                       "dest": {"type": "client", "address": "bob"}}])
        webhooks.reply("/status", json={})
        callee(servers, pbx, "bob", hold_ms=200)

        def caller() -> None:  # fails once drachtio is gone; only the PBX side is checked
            run_sipp(scenario("call_uac"), pbx.address, media=True, timeout=25,
                     keys={"domain": DOMAIN, "caller": "alice"},
                     extra=["-s", "1001", "-au", "alice", "-ap", "secret", "-m", "1",
                            "-d", "15000"])

        thread = threading.Thread(target=caller, daemon=True)
        thread.start()
        assert "connect:answered" in wait_events(webhooks, "connect:answered", timeout=10)
        rdb = redis.Redis.from_url(pbx.redis_url, decode_responses=True)
        assert list(rdb.scan_iter("call:*")), "the live call is recorded"
        drachtio_spare.kill()
        pbx.wait_log("connection to drachtio at", timeout=10)
        names = wait_events(webhooks, "connect:complete", timeout=10)
        assert "connect:hangup" in names and "connect:complete" in names, names
        assert_clean(pbx)
        drachtio_spare.start()
        started = time.monotonic()
        while not _options_ok(pbx):
            assert time.monotonic() - started < 5, pbx.tail()
        assert pbx.alive()
    finally:
        for s in servers:
            s.stop()
        rc = pbx.stop()
        pbx.release()
    assert rc == 0, pbx.tail()


def test_drachtio_killed_during_registration_load_recovers(
        tmp_path_factory: pytest.TempPathFactory, redis_server: str, rtpengine_server: Any,
        webhooks: WebhookServer, drachtio_spare: Drachtio) -> None:
    """Registrations at 40/s; drachtio killed and restarted in the middle: the engine
    reconnects, routes again and registers within 5 s of drachtio being back, and the
    requests that were pending when it went (they can never be answered) leave no
    error behind."""
    pbx = start_pbx(tmp_path_factory.mktemp("pbx-drachtio-regload"), config(webhooks),
                    redis_url=redis_server, rtpengine=rtpengine_server, backend="drachtio",
                    drachtio=drachtio_spare)
    try:
        load: dict[str, Any] = {}

        def registrations() -> None:  # some fail during the outage; not checked
            load["result"] = run_sipp(
                scenario_with("reg_auth", code=200), pbx.address, timeout=30,
                keys={"domain": DOMAIN, "expires": "300"},
                extra=["-s", "alice", "-au", "alice", "-ap", "secret", "-m", "240",
                       "-r", "40", "-l", "100", "-recv_timeout", "2000"])

        thread = threading.Thread(target=registrations, daemon=True)
        thread.start()
        time.sleep(2.0)
        mark = len(pbx.log_text())
        drachtio_spare.kill()
        pbx.wait_log("connection to drachtio at", timeout=10, start=mark)
        time.sleep(1.0)
        drachtio_spare.start()
        started = time.monotonic()
        while not _options_ok(pbx):
            assert time.monotonic() - started < 5, pbx.tail()
        register(pbx, "bob", free_udp_port())
        thread.join(60)
        assert pbx.alive()
        text = pbx.log_text()
        assert "Traceback" not in text and '"level": "error"' not in text, pbx.tail()
    finally:
        rc = pbx.stop()
        pbx.release()
    assert rc == 0, pbx.tail()


def test_drachtio_killed_while_ringing_cleans_up(
        tmp_path_factory: pytest.TempPathFactory, redis_server: str, rtpengine_server: Any,
        webhooks: WebhookServer, drachtio_spare: Drachtio) -> None:
    """An INVITE not yet answered when the connection drops can never be answered: it
    ends as if the caller had cancelled it, so the B leg and media are cleaned up."""
    pbx = start_pbx(tmp_path_factory.mktemp("pbx-drachtio-ring"), config(webhooks),
                    redis_url=redis_server, rtpengine=rtpengine_server, backend="drachtio",
                    drachtio=drachtio_spare)
    servers: list[SippServer] = []
    try:
        register(pbx, "alice", free_udp_port())
        webhooks.reply("/call", json=[{"verb": "connect",
                                       "dest": {"type": "client", "address": "carol"}}])
        webhooks.reply("/status", json={})
        callee(servers, pbx, "carol", "call_uas_silent")

        def caller() -> None:  # never answered; only the PBX side is checked
            run_sipp(scenario("call_uac"), pbx.address, media=True, timeout=20,
                     keys={"domain": DOMAIN, "caller": "alice"},
                     extra=["-s", "1001", "-au", "alice", "-ap", "secret", "-m", "1"])

        thread = threading.Thread(target=caller, daemon=True)
        thread.start()
        assert "connect:trying" in wait_events(webhooks, "connect:trying", timeout=10)
        time.sleep(0.5)
        assert rtpengine_calls(pbx), "the ringing call has a media session"
        drachtio_spare.kill()
        pbx.wait_log("connection to drachtio at", timeout=10)
        assert_clean(pbx)
        assert pbx.alive()
    finally:
        for s in servers:
            s.stop()
        rc = pbx.stop()
        pbx.release()
    assert rc == 0, pbx.tail()


def test_drachtio_killed_while_callhook_pending_cancels_the_call(
        tmp_path_factory: pytest.TempPathFactory, redis_server: str, rtpengine_server: Any,
        webhooks: WebhookServer, drachtio_spare: Drachtio) -> None:
    """The INVITE is waiting for its CallHook when the connection drops: it can never be
    answered, so the call ends as cancelled — the CallHook's late ``connect`` must not
    ring the callee once drachtio is back."""
    pbx = start_pbx(tmp_path_factory.mktemp("pbx-drachtio-hook"), config(webhooks),
                    redis_url=redis_server, rtpengine=rtpengine_server, backend="drachtio",
                    drachtio=drachtio_spare)
    servers: list[SippServer] = []
    try:
        register(pbx, "alice", free_udp_port())
        webhooks.reply("/call", json=[{"verb": "connect",
                                       "dest": {"type": "client", "address": "carol"}}],
                       delay=2)
        webhooks.reply("/status", json={})
        carol = callee(servers, pbx, "carol", "call_uas_silent")

        def caller() -> None:  # never answered; only the PBX side is checked
            run_sipp(scenario("call_uac"), pbx.address, media=True, timeout=15,
                     keys={"domain": DOMAIN, "caller": "alice"},
                     extra=["-s", "1001", "-au", "alice", "-ap", "secret", "-m", "1"])

        thread = threading.Thread(target=caller, daemon=True)
        thread.start()
        end = time.monotonic() + 10
        while not webhooks.requests("/call"):
            assert time.monotonic() < end, "no CallHook request"
            time.sleep(0.05)
        drachtio_spare.kill()
        pbx.wait_log("connection to drachtio at", timeout=10)
        drachtio_spare.start()
        time.sleep(3.5)  # the CallHook has answered by now
        assert "connect:trying" not in [r.json["event"] for r in webhooks.requests("/status")]
        assert carol.proc.poll() is None, "carol was never called"
        assert_clean(pbx)
    finally:
        for s in servers:
            s.stop()
        rc = pbx.stop()
        pbx.release()
    assert rc == 0, pbx.tail()
