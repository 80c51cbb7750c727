"""The same behaviour on both SIP backends: the SIP request/response counters of
``/metrics`` move with traffic through drachtio as through the embedded stack (issue
13 item 5); the SIP layer's lines about a B leg carry the call's (A leg's) Call-ID in
``call_id`` and the leg's own in ``leg_call_id`` (issue 13 item 9); a carrier that
challenges our BYE gets it again with the trunk's credentials (issue 12). Every test
runs on both backends (``sip_backend``)."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.test_calls import (
    DOMAIN,
    assert_clean,
    call,
    callee,
    config,
    register,
    script,
    wait_events,
)
from tests.fixtures.daemon import Pbx
from tests.fixtures.procs import wait_until
from tests.fixtures.sipp import SippServer, free_udp_port, scenario, start_sipp
from tests.fixtures.webhooks import WebhookServer

pytestmark = [pytest.mark.e2e]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


CARRIER_PORT = free_udp_port()


def parity_config(hooks: WebhookServer) -> dict[str, Any]:
    cfg = config(hooks)
    cfg["domains"][DOMAIN]["trunks"] = [
        {"id": 1, "name": "carrier", "inbound": ["127.0.0.2/32"], "register": False,
         "outbound": {"host": f"127.0.0.1:{CARRIER_PORT}", "username": "trunkuser",
                      "password": "trunkpass"}}]
    return cfg


@pytest.fixture(scope="module")
def pbx(pbx_factory: Callable[..., Pbx], webhook_server: WebhookServer,
        sip_backend: str) -> Pbx:
    # debug: a failed B leg's line ("INVITE failed") is a debug line on both backends
    return pbx_factory(parity_config(webhook_server), backend=sip_backend, WEBPORT="auto",
                       API_TOKEN="parity-token", LOGLEVEL="debug")


@pytest.fixture
def servers() -> Any:
    started: list[SippServer] = []
    yield started
    for s in started:
        s.stop()


@pytest.fixture(autouse=True)
def status_receiver(webhooks: WebhookServer) -> None:
    webhooks.reply("/status", json={"ok": True})


@pytest.fixture(scope="module", autouse=True)
def caller_registered(pbx: Pbx) -> None:
    register(pbx, "alice", free_udp_port())  # a client's call uses its registration


def scrape(pbx: Pbx) -> Samples:
    with urllib.request.urlopen(f"{pbx.api_url}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def requests(before: Samples, after: Samples, method: str) -> float:
    return moved(before, after, "dragonpbx_sip_requests_total", method=method)


def responses(before: Samples, after: Samples, method: str, status_class: str) -> float:
    return moved(before, after, "dragonpbx_sip_responses_total", method=method,
                 status_class=status_class)


def test_sip_metrics_move_with_registrations_and_calls(
        pbx: Pbx, webhooks: WebhookServer, servers: list[SippServer]) -> None:
    before = scrape(pbx)
    bob = callee(servers, pbx, "bob", hold_ms=300)  # one REGISTER challenged, one accepted
    script(webhooks, [{"verb": "connect", "dest": {"type": "client", "address": "bob"}}])
    result = call(pbx, "1001", hold_ms=500)  # INVITE 401, INVITE 100/180/200, BYE 200
    assert result.rc == 0, result.explain()
    assert bob.wait(20).rc == 0
    assert "connect:complete" in wait_events(webhooks, "connect:complete")
    after: Samples = {}

    def settled() -> bool:  # the caller's BYE is answered before SIPp exits
        after.update(scrape(pbx))
        return responses(before, after, "BYE", "2xx") >= 1

    wait_until(settled, 5, "the BYE counted")
    assert requests(before, after, "REGISTER") == 2, after
    assert responses(before, after, "REGISTER", "4xx") == 1
    assert responses(before, after, "REGISTER", "2xx") == 1
    assert requests(before, after, "INVITE") == 2  # the challenged one and the accepted one
    assert responses(before, after, "INVITE", "1xx") >= 2  # 100 Trying to each (drachtio's)
    assert responses(before, after, "INVITE", "4xx") == 1  # the 401
    assert responses(before, after, "INVITE", "2xx") == 1
    assert requests(before, after, "BYE") == 1
    assert responses(before, after, "BYE", "2xx") == 1
    assert requests(before, after, "ACK") == 0  # not a transaction, as on the embedded stack
    assert_clean(pbx)


def test_cancel_is_counted_with_the_487(pbx: Pbx, webhooks: WebhookServer,
                                        servers: list[SippServer]) -> None:
    """drachtio answers a caller's CANCEL (200) and its INVITE (487) by itself; the
    counters show them as the embedded stack's do."""
    callee(servers, pbx, "carol", "call_uas_silent")
    script(webhooks, [{"verb": "connect", "dest": {"type": "client", "address": "carol"}}])
    before = scrape(pbx)
    result = call(pbx, "1002", "call_uac_cancel")
    assert result.rc == 0, result.explain()
    after: Samples = {}

    def settled() -> bool:
        after.update(scrape(pbx))
        return responses(before, after, "INVITE", "4xx") >= 2

    wait_until(settled, 5, "the 487 counted")
    assert requests(before, after, "CANCEL") == 1
    assert responses(before, after, "CANCEL", "2xx") == 1
    assert responses(before, after, "INVITE", "4xx") == 2  # the 401 and the 487
    assert_clean(pbx)


def test_b_leg_lines_carry_the_call_id_and_the_leg_call_id(
        pbx: Pbx, webhooks: WebhookServer, servers: list[SippServer]) -> None:
    carol = callee(servers, pbx, "carol", "call_uas_reject")  # 486 to our B leg
    script(webhooks, [{"verb": "connect", "dest": {"type": "client", "address": "carol"}},
                      {"verb": "response", "code": 486}])
    result = call(pbx, "1003", "call_uac_expect", code=486)
    assert result.rc == 0, result.explain()
    assert carol.wait(20).rc == 0
    a_call_id = re.search(r"^Call-ID: *(\S+)", result.messages, re.M).group(1)
    b_call_id = re.search(r"^Call-ID: *(\S+)", carol.messages, re.M).group(1)
    assert a_call_id != b_call_id

    def failed_leg_line() -> dict[str, Any] | None:
        return next((line for line in pbx.log_lines()
                     if line.get("msg") == "INVITE failed"
                     and line.get("leg_call_id") == b_call_id), None)

    wait_until(lambda: failed_leg_line() is not None, 5, "the SIP layer's INVITE failed line")
    line = failed_leg_line()
    assert line is not None
    assert line["call_id"] == a_call_id, line
    assert line["status"] == 486, line
    # the machine lines about the leg use the same two fields
    machine = [x for x in pbx.log_lines() if x.get("leg_call_id") == b_call_id
               and x.get("logger", "").startswith("engine.fsm")]
    assert machine and all(x["call_id"] == a_call_id for x in machine), machine
    # no SIP-layer line names the B leg's Call-ID as the call's
    assert not [x for x in pbx.log_lines() if x.get("call_id") == b_call_id]
    assert_clean(pbx)


def test_carrier_challenging_our_bye_gets_the_trunks_credentials(
        pbx: Pbx, webhooks: WebhookServer, servers: list[SippServer]) -> None:
    """The caller hangs up a call to a trunk; the carrier answers our BYE with 401 and
    gets it again with the trunk's credentials (drachtio: through its dialog, with the
    digest over the remote target it filled in)."""
    carrier = start_sipp(scenario("uas_bye_challenge"), port=CARRIER_PORT, media=True,
                         timeout=60, extra=["-rtp_echo", "-m", "1"])
    servers.append(carrier)
    script(webhooks, [{"verb": "connect", "dest": {"type": "trunk", "trunk_name": "carrier",
                                                   "address": "441234567"}}])
    result = call(pbx, "1004", hold_ms=500)
    assert result.rc == 0, result.explain()
    done = carrier.wait(20)
    assert done.rc == 0, done.explain()
    byes = [b.split("\n\n")[0] for b in done.messages.split("\nBYE sip:")[1:]]
    assert len(byes) == 2, done.messages[-3000:]
    assert "Authorization: Digest" not in byes[0]
    assert 'Authorization: Digest username="trunkuser"' in byes[1], byes[1]
    assert "connect:complete" in wait_events(webhooks, "connect:complete")
    assert_clean(pbx)
