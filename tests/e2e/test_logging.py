"""What the daemon logs at LOGLEVEL=info, what operators run: one summary line per
registration and per call when it ends, no line for the normal digest challenge,
a rejection with its reason, the digest username and the source, and nothing more
for a retransmission. The real daemon, Redis, RTPEngine, a webhook server and SIPp.
"""

from __future__ import annotations

import hashlib
import re
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

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


def config(hooks: WebhookServer) -> dict[str, Any]:
    plan = {"1???": {"callHook": hooks.url("/call"), "statusHook": hooks.url("/status")}}
    clients = [{"username": u, "password": "secret", "codecs": ["PCMA", "PCMU"],
                "dialplan": plan} for u in ("alice", "bob")]
    return {"domains": {DOMAIN: {"domain_id": 1, "clients": clients, "trunks": []}}}


@pytest.fixture(scope="module")
def pbx(pbx_factory: Callable[..., Pbx], webhook_server: WebhookServer) -> Pbx:
    return pbx_factory(config(webhook_server), LOGLEVEL="info")


@pytest.fixture
def servers() -> Iterator[list[SippServer]]:
    started: list[SippServer] = []
    yield started
    for s in started:
        s.stop()


def lines_about(pbx: Pbx, call_id: str, *, settle: float = 0.5,
                timeout: float = 20.0) -> list[dict[str, Any]]:
    """The daemon's log lines that mention ``call_id``, once its summary line is there
    (and ``settle`` seconds more, for anything that would follow it)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and not any(
            call_id in str(line) and "summary" in line.get("msg", "")
            for line in pbx.log_lines()):
        time.sleep(0.1)
    time.sleep(settle)
    return [line for line in pbx.log_lines() if call_id in str(line)]


def call_ids(messages: str) -> set[str]:
    return set(re.findall(r"^Call-ID: *(\S+)", messages, re.MULTILINE))


def register(pbx: Pbx, user: str, password: str, code: int,
             port: int | None = None) -> Any:
    result = run_sipp(scenario_with("reg_auth", code=code), pbx.address, port=port,
                      keys={"domain": DOMAIN, "expires": "300"},
                      extra=["-s", user, "-au", user, "-ap", password, "-m", "1"], timeout=15)
    assert result.rc == 0, result.explain()
    assert "SIP/2.0 401" in result.messages  # the challenge came first
    return result


def test_digest_registration_leaves_one_summary_and_no_rejection(pbx: Pbx) -> None:
    result = register(pbx, "alice", "secret", 200)
    (call_id,) = call_ids(result.messages)
    lines = lines_about(pbx, call_id)
    assert not [ln for ln in lines if "reject" in str(ln).lower()], lines  # 401 is no rejection
    assert len(lines) == 1, lines
    (summary,) = lines
    assert summary["level"] == "info" and summary["msg"] == "registration summary"
    assert summary == {**summary, "outcome": "registered", "status": 200, "call_id": call_id,
                       "aor": f"alice@{DOMAIN}", "expires": 300, "username": "alice"}
    assert isinstance(summary["ms"], int) and 0 <= summary["ms"] < 5000
    assert summary["source"].startswith("127.0.0.1:")
    assert "why" not in summary


def test_wrong_password_is_one_rejection_line_with_username_and_source(pbx: Pbx) -> None:
    port = free_udp_port()
    result = register(pbx, "alice", "guess", 403, port=port)
    (call_id,) = call_ids(result.messages)
    lines = lines_about(pbx, call_id)
    assert len(lines) == 1, lines
    (summary,) = lines
    assert summary["level"] == "info" and summary["msg"] == "registration summary"
    assert summary == {**summary, "outcome": "rejected", "status": 403,
                       "why": "invalid credentials", "username": "alice",
                       "source": f"127.0.0.1:{port}", "aor": f"alice@{DOMAIN}"}


def _register_request(pbx: Pbx, port: int, call_id: str, branch: str, cseq: int,
                      authorization: str | None = None) -> bytes:
    lines = [
        f"REGISTER sip:{DOMAIN} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch={branch};rport",
        f"From: <sip:alice@{DOMAIN}>;tag=logtest", f"To: <sip:alice@{DOMAIN}>",
        f"Call-ID: {call_id}", f"CSeq: {cseq} REGISTER",
        f"Contact: <sip:alice@127.0.0.1:{port}>", "Max-Forwards: 70", "Expires: 300",
    ]
    if authorization:
        lines.append(f"Authorization: {authorization}")
    return ("\r\n".join([*lines, "Content-Length: 0", "", ""])).encode()


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()  # SIP digest is MD5


def test_retransmissions_add_no_lines(pbx: Pbx) -> None:
    """Each request sent three times (same branch: retransmissions the transaction layer
    absorbs): the challenge leaves no info line, the rejection exactly one."""
    call_id = f"retrans-{time.monotonic_ns()}@127.0.0.1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        port = sock.getsockname()[1]
        first = _register_request(pbx, port, call_id, "z9hG4bK-log-1", 1)
        for _ in range(3):
            sock.sendto(first, ("127.0.0.1", pbx.port))
            challenge = sock.recv(65535).decode()
            assert challenge.startswith("SIP/2.0 401"), challenge
        nonce = re.search(r'nonce="([^"]+)"', challenge).group(1)
        uri = f"sip:{DOMAIN}"
        ha1 = _md5(f"alice:{DOMAIN}:not-the-password")
        response = _md5(f"{ha1}:{nonce}:00000001:c0ffee:auth:{_md5(f'REGISTER:{uri}')}")
        auth = (f'Digest username="alice", realm="{DOMAIN}", nonce="{nonce}", uri="{uri}", '
                f'response="{response}", algorithm=MD5, qop=auth, nc=00000001, '
                f'cnonce="c0ffee"')
        second = _register_request(pbx, port, call_id, "z9hG4bK-log-2", 2, auth)
        for _ in range(3):
            sock.sendto(second, ("127.0.0.1", pbx.port))
            answer = sock.recv(65535).decode()
            assert answer.startswith("SIP/2.0 403"), answer
    lines = lines_about(pbx, call_id)
    assert [(ln["msg"], ln["outcome"], ln["status"]) for ln in lines] == [
        ("registration summary", "rejected", 403)], lines
    assert lines[0]["source"] == f"127.0.0.1:{port}" and lines[0]["username"] == "alice"


def test_client_to_client_call_leaves_one_summary(pbx: Pbx, webhooks: WebhookServer,
                                                   servers: list[SippServer]) -> None:
    bob_port = free_udp_port()
    register(pbx, "bob", "secret", 200, port=bob_port)
    register(pbx, "alice", "secret", 200)  # a client call uses the caller's registration
    bob = start_sipp(scenario("call_uas"), port=bob_port, media=True, timeout=60,
                     extra=["-rtp_echo", "-m", "1", "-d", "300"])
    servers.append(bob)
    webhooks.reply("/call", json=[{"verb": "connect",
                                   "dest": {"type": "client", "address": "bob"}}])
    webhooks.reply("/status", json={"ok": True})
    result = run_sipp(scenario("call_uac"), pbx.address, media=True, timeout=45,
                      keys={"domain": DOMAIN, "caller": "alice"},
                      extra=["-s", "1001", "-au", "alice", "-ap", "secret", "-m", "1",
                             "-d", "1500"])
    assert result.rc == 0, result.explain()
    assert bob.wait(20).rc == 0
    assert "SIP/2.0 401" in result.messages  # the INVITE was challenged first
    (call_id,) = call_ids(result.messages)
    lines = lines_about(pbx, call_id)
    assert len(lines) == 1, lines
    (summary,) = lines
    assert summary["level"] == "info" and summary["msg"] == "call summary"
    assert summary == {**summary, "outcome": "completed", "status": 200, "call_id": call_id,
                       "from": "alice", "to": "1001", "username": "alice"}
    assert summary["source"].startswith("127.0.0.1:")
    assert 1500 <= summary["ms"] < 20000, summary


def test_cancelled_call_leaves_one_summary(pbx: Pbx, webhooks: WebhookServer,
                                           servers: list[SippServer]) -> None:
    bob_port = free_udp_port()
    register(pbx, "bob", "secret", 200, port=bob_port)
    register(pbx, "alice", "secret", 200)
    bob = start_sipp(scenario("call_uas_silent"), port=bob_port, media=True, timeout=60,
                     extra=["-m", "1"])
    servers.append(bob)
    webhooks.reply("/call", json=[{"verb": "connect",
                                   "dest": {"type": "client", "address": "bob"}}])
    webhooks.reply("/status", json={"ok": True})
    result = run_sipp(scenario("call_uac_cancel"), pbx.address, media=True, timeout=45,
                      keys={"domain": DOMAIN, "caller": "alice"},
                      extra=["-s", "1002", "-au", "alice", "-ap", "secret", "-m", "1",
                             "-d", "1000"])
    assert result.rc == 0, result.explain()
    assert bob.wait(20).rc == 0
    (call_id,) = call_ids(result.messages)
    lines = lines_about(pbx, call_id)
    summaries = [ln for ln in lines if ln["logger"] == "engine.summary"]
    assert [(ln["msg"], ln["outcome"], ln["status"], ln["to"]) for ln in summaries] == [
        ("call summary", "cancelled", 487, "1002")], lines
    assert all(ln["call_id"] == call_id for ln in lines), lines


def test_cancelled_call_ends_without_warnings(pbx: Pbx, webhooks: WebhookServer,
                                              servers: list[SippServer]) -> None:
    bob_port = free_udp_port()
    register(pbx, "bob", "secret", 200, port=bob_port)
    register(pbx, "alice", "secret", 200)
    bob = start_sipp(scenario("call_uas_silent"), port=bob_port, media=True, timeout=60,
                     extra=["-m", "1"])
    servers.append(bob)
    webhooks.reply("/call", json=[{"verb": "connect",
                                   "dest": {"type": "client", "address": "bob"}}])
    webhooks.reply("/status", json={"ok": True})
    result = run_sipp(scenario("call_uac_cancel"), pbx.address, media=True, timeout=45,
                      keys={"domain": DOMAIN, "caller": "alice"},
                      extra=["-s", "1002", "-au", "alice", "-ap", "secret", "-m", "1",
                             "-d", "1000"])
    assert result.rc == 0, result.explain()
    (call_id,) = call_ids(result.messages)
    lines = lines_about(pbx, call_id)
    assert [ln["msg"] for ln in lines] == ["call summary"], lines
    assert lines[0]["ms"] < 5000, lines


def test_debug_lines_of_a_call_carry_the_a_leg_call_id_and_b_lines_both(
        pbx_factory: Callable[..., Pbx], webhook_server: WebhookServer, webhooks: WebhookServer,
        servers: list[SippServer]) -> None:
    """At LOGLEVEL=debug every line a machine instance of the call writes (transitions of
    inbound_call, digest_auth, the connect verb and the call leg) carries the caller's
    Call-ID; the B leg's lines carry its own Call-ID too, and the summary lists it."""
    debug_pbx = pbx_factory(config(webhook_server), LOGLEVEL="debug")
    bob_port = free_udp_port()
    for user, port in (("bob", bob_port), ("alice", None)):
        (reg_id,) = call_ids(register(debug_pbx, user, "secret", 200, port=port).messages)
        lines_about(debug_pbx, reg_id)  # its last lines are written
    before = len(debug_pbx.log_lines())
    bob = start_sipp(scenario("call_uas"), port=bob_port, media=True, timeout=60,
                     extra=["-rtp_echo", "-m", "1", "-d", "300"])
    servers.append(bob)
    webhooks.reply("/call", json=[{"verb": "connect",
                                   "dest": {"type": "client", "address": "bob"}}])
    webhooks.reply("/status", json={"ok": True})
    result = run_sipp(scenario("call_uac"), debug_pbx.address, media=True, timeout=45,
                      keys={"domain": DOMAIN, "caller": "alice"},
                      extra=["-s", "1001", "-au", "alice", "-ap", "secret", "-m", "1",
                             "-d", "500"])
    assert result.rc == 0, result.explain()
    assert bob.wait(20).rc == 0
    (a_leg,) = call_ids(result.messages)
    (b_leg,) = call_ids(bob.messages)
    assert a_leg != b_leg
    end = time.monotonic() + 20
    while time.monotonic() < end and not [
            ln for ln in debug_pbx.log_lines()[before:]
            if ln.get("msg") == "call summary" and ln.get("outcome") == "completed"]:
        time.sleep(0.1)
    time.sleep(0.5)  # the lines that follow the summary (the last transitions)
    lines = debug_pbx.log_lines()[before:]
    of_instances = [ln for ln in lines if "instance" in ln]
    machines = {ln["machine"].split("@")[0] for ln in of_instances if "machine" in ln}
    assert {"inbound_call", "digest_auth", "verb_connect", "call_leg"} <= machines, machines
    assert [ln for ln in of_instances if ln.get("call_id") != a_leg] == []
    leg_lines = [ln for ln in of_instances if ln.get("machine", "").startswith("call_leg@")]
    with_b = [ln for ln in leg_lines if "leg_call_id" in ln]
    assert len(with_b) >= 3, leg_lines  # ringing, answered, hung up…
    assert {ln["leg_call_id"] for ln in with_b} == {b_leg}
    assert leg_lines[-1] in with_b  # from the INVITE on, every leg line names the B leg
    summaries = [ln for ln in lines if ln.get("msg") == "call summary"]
    assert [(ln["level"], ln.get("outcome")) for ln in summaries] == [
        ("debug", "challenged"), ("info", "completed")], summaries
    summary = summaries[-1]
    assert summary["call_id"] == a_leg and summary["legs"] == [b_leg]
    # grep on either Call-ID finds the call's summary
    assert summary in [ln for ln in lines if b_leg in str(ln)]
