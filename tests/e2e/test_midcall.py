"""Mid-call requests end to end: hold/unhold re-INVITE relayed through RTPEngine (D-14),
SIP INFO DTMF injected as RFC 4733 packets (D-17), and blind transfer by REFER (D-25)."""

from __future__ import annotations

import struct
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_calls import DOMAIN, assert_clean, config, register, wait_events
from tests.fixtures.daemon import Pbx
from tests.fixtures.procs import require_binary
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


@pytest.fixture(scope="module")
def pbx(pbx_factory: Callable[..., Pbx], webhook_server: WebhookServer,
        sip_backend: str) -> Pbx:
    """Every case runs on both SIP backends (embedded, and behind drachtio-server)."""
    pbx = pbx_factory(config(webhook_server), backend=sip_backend)
    register(pbx, "alice", free_udp_port())
    return pbx


@pytest.fixture
def servers(webhooks: WebhookServer) -> Iterator[list[SippServer]]:
    webhooks.reply("/status", json={})
    started: list[SippServer] = []
    yield started
    for s in started:
        s.stop()


def start_callee(servers: list[SippServer], pbx: Pbx, user: str, name: str,
                 media_port: int | None = None, keys: dict[str, str] | None = None
                 ) -> SippServer:
    port = free_udp_port()
    register(pbx, user, port)
    extra = ["-rtp_echo", "-m", "1", "-d", "200"]
    if media_port is not None:
        extra += ["-mp", str(media_port)]
    server = start_sipp(scenario(name), port=port, media=media_port is None, timeout=60,
                        keys=keys, extra=extra)
    servers.append(server)
    return server


def caller(pbx: Pbx, name: str, number: str, hold_ms: int = 2000, **subs: str) -> Any:
    scen = scenario_with(name, **subs) if subs else scenario(name)
    return run_sipp(scen, pbx.address, media=True, timeout=45,
                    keys={"domain": DOMAIN, "caller": "alice"},
                    extra=["-s", number, "-au", "alice", "-ap", "secret", "-m", "1",
                           "-d", str(hold_ms)])


def test_hold_reinvite_from_callee_reaches_caller_with_right_direction(
        pbx: Pbx, webhooks: WebhookServer, servers: list[SippServer]) -> None:
    bob = start_callee(servers, pbx, "bob", "call_uas_hold")
    webhooks.reply("/call", json=[{"verb": "connect", "dest": {"type": "client",
                                                               "address": "bob"}}])
    result = caller(pbx, "call_uac_reinvited", "1001", hold_ms=1500,
                    direction="a=sendonly", answer="recvonly")
    assert result.rc == 0, result.explain()
    done = bob.wait(20)
    assert done.rc == 0, done.explain()  # bob's check: the answer it got says a=recvonly
    assert "connect:reinvite" in wait_events(webhooks, "connect:reinvite")
    assert_clean(pbx)


def _rtp_payload_types(pcap: Path) -> list[int]:
    """Payload types of the RTP packets in a pcap captured on lo (Linux cooked/Ethernet)."""
    data = pcap.read_bytes()
    if len(data) < 24:
        return []
    linktype = struct.unpack("<I", data[20:24])[0]
    link = {1: 14, 113: 16, 276: 20}.get(linktype, 14)
    out, pos = [], 24
    while pos + 16 <= len(data):
        incl = struct.unpack("<I", data[pos + 8:pos + 12])[0]
        frame = data[pos + 16:pos + 16 + incl]
        pos += 16 + incl
        ip = frame[link:]
        if len(ip) < 20 or ip[0] >> 4 != 4:
            continue
        udp = ip[(ip[0] & 0x0F) * 4:]
        rtp = udp[8:]
        if len(rtp) >= 12 and rtp[0] >> 6 == 2:
            out.append(rtp[1] & 0x7F)
    return out


def test_info_dtmf_becomes_telephone_events_towards_the_callee(
        pbx: Pbx, webhooks: WebhookServer, servers: list[SippServer]) -> None:
    tcpdump = require_binary("tcpdump")
    media_port = free_udp_port()
    pcap = Path(tempfile.mkdtemp()) / "callee.pcap"
    capture = subprocess.Popen([tcpdump, "-i", "lo", "-U", "-w", str(pcap),
                                f"udp and dst port {media_port}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        bob = start_callee(servers, pbx, "bob", "call_uas", media_port=media_port)
        webhooks.reply("/call", json=[{"verb": "connect", "dest": {"type": "client",
                                                                   "address": "bob"}}])
        result = caller(pbx, "call_uac_info", "1001", hold_ms=1500)
        assert result.rc == 0, result.explain()
        assert bob.wait(20).rc == 0
    finally:
        time.sleep(0.3)
        capture.terminate()
        capture.wait(5)
    types = _rtp_payload_types(pcap)
    assert types.count(101) >= 5, f"telephone-event packets: {types.count(101)} of {len(types)}"
    assert_clean(pbx)


def test_refer_from_callee_transfers_the_caller(pbx: Pbx, webhooks: WebhookServer,
                                                servers: list[SippServer]) -> None:
    bob = start_callee(servers, pbx, "bob", "call_uas_refer",
                       keys={"target": "1099", "domain": DOMAIN})
    carol = start_callee(servers, pbx, "carol", "call_uas")

    def script(body: dict[str, Any]) -> list[dict[str, Any]]:
        if body.get("refer"):
            return [{"verb": "connect", "dest": {"type": "client", "address": "carol"}}]
        return [{"verb": "connect", "dest": {"type": "client", "address": "bob"}}]

    webhooks.reply("/call", json=script)
    result = caller(pbx, "call_uac_reinvited", "1001", hold_ms=2500, direction="m=audio",
                    answer="sendrecv")
    assert result.rc == 0, result.explain()
    assert bob.wait(20).rc == 0, bob.wait(1).explain()  # 202, NOTIFY 100, NOTIFY 200, BYE
    assert carol.wait(20).rc == 0
    hooks = [r.json for r in webhooks.requests("/call")]
    assert hooks[1]["refer"] is True and hooks[1]["to"] == "1099" and "count" not in hooks[1]
    assert hooks[1]["from"] == "bob"
    assert "connect:refer" in wait_events(webhooks, "connect:refer")
    assert_clean(pbx)


def test_late_offer_caller_gets_the_offer_in_200_and_answers_in_ack(
        pbx: Pbx, webhooks: WebhookServer, servers: list[SippServer]) -> None:
    """D-34: an SDP-less INVITE. The callee's offer reaches the caller through RTPEngine in
    our 200; the caller's answer (in its ACK) reaches the callee in our ACK."""
    from tests.e2e.test_calls import MediaProbe

    bob = start_callee(servers, pbx, "bob", "call_uas")
    webhooks.reply("/call", json=[{"verb": "connect", "dest": {"type": "client",
                                                               "address": "bob"}}])
    with MediaProbe(pbx) as probe:
        result = caller(pbx, "call_uac_late", "1001", hold_ms=2500)
    assert result.rc == 0, result.explain()
    done = bob.wait(20)
    assert done.rc == 0, done.explain()
    invite_to_bob = done.messages.split("INVITE sip:")[1].split("\n\n")[0]
    assert "Content-Type: application/sdp" not in invite_to_bob  # late offer to the callee too
    ack_to_bob = done.messages.split("ACK sip:")[1]
    assert "m=audio" in ack_to_bob  # our ACK carries the (translated) answer
    assert sum(1 for n in probe.packets.values() if n > 20) >= 2, probe.packets
    assert_clean(pbx)
