"""Several engine instances on one Redis (issue 12 item 4, embedded backend): two real
daemons on different SIP ports share registrations, digest nonces and trunk
registrations; a SIPp registrar plays the carrier."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import signal
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tests.e2e.test_calls import assert_clean, register, script
from tests.fixtures.daemon import Pbx, start_pbx
from tests.fixtures.procs import wait_until
from tests.fixtures.sipp import (
    SippServer,
    free_udp_port,
    run_sipp,
    scenario,
    start_sipp,
)
from tests.fixtures.webhooks import WebhookServer

pytestmark = [pytest.mark.e2e]

DOMAIN = "pbx.test"
REFRESH = 2.0  # REGTRUNKREFRESH: the lease lives this long; takeover within two of them
LEASE_KEY = f"lease:trunk:{DOMAIN}:3"


def config(hooks: WebhookServer, registrar_port: int) -> dict[str, Any]:
    plan = {"1???": {"callHook": hooks.url("/call"), "statusHook": hooks.url("/status")}}
    clients = [{"username": u, "password": "secret", "codecs": ["PCMA", "PCMU"],
                "dialplan": plan} for u in ("alice", "bob")]
    trunk = {"id": 3, "label": "itsp", "authType": "registration",
             "regHost": f"127.0.0.1:{registrar_port}", "regUser": "pbxuser",
             "regPass": "regpass", "dialplan": {"*": "http://127.0.0.1:9/x"}}
    return {"domains": {DOMAIN: {"domain_id": 1, "clients": clients, "trunks": [trunk]}}}


class Cluster:
    """Engines started on one Redis with the same configuration and NONCE_SECRET."""

    def __init__(self, tmp: pytest.TempPathFactory, redis_url: str, rtpengine: Any,
                 cfg: dict[str, Any]):
        self.tmp, self.redis_url, self.rtpengine, self.cfg = tmp, redis_url, rtpengine, cfg
        self.engines: list[Pbx] = []

    def start(self) -> Pbx:
        pbx = start_pbx(self.tmp.mktemp("engine"), self.cfg, redis_url=self.redis_url,
                        rtpengine=self.rtpengine,
                        env={"REGTRUNKREFRESH": str(REFRESH), "TRUNK_REGISTER_EXPIRES": "60"})
        self.engines.append(pbx)
        return pbx

    def by_instance(self, instance: str) -> Pbx:
        return next(p for p in self.engines if f"e2e-{p.port}" == instance)


@pytest.fixture(scope="module")
def registrar() -> Iterator[SippServer]:
    port = free_udp_port()
    server = start_sipp(scenario("registrar_loop"), port=port, timeout=300,
                        keys={"user": "pbxuser", "pass": "regpass", "grant": "60"})
    server.port = port  # type: ignore[attr-defined]
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, redis_server: str, rtpengine_server: Any,
            webhook_server: WebhookServer, registrar: SippServer) -> Iterator[Cluster]:
    rdb = redis.Redis.from_url(redis_server, decode_responses=True)
    for key in rdb.scan_iter("lease:*"):
        rdb.delete(key)
    c = Cluster(tmp_path_factory, redis_server, rtpengine_server,
                config(webhook_server, registrar.port))  # type: ignore[attr-defined]
    c.start()
    c.start()
    yield c
    for pbx in c.engines:
        if pbx.alive():
            assert pbx.stop() == 0, pbx.tail()


def registers(registrar: SippServer) -> list[tuple[float, int, str]]:
    """(arrival time, Via port, Expires) of every REGISTER the registrar received."""
    out = []
    for block in registrar.messages.split("-----------------------------------------------")[1:]:
        m = re.match(r" (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\.(\d+)\n\w+ message received[^\n]*\n\n"
                     r"REGISTER ", block)
        if not m:
            continue
        at = time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")) + float("0." + m.group(2))
        via = re.search(r"Via: SIP/2.0/UDP [^:]+:(\d+)", block)
        expires = re.search(r"\nExpires: *(\d+)", block)
        out.append((at, int(via.group(1)) if via else 0, expires.group(1) if expires else ""))
    return out


def holder(c: Cluster) -> str | None:
    return redis.Redis.from_url(c.redis_url, decode_responses=True).get(LEASE_KEY)


# --------------------------------------------------------------------------- raw REGISTER


def _register(sock: socket.socket, port: int, user: str, call_id: str, cseq: int,
              authorization: str | None = None) -> tuple[int, str]:
    lport = sock.getsockname()[1]
    lines = [f"REGISTER sip:{DOMAIN} SIP/2.0",
             f"Via: SIP/2.0/UDP 127.0.0.1:{lport};branch=z9hG4bK{secrets.token_hex(8)};rport",
             f"From: <sip:{user}@{DOMAIN}>;tag=t1", f"To: <sip:{user}@{DOMAIN}>",
             f"Call-ID: {call_id}", f"CSeq: {cseq} REGISTER",
             f"Contact: <sip:{user}@127.0.0.1:{lport}>", "Max-Forwards: 70", "Expires: 60"]
    if authorization:
        lines.append(f"Authorization: {authorization}")
    sock.sendto(("\r\n".join([*lines, "Content-Length: 0", "", ""])).encode(),
                ("127.0.0.1", port))
    while True:
        text = sock.recv(65535).decode()
        status = int(text.split(" ", 2)[1])
        if status >= 200:
            return status, text


def _answer(challenge: str, user: str, password: str) -> str:
    params = dict(re.findall(r'(\w+)="?([^",]+)"?', challenge.split("Digest", 1)[1]))
    md5 = lambda s: hashlib.md5(s.encode()).hexdigest()  # noqa: E731
    cnonce, uri = secrets.token_hex(8), f"sip:{DOMAIN}"
    ha1 = md5(f"{user}:{params['realm']}:{password}")
    ha2 = md5(f"REGISTER:{uri}")
    response = md5(f"{ha1}:{params['nonce']}:00000001:{cnonce}:auth:{ha2}")
    value = (f'Digest username="{user}", realm="{params["realm"]}", nonce="{params["nonce"]}", '
             f'uri="{uri}", response="{response}", algorithm=MD5, qop=auth, nc=00000001, '
             f'cnonce="{cnonce}"')
    if "opaque" in params:
        value += f', opaque="{params["opaque"]}"'
    return value


# --------------------------------------------------------------------------- tests


def test_client_registered_through_a_is_called_through_b(cluster: Cluster,
                                                         webhooks: WebhookServer) -> None:
    a, b = cluster.engines[:2]
    webhooks.reply("/status", json={"ok": True})
    script(webhooks, [{"verb": "connect", "dest": {"type": "client", "address": "bob"}}])
    register(a, "alice", free_udp_port())
    port = free_udp_port()
    register(a, "bob", port)
    bob = start_sipp(scenario("call_uas"), port=port, media=True, timeout=60,
                     extra=["-rtp_echo", "-m", "1", "-d", "300"])
    try:
        result = run_sipp(scenario("call_uac"), b.address, media=True, timeout=45,
                          keys={"domain": DOMAIN, "caller": "alice"},
                          extra=["-s", "1001", "-au", "alice", "-ap", "secret", "-m", "1",
                                 "-d", "1000"])
        assert result.rc == 0, result.explain()
        done = bob.wait(20)
        assert done.rc == 0, done.explain()
        # the INVITE bob got came from B (its Via), not from A where bob registered
        invite = done.messages.split("INVITE sip:")[1]
        assert f"127.0.0.1:{b.port}" in invite.split("\n\n")[0]
    finally:
        bob.stop()
    assert_clean(b)


def test_challenge_issued_by_a_is_accepted_by_b(cluster: Cluster) -> None:
    a, b = cluster.engines[:2]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        call_id = f"{secrets.token_hex(8)}@e2e"
        status, challenge = _register(sock, a.port, "alice", call_id, 1)
        assert status == 401, challenge
        header = re.search(r"WWW-Authenticate: (.*)\r\n", challenge).group(1)
        status, reply = _register(sock, b.port, "alice", call_id, 2,
                                  _answer(header, "alice", "secret"))
        assert status == 200, reply
        # and the nonce count is shared too: the same nc again is a replay on A
        status, reply = _register(sock, a.port, "alice", call_id, 3,
                                  _answer(header, "alice", "secret"))
        assert status != 200, reply


def test_trunk_is_registered_by_exactly_one_instance(cluster: Cluster,
                                                     registrar: SippServer) -> None:
    wait_until(lambda: holder(cluster) is not None, 15, "a lease holder")
    owner = cluster.by_instance(holder(cluster))  # type: ignore[arg-type]
    time.sleep(3 * REFRESH)  # several lease renewals and retries by the other
    assert holder(cluster) == f"e2e-{owner.port}"
    ports = {via for _, via, _ in registers(registrar)}
    assert ports == {owner.port}, registers(registrar)
    other = next(p for p in cluster.engines if p is not owner)
    state = [line for line in other.log_lines() if line.get("msg") == "trunk registered"]
    assert not state, state


def test_killed_holder_is_replaced_within_two_refresh_intervals(
        cluster: Cluster, registrar: SippServer) -> None:
    owner = cluster.by_instance(holder(cluster))  # type: ignore[arg-type]
    other = next(p for p in cluster.engines if p is not owner and p.alive())
    killed_at = time.time()
    os.kill(owner.proc.pid, signal.SIGKILL)
    owner.proc.wait(5)
    wait_until(lambda: any(via == other.port for _, via, _ in registers(registrar)),
               4 * REFRESH, "the other instance's REGISTER")
    first = min(at for at, via, _ in registers(registrar) if via == other.port)
    assert first - killed_at <= 2 * REFRESH + 0.5, first - killed_at
    wait_until(lambda: holder(cluster) == f"e2e-{other.port}", 5, "the lease moved")
    other.wait_log('"trunk registered"', 5)
    # the dead instance sent no Expires: 0 (it could not), the new holder refreshes
    assert all(exp != "0" for _, _, exp in registers(registrar))


def test_sigterm_hands_the_trunk_over_and_spares_the_other_instances_calls(
        cluster: Cluster, registrar: SippServer, webhooks: WebhookServer) -> None:
    owner = cluster.by_instance(holder(cluster))  # type: ignore[arg-type]
    newcomer = cluster.start()  # stands by for the trunk
    wait_until(lambda: "lease:standby" in str(redis.Redis.from_url(
        cluster.redis_url, decode_responses=True).keys("lease:standby:*")), 10, "standing by")
    webhooks.reply("/status", json={"ok": True})
    script(webhooks, [{"verb": "connect", "dest": {"type": "client", "address": "bob"}}])
    port = free_udp_port()
    register(newcomer, "bob", port)
    bob = start_sipp(scenario("call_uas"), port=port, media=True, timeout=60,
                     extra=["-rtp_echo", "-m", "1", "-d", "6000"])
    try:
        caller = start_sipp(scenario("call_uac"), remote=newcomer.address, media=True,
                            timeout=45, keys={"domain": DOMAIN, "caller": "alice"},
                            extra=["-s", "1001", "-au", "alice", "-ap", "secret", "-m", "1",
                                   "-d", "1000"])
        wait_until(lambda: "SIP/2.0 200 OK" in bob.messages, 15, "the call answered")
        stopped_at = time.time()
        assert owner.stop() == 0, owner.tail()  # SIGTERM while the call runs on the other
        done = caller.wait(30)
        assert done.rc == 0, done.explain()
        assert bob.wait(20).rc == 0
    finally:
        bob.stop()
    # handed over: the leaving holder did not unregister, the newcomer registered
    assert all(exp != "0" for _, _, exp in registers(registrar)), registers(registrar)
    assert "trunk handed over" in owner.log_text()
    wait_until(lambda: holder(cluster) == f"e2e-{newcomer.port}", 2 * REFRESH + 1,
               "the newcomer holds the lease")
    assert any(via == newcomer.port and at > stopped_at for at, via, _ in registers(registrar))
    assert_clean(newcomer)


def test_last_instance_unregisters_on_sigterm(cluster: Cluster, registrar: SippServer) -> None:
    alive = [p for p in cluster.engines if p.alive()]
    assert len(alive) == 1, [p.port for p in alive]
    assert alive[0].stop() == 0, alive[0].tail()
    assert any(exp == "0" for _, _, exp in registers(registrar)), registers(registrar)
    assert holder(cluster) is None
