"""Several engines behind ONE drachtio-server on one Redis (issue 12 item 4,
SIP_BACKEND=drachtio): two real daemons connected to the same vendored drachtio-server.

drachtio hands new requests round-robin to the connections that routed their method
and keeps every in-dialog request with the connection that owns the dialog, so which
engine handled a request is read from each engine's own ``/metrics`` (the SIP
counters move only on the engine that answered) or from the call's Redis record.
Where the test needs two consecutive requests on different engines it repeats the
step until drachtio's round-robin gave it that (a few attempts at most).

A SIPp registrar plays the carrier for the trunk registration; both engines register
through drachtio's one address, so the holder is read from the lease and the logs."""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.test_calls import assert_clean, register, script
from tests.e2e.test_multi_instance import _answer, _register, config, registers
from tests.fixtures.daemon import Pbx, start_pbx
from tests.fixtures.drachtio import Drachtio
from tests.fixtures.procs import wait_until
from tests.fixtures.sipp import SippServer, free_udp_port, scenario, start_sipp
from tests.fixtures.webhooks import WebhookServer

pytestmark = [pytest.mark.e2e]

DOMAIN = "pbx.test"
REFRESH = 2.0  # REGTRUNKREFRESH: the lease lives this long; takeover within two of them
LEASE_KEY = f"lease:trunk:{DOMAIN}:3"
ATTEMPTS = 4


class Cluster:
    """Engines behind one drachtio-server, with the same configuration, Redis and
    NONCE_SECRET, each with its own INSTANCE_ID and HTTP port (for its metrics)."""

    def __init__(self, tmp: pytest.TempPathFactory, redis_url: str, rtpengine: Any,
                 cfg: dict[str, Any], drachtio: Drachtio):
        self.tmp, self.redis_url, self.rtpengine, self.cfg = tmp, redis_url, rtpengine, cfg
        self.drachtio = drachtio
        self.engines: list[Pbx] = []
        self.names: dict[int, str] = {}  # id(Pbx) → INSTANCE_ID

    def start(self) -> Pbx:
        name = f"e2e-drachtio-{len(self.engines) + 1}"
        pbx = start_pbx(self.tmp.mktemp("engine"), self.cfg, redis_url=self.redis_url,
                        rtpengine=self.rtpengine, backend="drachtio", drachtio=self.drachtio,
                        env={"INSTANCE_ID": name, "WEBPORT": "auto",
                             "REGTRUNKREFRESH": str(REFRESH), "TRUNK_REGISTER_EXPIRES": "60",
                             # a call keeps a draining engine alive for the drain tests
                             "SHUTDOWN_GRACE_SECS": "40"})
        self.engines.append(pbx)
        self.names[id(pbx)] = name
        return pbx

    def name(self, pbx: Pbx) -> str:
        return self.names[id(pbx)]

    def by_name(self, name: str | None) -> Pbx:
        return next(p for p in self.engines if self.name(p) == name)

    @property
    def alive(self) -> list[Pbx]:
        return [p for p in self.engines if p.alive()]

    @property
    def front(self) -> Pbx:
        """Any live engine: its ``address`` is drachtio's SIP address, where SIPp sends."""
        return self.alive[0]


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(pbx: Pbx) -> Samples:
    with urllib.request.urlopen(f"{pbx.api_url}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def responses(samples: Samples, method: str, status_class: str) -> float:
    key = ("dragonpbx_sip_responses_total",
           (("method", method), ("status_class", status_class)))
    return samples.get(key, 0.0)


def answered_by(engines: list[Pbx], method: str, status_class: str,
                step: Callable[[], Any]) -> tuple[Pbx, Any]:
    """Run ``step``; the one engine whose ``method`` responses of ``status_class`` moved."""
    before = {id(p): responses(scrape(p), method, status_class) for p in engines}
    result = step()
    moved: list[Pbx] = []

    def counted() -> bool:
        moved[:] = [p for p in engines
                    if responses(scrape(p), method, status_class) > before[id(p)]]
        return bool(moved)

    wait_until(counted, 5, f"a {status_class} to {method} counted")
    assert len(moved) == 1, [p.port for p in moved]
    return moved[0], result


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
            webhook_server: WebhookServer, registrar: SippServer,
            drachtio_factory: Callable[..., Drachtio]) -> Iterator[Cluster]:
    rdb = redis.Redis.from_url(redis_server, decode_responses=True)
    for key in rdb.scan_iter("lease:*"):
        rdb.delete(key)
    c = Cluster(tmp_path_factory, redis_server, rtpengine_server,
                config(webhook_server, registrar.port),  # type: ignore[attr-defined]
                drachtio_factory("drachtio-multi"))
    c.start()
    c.start()
    yield c
    failures = []
    for pbx in c.engines:
        if pbx.alive() and pbx.stop() != 0:
            failures.append(pbx.tail())
    c.drachtio.kill()
    assert not failures, failures


@pytest.fixture(autouse=True)
def status_receiver(webhooks: WebhookServer) -> None:
    webhooks.reply("/status", json={"ok": True})


def holder(c: Cluster) -> str | None:
    return redis.Redis.from_url(c.redis_url, decode_responses=True).get(LEASE_KEY)


def call_owner(c: Cluster) -> str | None:
    """The ``instance`` of the one live call record (None while there is none)."""
    rdb = redis.Redis.from_url(c.redis_url, decode_responses=True)
    keys = list(rdb.scan_iter(f"call:{DOMAIN}:*"))
    return rdb.hget(keys[0], "instance") if len(keys) == 1 else None


def place_call(c: Cluster, callee_scenario: str, caller_scenario: str, hold_ms: int,
               callee_port: int) -> tuple[SippServer, SippServer]:
    bob = start_sipp(scenario(callee_scenario), port=callee_port, media=True, timeout=60,
                     extra=["-rtp_echo", "-m", "1", "-d", "300"])
    caller = start_sipp(scenario(caller_scenario), remote=c.front.address, media=True,
                        timeout=45, keys={"domain": DOMAIN, "caller": "alice"},
                        extra=["-s", "1001", "-au", "alice", "-ap", "secret", "-m", "1",
                               "-d", str(hold_ms)])
    return bob, caller


def options(c: Cluster) -> tuple[int, str]:
    """One OPTIONS sent to drachtio: (status, response text)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        lport = sock.getsockname()[1]
        text = (f"OPTIONS sip:{DOMAIN} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{lport};branch=z9hG4bK{secrets.token_hex(8)};"
                "rport\r\n"
                f"From: <sip:probe@{DOMAIN}>;tag={secrets.token_hex(4)}\r\n"
                f"To: <sip:{DOMAIN}>\r\nCall-ID: {secrets.token_hex(8)}@probe\r\n"
                "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
        sock.sendto(text.encode(), ("127.0.0.1", c.drachtio.sip_port))
        reply = sock.recv(65535).decode()
        return int(reply.split(" ", 2)[1]), reply


def lone_register(c: Cluster) -> None:
    """One REGISTER without credentials (401): drachtio keeps one round-robin position
    per method, so this gives the next REGISTER to the other engine."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        status, text = _register(sock, c.drachtio.sip_port, "alice",
                                 f"{secrets.token_hex(8)}@lone", 1)
        assert status == 401, text


# --------------------------------------------------------------------------- tests


def test_both_engines_route_and_drachtio_distributes_new_requests(cluster: Cluster) -> None:
    """Each engine is connected and routed; drachtio shares new REGISTERs out among
    them (every one is answered, and both engines answered some)."""
    a, b = cluster.engines[:2]
    before = {id(p): responses(scrape(p), "REGISTER", "4xx") for p in (a, b)}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        for n in range(6):
            status, text = _register(sock, cluster.drachtio.sip_port, "alice",
                                     f"{secrets.token_hex(8)}@spread", n + 1)
            assert status == 401, text
    after = {id(p): responses(scrape(p), "REGISTER", "4xx") for p in (a, b)}
    counts = [after[id(p)] - before[id(p)] for p in (a, b)]
    assert sum(counts) == 6 and min(counts) >= 1, counts


def test_challenge_issued_by_a_is_accepted_by_b(cluster: Cluster) -> None:
    a, b = cluster.engines[:2]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        for _ in range(ATTEMPTS):
            call_id = f"{secrets.token_hex(8)}@e2e"
            challenger, (status, challenge) = answered_by(
                [a, b], "REGISTER", "4xx",
                lambda cid=call_id: _register(sock, cluster.drachtio.sip_port, "alice", cid, 1))
            assert status == 401, challenge
            header = re.search(r"WWW-Authenticate: (.*)\r\n", challenge).group(1)
            accepter, (status, reply) = answered_by(
                [a, b], "REGISTER", "2xx",
                lambda cid=call_id, h=header: _register(sock, cluster.drachtio.sip_port,
                                                        "alice", cid, 2,
                                                        _answer(h, "alice", "secret")))
            assert status == 200, reply
            if accepter is not challenger:
                break
        else:
            pytest.fail(f"drachtio never gave the answer to the other engine in {ATTEMPTS}")


def test_client_registered_through_one_is_called_through_the_other(
        cluster: Cluster, webhooks: WebhookServer) -> None:
    """bob registers through one engine, the call to him is handled by the other; in
    the call, the callee's BYE (in-dialog) reaches the engine that owns the dialog."""
    script(webhooks, [{"verb": "connect", "dest": {"type": "client", "address": "bob"}}])
    register(cluster.front, "alice", free_udp_port())
    for attempt in range(ATTEMPTS):
        if attempt % 2:  # a lone REGISTER (challenged) moves drachtio's round-robin on
            lone_register(cluster)
        port = free_udp_port()
        registrar_engine, _ = answered_by(cluster.engines[:2], "REGISTER", "2xx",
                                          lambda p=port: register(cluster.front, "bob", p))
        befores = {id(p): scrape(p) for p in cluster.engines[:2]}
        bob, caller = place_call(cluster, "call_uas_bye", "call_uac_wait_bye", 0, port)
        try:
            wait_until(lambda: call_owner(cluster) is not None, 15, "the call recorded")
            owner = cluster.by_name(call_owner(cluster))
            assert caller.wait(30).rc == 0, caller.messages[-3000:]
            assert bob.wait(20).rc == 0, bob.messages[-3000:]
        finally:
            bob.stop()
            caller.stop()
        other = next(p for p in cluster.engines[:2] if p is not owner)
        # the callee's BYE went to the owner of the dialog, never to the other engine
        wait_until(lambda o=owner, b=befores: _moved(o, b, "BYE", "2xx") == 1, 5,
                   "the owner answered the callee's BYE")
        assert _moved(other, befores, "BYE", "2xx") == 0
        assert _moved(other, befores, "BYE", "4xx") == 0
        assert_clean(owner)
        if owner is not registrar_engine:
            break
    else:
        pytest.fail(f"the call was never handled by the other engine in {ATTEMPTS} attempts")


def _moved(pbx: Pbx, befores: dict[int, Samples], method: str, status_class: str) -> float:
    return responses(scrape(pbx), method, status_class) - \
        responses(befores[id(pbx)], method, status_class)


def test_trunk_is_registered_by_exactly_one_instance(cluster: Cluster,
                                                     registrar: SippServer) -> None:
    wait_until(lambda: holder(cluster) is not None, 15, "a lease holder")
    owner = cluster.by_name(holder(cluster))
    owner.wait_log('"trunk registered"', 10)
    seen = len(registers(registrar))
    time.sleep(3 * REFRESH)  # several lease renewals and retries by the other
    assert holder(cluster) == cluster.name(owner)
    other = next(p for p in cluster.engines if p is not owner)
    state = [line for line in other.log_lines() if line.get("msg") == "trunk registered"]
    assert not state, state
    # one holder refreshing: no burst of REGISTERs from two engines
    assert len(registers(registrar)) - seen <= 3, registers(registrar)


def test_killed_holder_is_replaced_within_two_refresh_intervals(
        cluster: Cluster, registrar: SippServer) -> None:
    owner = cluster.by_name(holder(cluster))
    other = next(p for p in cluster.engines if p is not owner and p.alive())
    mark = len(other.log_text())
    killed_at = time.time()
    os.kill(owner.proc.pid, signal.SIGKILL)
    owner.proc.wait(5)
    other.wait_log('"trunk registered"', 4 * REFRESH, start=mark)
    took = time.time() - killed_at
    assert took <= 2 * REFRESH + 1.0, took
    wait_until(lambda: holder(cluster) == cluster.name(other), 5, "the lease moved")
    assert all(exp != "0" for _, _, exp in registers(registrar))  # nobody unregistered


def test_sigterm_of_one_engine_spares_the_other_engines_call(
        cluster: Cluster, registrar: SippServer, webhooks: WebhookServer) -> None:
    """A call runs on one engine; the other is stopped with SIGTERM (it holds the trunk
    and hands it over): the call goes on and ends normally, and new requests are
    answered by the engine that stays."""
    while len(cluster.alive) < 2:  # the test before killed one
        cluster.start()
    script(webhooks, [{"verb": "connect", "dest": {"type": "client", "address": "bob"}}])
    register(cluster.front, "alice", free_udp_port())
    port = free_udp_port()
    register(cluster.front, "bob", port)
    bob, caller = place_call(cluster, "call_uas", "call_uac", 6000, port)
    try:
        wait_until(lambda: "SIP/2.0 200 OK" in bob.messages, 15, "the call answered")
        owner = cluster.by_name(call_owner(cluster))
        leaving = next(p for p in cluster.alive if p is not owner)
        assert leaving.stop() == 0, leaving.tail()  # SIGTERM while the call runs
        done = caller.wait(30)
        assert done.rc == 0, done.explain()
        assert bob.wait(20).rc == 0
    finally:
        bob.stop()
        caller.stop()
    assert_clean(owner)
    # the engine that stays answers new requests (drachtio no longer offers them to the
    # one that left)
    register(owner, "alice", free_udp_port())
    wait_until(lambda: holder(cluster) == cluster.name(owner), 2 * REFRESH + 2,
               "the remaining engine holds the trunk")


def test_a_draining_engine_hands_new_requests_to_the_other_until_it_is_the_last(
        cluster: Cluster, webhooks: WebhookServer) -> None:
    """A rolling restart: the engine that drains (a call keeps it alive) withdraws its
    routes while the other one is there, so every new request goes to the other one
    (never a 503); when the other one goes too, it routes again and answers 503 with
    Retry-After itself; its call ends normally and it exits."""
    while len(cluster.alive) < 2:  # earlier tests stopped some
        cluster.start()
    script(webhooks, [{"verb": "connect", "dest": {"type": "client", "address": "bob"}}])
    register(cluster.front, "alice", free_udp_port())
    port = free_udp_port()
    register(cluster.front, "bob", port)
    bob, caller = place_call(cluster, "call_uas", "call_uac", 14000, port)
    try:
        wait_until(lambda: "SIP/2.0 200 OK" in bob.messages, 15, "the call answered")
        draining = cluster.by_name(call_owner(cluster))
        other = next(p for p in cluster.alive if p is not draining)
        mark = len(draining.log_text())
        draining.signal(signal.SIGTERM)
        draining.wait_log("drachtio routes withdrawn", 5, start=mark)
        withdrawn = [line for line in draining.log_lines()
                     if line.get("msg", "").startswith("drachtio routes withdrawn")]
        assert withdrawn[-1].get("others") == 1, withdrawn
        before = {id(p): scrape(p) for p in (draining, other)}
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.settimeout(5)
            for n in range(5):  # round-robin would give the draining engine every other one
                status, text = _register(sock, cluster.drachtio.sip_port, "alice",
                                         f"{secrets.token_hex(8)}@drain", n + 1)
                assert status == 401, text
        for _ in range(5):
            status, text = options(cluster)
            assert status == 200, text
        wait_until(lambda: _moved(other, before, "REGISTER", "4xx") == 5
                   and _moved(other, before, "OPTIONS", "2xx") == 5, 5,
                   "the other engine answered all of them")
        assert sum(_moved(draining, before, "REGISTER", c) for c in ("2xx", "4xx", "5xx")) == 0
        assert sum(_moved(draining, before, "OPTIONS", c) for c in ("2xx", "5xx")) == 0
        assert "SIP/2.0 200 OK" in bob.messages and caller.proc.poll() is None  # still up

        # the other engine goes too: the draining one is the last and routes again
        mark = len(draining.log_text())
        assert other.stop() == 0, other.tail()
        draining.wait_log("drachtio routes restored", 5, start=mark)
        status, text = options(cluster)
        assert status == 503 and "Retry-After:" in text and "X-Reason:" in text, text

        done = caller.wait(40)
        assert done.rc == 0, done.explain()
        assert bob.wait(20).rc == 0
    finally:
        bob.stop()
        caller.stop()
    assert draining.proc.wait(20) == 0, draining.tail()
    assert '"msg": "stopped"' in draining.log_text()
    assert_clean(draining)
