"""Memory under call load (issue 10, defect 8): the real daemon, Redis, RTPEngine, a
webhook server and SIPp; two rounds of short client→client calls (INVITE → 401 →
INVITE → CallHook → RTPEngine → callee → 200 → ACK → BYE).

A finished call must be freed when it ends, not left for a full garbage collection:
before the fix every call left ~20 KiB of cyclic garbage (machine instance ↔ dialog
listeners, request ↔ CANCEL callbacks) that piled up for minutes and was then collected
in one multi-second pause. The daemon logs its per-call table sizes on SIGUSR1 (one
``sizes`` line); the test compares two equal rounds and checks every table drains.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.fixtures.daemon import Pbx
from tests.fixtures.sipp import SippServer, free_udp_port, run_sipp, scenario, start_sipp
from tests.fixtures.webhooks import WebhookServer

pytestmark = [pytest.mark.e2e]

DOMAIN = "pbx.test"
CALLS_PER_ROUND = 150
RATE = 30
# The second round reuses the first round's memory: what it adds is what calls leave
# behind (measured with the fix: see the figures in the README's Performance section;
# before it ~20 KiB and a few hundred Python blocks per call).
MAX_RSS_KIB_PER_CALL = 8.0
MAX_BLOCKS_PER_CALL = 40
# tables that hold something per call or per transaction, and their idle size
PER_CALL_TABLES = ("instances_live", "instances_background", "sip_dialogs", "sip_unanswered",
                   "sip_invites", "sip_merge", "sip_client_users", "sip_tasks",
                   "sip_server_tx", "sip_client_tx", "sip_tx_by_id", "sip_tx_timers",
                   "sip_timer_queue", "rtpengine_calls", "rtpengine_pending", "hook_waiters",
                   "redis_pending")
DIALOG_TABLES = ("instances_live", "sip_dialogs", "sip_invites", "sip_merge",
                 "rtpengine_calls", "rtpengine_pending")


def config(hooks: WebhookServer) -> dict[str, Any]:
    plan = {"1???": {"callHook": hooks.url("/memory-call")}}
    clients = [{"username": u, "password": "secret", "codecs": ["PCMA", "PCMU"],
                "dialplan": plan} for u in ("caller", "1001")]
    return {"domains": {DOMAIN: {"domain_id": 1, "clients": clients, "trunks": []}}}


@pytest.fixture(scope="module")
def pbx(pbx_factory: Callable[..., Pbx], webhook_server: WebhookServer) -> Pbx:
    return pbx_factory(config(webhook_server))


@pytest.fixture
def callee(pbx: Pbx) -> Iterator[SippServer]:
    port = free_udp_port()
    register(pbx, "1001", port)
    server = start_sipp(scenario("memory_uas_answer"), port=port, timeout=120,
                        extra=["-l", "1000"])
    yield server
    server.stop()


def register(pbx: Pbx, user: str, port: int) -> None:
    from tests.fixtures.sipp import scenario_with

    result = run_sipp(scenario_with("reg_auth", code=200), pbx.address, port=port,
                      keys={"domain": DOMAIN, "expires": "300"},
                      extra=["-s", user, "-au", user, "-ap", "secret", "-m", "1"], timeout=15)
    assert result.rc == 0, result.explain()


def sizes(pbx: Pbx) -> dict[str, Any]:
    """Ask the daemon for its table sizes (SIGUSR1) and read the line it logs."""
    start = len(pbx.log_text())
    pbx.signal(signal.SIGUSR1)
    end = time.monotonic() + 5
    while time.monotonic() < end:
        for line in pbx.log_text()[start:].splitlines():
            if '"msg": "sizes"' in line:
                return json.loads(line)
        time.sleep(0.05)
    raise AssertionError(f"no sizes line after SIGUSR1:\n{pbx.tail()}")


def wait_sizes(pbx: Pbx, tables: tuple[str, ...], timeout: float) -> dict[str, Any]:
    """Poll until every table in ``tables`` is empty; the last reading either way."""
    end = time.monotonic() + timeout
    while True:
        now = sizes(pbx)
        if all(now.get(t) == 0 for t in tables) or time.monotonic() > end:
            return now
        time.sleep(0.5)


def round_of_calls(pbx: Pbx) -> None:
    result = run_sipp(scenario("memory_uac_call"), pbx.address, timeout=60,
                      keys={"domain": DOMAIN, "caller": "caller"},
                      extra=["-s", "1001", "-au", "caller", "-ap", "secret",
                             "-m", str(CALLS_PER_ROUND), "-r", str(RATE), "-l", "200",
                             "-d", "100"])
    assert result.rc == 0 and result.stat("SuccessfulCall") == CALLS_PER_ROUND, \
        result.explain()


def test_calls_leave_nothing_behind(pbx: Pbx, webhook_server: WebhookServer,
                                    callee: SippServer) -> None:
    webhook_server.reply("/memory-call", json=[
        {"verb": "connect", "dest": {"type": "client", "address": "1001"}}])
    register(pbx, "caller", free_udp_port())

    # Each measurement is taken when the round's calls have ended but their transactions
    # still wait out Timer J / the accepted state (64*T1 = 32 s, RFC 3261/6026): the same
    # phase in both rounds, so the difference is what the calls themselves left behind.
    round_of_calls(pbx)
    first = wait_sizes(pbx, DIALOG_TABLES, timeout=10)
    # every per-call table drains once those timers have run out
    idle = wait_sizes(pbx, PER_CALL_TABLES, timeout=45)
    left = {t: idle.get(t) for t in PER_CALL_TABLES if idle.get(t) != 0}
    assert not left, f"per-call tables not back to empty: {left}\n{idle}"
    assert 0 <= idle["hook_conns_open"] <= 4, idle  # keep-alive reused, not one per call

    round_of_calls(pbx)
    second = wait_sizes(pbx, DIALOG_TABLES, timeout=10)
    rss_per_call = (second["rss_kib"] - first["rss_kib"]) / CALLS_PER_ROUND
    blocks_per_call = (second["py_blocks"] - first["py_blocks"]) / CALLS_PER_ROUND
    print(f"second round: {rss_per_call:+.2f} KiB RSS, {blocks_per_call:+.1f} Python blocks "
          f"per call; RSS KiB / blocks after round 1 {first['rss_kib']} / "
          f"{first['py_blocks']}, drained {idle['rss_kib']} / {idle['py_blocks']}, after "
          f"round 2 {second['rss_kib']} / {second['py_blocks']}; {second}")
    assert rss_per_call < MAX_RSS_KIB_PER_CALL, (rss_per_call, first, second)
    assert blocks_per_call < MAX_BLOCKS_PER_CALL, (blocks_per_call, first, second)
    grown = {t: (first[t], second[t]) for t in PER_CALL_TABLES if second[t] > first[t]}
    assert not grown, f"tables larger after the second round than after the first: {grown}"
    assert pbx.alive()
