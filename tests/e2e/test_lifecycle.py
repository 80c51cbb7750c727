"""Daemon lifecycle as an operator sees it: SIGHUP reloads machines, SIGTERM drains
(new INVITEs get 503 while a live call finishes) and exits 0, and a bad setting or an
invalid machine stops start-up with a clear message."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from engine.paths import machines_dir
from tests.e2e.test_calls import DOMAIN, callee, config, ng, register
from tests.e2e.test_media_faults import status_events
from tests.fixtures.daemon import BACKENDS, Pbx, start_pbx
from tests.fixtures.procs import wait_until
from tests.fixtures.sipp import SippServer, free_udp_port, run_sipp, scenario, scenario_with
from tests.fixtures.webhooks import WebhookServer

pytestmark = [pytest.mark.e2e]


def alice_calls_reach_bob(pbx: Pbx, webhooks: WebhookServer,
                          servers: list[SippServer]) -> SippServer:
    """alice registered, the CallHook connects every call to bob, and bob's SIPp callee
    (answers, then waits for the BYE) registered and started."""
    register(pbx, "alice", free_udp_port())
    webhooks.reply("/call", json=[{"verb": "connect",
                                   "dest": {"type": "client", "address": "bob"}}])
    webhooks.reply("/status", json={})
    return callee(servers, pbx, "bob", hold_ms=200)


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigterm_drains_live_call_and_refuses_new_ones(
        tmp_path_factory: pytest.TempPathFactory, redis_server: str, rtpengine_server: Any,
        webhooks: WebhookServer, backend: str) -> None:
    pbx = start_pbx(tmp_path_factory.mktemp("pbx-drain"), config(webhooks),
                    redis_url=redis_server, rtpengine=rtpengine_server,
                    env={"SHUTDOWN_GRACE_SECS": "20"}, backend=backend)
    servers: list[SippServer] = []
    try:
        alice_calls_reach_bob(pbx, webhooks, servers)
        results: dict[str, Any] = {}

        def live_call() -> None:
            results["live"] = run_sipp(
                scenario("call_uac"), pbx.address, media=True, timeout=40,
                keys={"domain": DOMAIN, "caller": "alice"},
                extra=["-s", "1001", "-au", "alice", "-ap", "secret", "-m", "1",
                       "-d", "5000"])

        thread = threading.Thread(target=live_call)
        thread.start()
        time.sleep(2.5)  # the call is up
        pbx.signal(signal.SIGTERM)
        pbx.wait_log('"msg": "draining"')
        # a new INVITE is refused at once, before any challenge
        refused = run_sipp(scenario_with("trunk_uac_expect", code=503), pbx.address,
                           media=True, keys={"domain": DOMAIN}, extra=["-s", "1001", "-m", "1"])
        assert refused.rc == 0, refused.explain()
        assert "Retry-After" in refused.messages
        thread.join(60)
        assert results["live"].rc == 0, results["live"].explain()
        assert pbx.proc.wait(20) == 0
        assert '"msg": "stopped"' in pbx.log_text()
    finally:
        for s in servers:
            s.stop()
        pbx.stop()
        pbx.release()


@pytest.mark.parametrize("backend", BACKENDS)
def test_calls_still_up_after_the_grace_period_are_hung_up_and_cleaned_up(
        tmp_path_factory: pytest.TempPathFactory, redis_server: str, rtpengine_server: Any,
        webhooks: WebhookServer, backend: str) -> None:
    """SIGTERM with a call that outlives SHUTDOWN_GRACE_SECS: the call is ended as a hang-up
    is (BYE to both sides, StatusHook `pbx:shutdown`), its RTPEngine session and live-call
    record are gone, and the daemon exits 0 - nothing is left for RTPEngine's timeout or
    the record's 4-hour TTL."""
    pbx = start_pbx(tmp_path_factory.mktemp("pbx-drain-end"), config(webhooks),
                    redis_url=redis_server, rtpengine=rtpengine_server,
                    env={"SHUTDOWN_GRACE_SECS": "1"}, backend=backend)
    servers: list[SippServer] = []
    try:
        bob = alice_calls_reach_bob(pbx, webhooks, servers)  # answers, then waits for a BYE
        results: dict[str, Any] = {}

        def caller() -> None:  # answered, then waits for a BYE
            results["caller"] = run_sipp(
                scenario("call_uac_wait_bye"), pbx.address, media=True, timeout=40,
                keys={"domain": DOMAIN, "caller": "alice"},
                extra=["-s", "1001", "-au", "alice", "-ap", "secret", "-m", "1"])

        thread = threading.Thread(target=caller)
        thread.start()
        wait_until(lambda: status_events(webhooks, "connect:answered"), 15, "the call answered")
        call_id = status_events(webhooks, "connect:answered")[0]["callId"]
        rdb = redis.Redis.from_url(redis_server, decode_responses=True)
        assert rdb.exists(f"call:{DOMAIN}:{call_id}")
        pbx.signal(signal.SIGTERM)
        assert pbx.proc.wait(20) == 0, pbx.tail()
        thread.join(30)
        assert results["caller"].rc == 0, results["caller"].explain()
        assert "BYE sip:" in results["caller"].messages
        done = bob.wait(30)
        assert done.rc == 0, done.explain()
        assert [e["callId"] for e in status_events(webhooks, "pbx:shutdown")] == [call_id]
        assert not rdb.exists(f"call:{DOMAIN}:{call_id}")
        assert ng(pbx, {"command": "query", "call-id": call_id}).get("result") != "ok"
        text = pbx.log_text()
        assert "call ended - the PBX is shutting down" in text
        assert "work still running after being told to end" not in text
    finally:
        for s in servers:
            s.stop()
        pbx.stop()
        pbx.release()


@pytest.mark.parametrize("backend", BACKENDS)
def test_sighup_reloads_machines(tmp_path_factory: pytest.TempPathFactory, redis_server: str,
                                 rtpengine_server: Any, webhooks: WebhookServer,
                                 backend: str) -> None:
    work = tmp_path_factory.mktemp("machines")
    shutil.copytree(machines_dir(), work / "machines")
    pbx = start_pbx(tmp_path_factory.mktemp("pbx-hup"), config(webhooks),
                    redis_url=redis_server, rtpengine=rtpengine_server,
                    env={"MACHINES_PATH": str(work / "machines")}, backend=backend)
    try:
        reg = work / "machines" / "registration.yaml"
        reg.write_text(reg.read_text().replace("version: 1", "version: 2", 1))
        mark = len(pbx.log_text())
        pbx.signal(signal.SIGHUP)
        pbx.wait_log('"registration": "2+', start=mark)
        # a broken edit is refused and the daemon keeps the last good version
        reg.write_text(reg.read_text().replace("target: authenticating",
                                               "target: nowhere", 1))
        mark = len(pbx.log_text())
        pbx.signal(signal.SIGHUP)
        pbx.wait_log("machine reload refused", start=mark)
        assert "E020" in pbx.log_text()[mark:]
        result = run_sipp(scenario_with("reg_noauth", code=401), pbx.address,
                          keys={"domain": DOMAIN}, extra=["-s", "alice", "-m", "1"])
        assert result.rc == 0, result.explain()
    finally:
        rc = pbx.stop()
        pbx.release()
        assert rc == 0


def _run(env: dict[str, str], tmp: Path) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "engine", "run"], cwd=tmp, timeout=60,
                          env={**os.environ, **env}, capture_output=True, text=True,
                          check=False)


def test_bad_setting_stops_startup_with_one_line(tmp_path: Path) -> None:
    result = _run({"SIP_PORT": "five"}, tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == \
        "dragonpbx: SIP_PORT='five' is invalid: expected an integer from 0 to 65535"


def test_invalid_machine_stops_startup(tmp_path: Path, redis_server: str,
                                       rtpengine_server: Any) -> None:
    shutil.copytree(machines_dir(), tmp_path / "machines")
    auth = tmp_path / "machines" / "digest_auth.yaml"
    auth.write_text(auth.read_text().replace("entry: [auth.challenge,", "entry: [auth.chalenge,"))
    (tmp_path / "config.json").write_text('{"domains": {}}')
    result = _run({"MACHINES_PATH": str(tmp_path / "machines"), "DATA_SOURCE": "json",
                   "CONFIG_FILE": str(tmp_path / "config.json"), "REDIS_URL": redis_server,
                   "RTPENGINE_HOST": rtpengine_server.address, "SIP_PORT": "0"}, tmp_path)
    assert result.returncode == 2, result.stderr
    assert "E010" in result.stderr and "did you mean 'auth.challenge'" in result.stderr
