"""Trunks end to end: SIPp plays the carrier (calls from its CIDR, digest-authenticated
calls, a 407-challenging callee, a registrar) against the real daemon."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from itertools import pairwise
from typing import Any

import pytest
import redis

from tests.e2e.test_calls import MediaProbe, assert_clean, register
from tests.fixtures.daemon import Pbx
from tests.fixtures.sipp import (
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
CARRIER_PORT = free_udp_port()


def base_config(hooks: WebhookServer, extra_trunks: list[dict[str, Any]] = ()) -> dict[str, Any]:
    plan = {"44*": {"callHook": hooks.url("/trunkcall"), "statusHook": hooks.url("/status")}}
    trunks = [
        {"id": 1, "name": "cidr-carrier", "inbound": ["127.0.0.2/32"], "dialplan": plan,
         "codecs": ["PCMA"], "register": False,
         "outbound": {"host": f"127.0.0.1:{CARRIER_PORT}", "username": "trunkuser",
                      "password": "trunkpass"}},
        {"id": 2, "name": "branch", "authType": "authentication", "authUser": "branch",
         "authPass": "branchpw", "dialplan": plan, "codecs": ["PCMA"]},
        *extra_trunks,
    ]
    client_plan = {"0*": {"callHook": hooks.url("/call"), "statusHook": hooks.url("/status")}}
    return {"domains": {DOMAIN: {"domain_id": 1, "clients": [
        {"username": "alice", "password": "secret", "codecs": ["PCMA", "PCMU"],
         "dialplan": client_plan}], "trunks": trunks}}}


@pytest.fixture(scope="module")
def pbx(pbx_factory: Callable[..., Pbx], webhook_server: WebhookServer,
        sip_backend: str) -> Pbx:
    """Every case runs on both SIP backends (embedded, and behind drachtio-server)."""
    pbx = pbx_factory(base_config(webhook_server), backend=sip_backend)
    register(pbx, "alice", free_udp_port())
    return pbx


@pytest.fixture
def servers() -> Iterator[list[SippServer]]:
    started: list[SippServer] = []
    yield started
    for s in started:
        s.stop()


def test_call_from_trunk_cidr_needs_no_challenge(pbx: Pbx, webhooks: WebhookServer) -> None:
    webhooks.reply("/trunkcall", json=[{"verb": "response", "code": 486}])
    result = run_sipp(scenario_with("trunk_uac_expect", code=486), pbx.address,
                      bind="127.0.0.2", keys={"domain": DOMAIN},
                      extra=["-s", "441234", "-m", "1"], media=True)
    assert result.rc == 0, result.explain()
    assert "SIP/2.0 401" not in result.messages
    body = webhooks.requests("/trunkcall")[0].json
    assert body["source"] == {"id": 1, "name": "cidr-carrier"}  # S-4: no credentials
    assert "trunkpass" not in str(body) and body["to"] == "441234"
    assert_clean(pbx)


def test_auth_trunk_with_right_and_wrong_credentials(pbx: Pbx, webhooks: WebhookServer) -> None:
    webhooks.reply("/trunkcall", json=[{"verb": "response", "code": 486}])
    ok = run_sipp(scenario_with("call_uac_expect", code=486), pbx.address, media=True,
                  keys={"domain": DOMAIN, "caller": "branch"},
                  extra=["-s", "441234", "-au", "branch", "-ap", "branchpw", "-m", "1"])
    assert ok.rc == 0, ok.explain()
    assert webhooks.requests("/trunkcall")[0].json["source"] == {"id": 2, "name": "branch"}
    bad = run_sipp(scenario_with("call_uac_expect", code=403), pbx.address, media=True,
                   keys={"domain": DOMAIN, "caller": "branch"},
                   extra=["-s", "441234", "-au", "branch", "-ap", "wrong", "-m", "1"])
    assert bad.rc == 0, bad.explain()


def test_connect_to_trunk_answers_407_and_bridges(pbx: Pbx, webhooks: WebhookServer,
                                                  servers: list[SippServer]) -> None:
    carrier = start_sipp(scenario("trunk_uas_407"), port=CARRIER_PORT, media=True,
                         extra=["-rtp_echo", "-m", "1"])
    servers.append(carrier)
    webhooks.reply("/call", json=[{"verb": "connect", "dest": {
        "type": "trunk", "trunk_name": "cidr-carrier", "address": "441234567",
        "headers": {"P-Asserted-Identity": "<sip:+441234000000@pbx.test>"}}}])
    with MediaProbe(pbx) as probe:
        result = run_sipp(scenario("call_uac"), pbx.address, media=True, timeout=45,
                          keys={"domain": DOMAIN, "caller": "alice"},
                          extra=["-s", "0441234567", "-au", "alice", "-ap", "secret", "-m", "1",
                                 "-d", "3000"])
    assert result.rc == 0, result.explain()
    done = carrier.wait(20)
    assert done.rc == 0, done.explain()
    invite = done.messages.split("INVITE sip:")[-1]
    assert invite.startswith("441234567@") and "Proxy-Authorization: Digest" in invite
    assert "P-Asserted-Identity: <sip:+441234000000@pbx.test>" in invite
    assert sum(1 for n in probe.packets.values() if n > 20) >= 2, probe.packets
    assert_clean(pbx)


def _register_times(messages: str) -> list[float]:
    """Arrival times of REGISTERs at the SIPp registrar (from its trace)."""
    out = []
    for block in messages.split("-----------------------------------------------")[1:]:
        m = re.match(r" (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\n\w+ message received[^\n]*\n\n"
                     r"REGISTER ", block)
        if m:
            out.append(time.mktime(time.strptime(m.group(1)[:19], "%Y-%m-%d %H:%M:%S"))
                       + float("0." + m.group(1)[20:]))
    return out


def reg_trunk(port: int) -> dict[str, Any]:
    return {"id": 3, "label": "itsp", "authType": "registration",
            "regHost": f"127.0.0.1:{port}", "regUser": "pbxuser", "regPass": "regpass",
            "dialplan": {"*": "http://127.0.0.1:9/x"}}


def test_trunk_registration_refreshes_and_unregisters_on_removal(
        pbx: Pbx, webhooks: WebhookServer, servers: list[SippServer]) -> None:
    port = free_udp_port()
    registrar = start_sipp(scenario("registrar_loop"), port=port, timeout=120,
                           keys={"user": "pbxuser", "pass": "regpass", "grant": "4"})
    servers.append(registrar)
    rdb = redis.Redis.from_url(pbx.redis_url, decode_responses=True)
    pbx.write_config(base_config(webhooks, [reg_trunk(port)]))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not list(rdb.scan_iter("regtrunk:*")):
        time.sleep(0.1)
    keys = list(rdb.scan_iter("regtrunk:*"))
    assert keys, registrar.messages[-3000:]
    fields = rdb.hgetall(keys[0])
    assert fields["trunkID"] == "3" and fields["owner"].startswith("e2e-")
    assert 0 < rdb.ttl(keys[0]) <= 4
    time.sleep(10)
    accepted = registrar.messages.count("SIP/2.0 200 OK")
    assert accepted >= 4, f"{accepted} registrations accepted in ~10 s with a 4 s grant"
    # remove the trunk: Expires 0 and the key goes
    pbx.write_config(base_config(webhooks))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and list(rdb.scan_iter("regtrunk:*")):
        time.sleep(0.1)
    assert not list(rdb.scan_iter("regtrunk:*"))
    assert re.search(r"Expires: 0", registrar.messages.split("SIP/2.0 200 OK")[-2])


def test_refusing_registrar_gets_spaced_retries(pbx: Pbx, webhooks: WebhookServer,
                                                servers: list[SippServer]) -> None:
    port = free_udp_port()
    registrar = start_sipp(scenario("registrar_refuse"), port=port, timeout=120)
    servers.append(registrar)
    pbx.write_config(base_config(webhooks, [reg_trunk(port)]))
    time.sleep(12)
    times = _register_times(registrar.messages)
    pbx.write_config(base_config(webhooks))
    assert 2 <= len(times) <= 5, times  # 2 s, 4 s, 8 s (±20%) apart: never a tight loop
    gaps = [b - a for a, b in pairwise(times)]
    assert all(g >= 1.5 for g in gaps), gaps
    assert gaps == sorted(gaps) or len(gaps) < 2, gaps


@pytest.mark.parametrize("backend", ["embedded", "drachtio"])
def test_daemon_stop_unregisters_trunks(tmp_path_factory: pytest.TempPathFactory,
                                        redis_server: str, rtpengine_server: Any,
                                        webhook_server: WebhookServer, backend: str) -> None:
    from tests.fixtures.daemon import start_pbx

    port = free_udp_port()
    registrar = start_sipp(scenario("registrar_loop"), port=port, timeout=120,
                           keys={"user": "pbxuser", "pass": "regpass", "grant": "60"})
    try:
        pbx = start_pbx(tmp_path_factory.mktemp("pbx-stop"),
                        base_config(webhook_server, [reg_trunk(port)]),
                        redis_url=redis_server, rtpengine=rtpengine_server, backend=backend)
        rdb = redis.Redis.from_url(redis_server, decode_responses=True)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not list(rdb.scan_iter("regtrunk:*")):
            time.sleep(0.1)
        assert list(rdb.scan_iter("regtrunk:*")), pbx.tail()
        assert pbx.stop() == 0
        pbx.release()
        assert not list(rdb.scan_iter("regtrunk:*"))
        assert "Expires: 0" in registrar.messages
    finally:
        registrar.stop()
