"""Health as load balancers and callers see it: the real daemon with its own real Redis,
which the tests hang (SIGSTOP), resume (SIGCONT), kill and restart.

OPTIONS to the PBX answers 200 only while it can serve: 503 with ``Retry-After`` and
an ``X-Reason`` naming the cause while Redis is unavailable or while draining. REGISTER
and INVITE get a prompt 503 with ``Retry-After`` (not 500, not after a long timeout)
while Redis is down, service returns by itself, and each outage is one "dependency
down" and one "dependency up" line in the log.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_calls import DOMAIN, callee, config, register
from tests.fixtures.daemon import Pbx, start_pbx
from tests.fixtures.procs import (
    Service,
    free_port,
    require_binary,
    send_signal,
    start_service,
    wait_until,
)
from tests.fixtures.sipp import SippServer, free_udp_port, run_sipp, scenario, scenario_with
from tests.fixtures.webhooks import WebhookServer

pytestmark = [pytest.mark.e2e]

# The daemon pings Redis every HEALTH_PING_INTERVAL with HEALTH_PING_TIMEOUT: a hung
# Redis must be noticed within a few seconds, and a request must then not wait at all.
NOTICE_WITHIN = 6.0
PROMPT = 1.5  # seconds for a whole SIPp REGISTER exchange (401 + 503) while Redis is down


# --------------------------------------------------------------------------- a Redis of our own


def _redis_ping(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
        s.sendall(b"PING\r\n")
        return s.recv(16).startswith(b"+PONG")


@dataclass
class OwnRedis:
    """A redis-server only this module uses, so it can be paused and killed."""

    workdir: Path
    port: int = field(default_factory=free_port)
    service: Service | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = require_binary("redis-server")
        self.service = start_service(
            "redis-health",
            [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir), "--daemonize", "no"],
            self.workdir)
        wait_until(lambda: _redis_ping(self.port), 15, "redis-server")

    def signal(self, sig: int) -> None:
        assert self.service is not None
        send_signal(self.service.proc.pid, sig)

    def kill(self) -> None:
        assert self.service is not None
        self.service.proc.kill()
        self.service.proc.wait(10)

    def stop(self) -> None:
        if self.service is not None:
            self.resume_quietly()
            self.service.stop()

    def resume_quietly(self) -> None:
        if self.service is not None and self.service.alive():
            os.kill(self.service.proc.pid, signal.SIGCONT)


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path_factory.mktemp("redis-health"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def pbx(tmp_path_factory: pytest.TempPathFactory, own_redis: OwnRedis, rtpengine_server: Any,
        webhook_server: WebhookServer) -> Iterator[Pbx]:
    pbx = start_pbx(tmp_path_factory.mktemp("pbx-health"), config(webhook_server),
                    redis_url=own_redis.url, rtpengine=rtpengine_server)
    try:
        yield pbx
    finally:
        own_redis.resume_quietly()
        assert pbx.stop() == 0, pbx.tail()


@pytest.fixture
def healthy(pbx: Pbx, own_redis: OwnRedis) -> Pbx:
    """The daemon with its Redis running, answering OPTIONS 200 (restored after a test)."""
    if own_redis.service is None or not own_redis.service.alive():
        own_redis.start()
    own_redis.resume_quietly()
    wait_until(lambda: options(pbx).status == 200, 15, "OPTIONS 200")
    return pbx


# --------------------------------------------------------------------------- SIP helpers


@dataclass
class Reply:
    status: int
    headers: dict[str, str]


def options(pbx: Pbx, timeout: float = 2.0) -> Reply:
    """One OPTIONS to the PBX over UDP (as a load balancer probes); its final response."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(timeout)
        host, port = s.getsockname()
        tag = f"{time.monotonic_ns()}"
        s.sendto((
            f"OPTIONS sip:{pbx.address} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK-health-{tag}\r\n"
            f"From: <sip:probe@{host}:{port}>;tag={tag}\r\n"
            f"To: <sip:{pbx.address}>\r\n"
            f"Call-ID: health-{tag}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
            "Content-Length: 0\r\n\r\n").encode(), ("127.0.0.1", pbx.port))
        while True:
            data = s.recv(65535).decode(errors="replace")
            head = data.split("\r\n\r\n", 1)[0].split("\r\n")
            status = int(head[0].split()[1])
            if status >= 200:
                headers = {}
                for line in head[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                return Reply(status, headers)


def wait_options(pbx: Pbx, status: int, within: float) -> Reply:
    end = time.monotonic() + within
    while True:
        reply = options(pbx)
        if reply.status == status:
            return reply
        if time.monotonic() > end:
            raise AssertionError(f"OPTIONS still {reply.status} after {within}s "
                                 f"(wanted {status}):\n{pbx.tail(20)}")
        time.sleep(0.1)


def register_expect(pbx: Pbx, code: int) -> tuple[Any, float]:
    """alice registers with the right password; the final status must be ``code``."""
    started = time.monotonic()
    result = run_sipp(scenario_with("reg_auth", code=code), pbx.address,
                      keys={"domain": DOMAIN, "expires": "300"},
                      extra=["-s", "alice", "-au", "alice", "-ap", "secret", "-m", "1"],
                      timeout=15)
    return result, time.monotonic() - started


def invite_expect(pbx: Pbx, code: int) -> Any:
    """alice calls 1001 with the right password; the call must end with ``code``."""
    return run_sipp(scenario_with("call_uac_expect", code=code), pbx.address, media=True,
                    keys={"domain": DOMAIN, "caller": "alice"},
                    extra=["-s", "1001", "-au", "alice", "-ap", "secret", "-m", "1"],
                    timeout=15)


def retry_after(messages: str, status: int) -> list[str]:
    """The Retry-After values of every ``status`` response in a SIPp message trace."""
    found = []
    for block in re.split(rf"(?=SIP/2\.0 {status} )", messages)[1:]:
        head = block.split("\n\n", 1)[0]
        found += re.findall(r"(?im)^Retry-After:\s*(\d+)", head)
    return found


def dependency_lines(pbx: Pbx, mark: int, msg: str, name: str = "redis"
                     ) -> list[dict[str, Any]]:
    return [line for line in pbx.log_lines()[mark:]
            if line.get("msg") == msg and line.get("dependency") == name]


def assert_unavailable_then_recovers(pbx: Pbx, mark: int, restore: Any) -> None:
    """While Redis is down: OPTIONS, REGISTER and INVITE get 503 promptly; then
    ``restore()`` and service comes back by itself."""
    reply = wait_options(pbx, 503, NOTICE_WITHIN)
    assert int(reply.headers["retry-after"]) > 0
    assert "redis" in reply.headers["x-reason"]
    result, took = register_expect(pbx, 503)
    assert result.rc == 0, result.explain()
    assert retry_after(result.messages, 503), result.messages
    assert took < PROMPT, f"REGISTER took {took:.2f}s while Redis is known down"
    call = invite_expect(pbx, 503)
    assert call.rc == 0, call.explain()
    assert retry_after(call.messages, 503), call.messages
    assert pbx.alive()

    restore()
    wait_options(pbx, 200, NOTICE_WITHIN)
    result, _ = register_expect(pbx, 200)
    assert result.rc == 0, result.explain()
    # one line when Redis went away and one when it came back, not one per request
    downs = dependency_lines(pbx, mark, "dependency down")
    ups = dependency_lines(pbx, mark, "dependency up")
    assert len(downs) == 1, downs
    assert len(ups) == 1, ups
    assert downs[0]["level"] == "warning" and downs[0].get("reason")


# --------------------------------------------------------------------------- tests


def test_options_200_when_healthy(healthy: Pbx) -> None:
    reply = options(healthy)
    assert reply.status == 200
    assert "x-reason" not in reply.headers and "retry-after" not in reply.headers


def test_hung_redis_is_noticed_refused_promptly_and_recovers(
        healthy: Pbx, own_redis: OwnRedis) -> None:
    mark = len(healthy.log_lines())
    own_redis.signal(signal.SIGSTOP)
    try:
        assert_unavailable_then_recovers(healthy, mark,
                                         lambda: own_redis.signal(signal.SIGCONT))
    finally:
        own_redis.resume_quietly()


def test_killed_redis_is_noticed_refused_promptly_and_recovers(
        healthy: Pbx, own_redis: OwnRedis) -> None:
    mark = len(healthy.log_lines())
    own_redis.kill()
    assert_unavailable_then_recovers(healthy, mark, own_redis.start)


def answered(webhooks: WebhookServer) -> int:
    """How many ``connect:answered`` StatusHook events the webhook server has seen."""
    return sum(1 for r in webhooks.requests("/status")
               if str(r.json.get("event", "")).strip() == "connect:answered")


def test_options_503_while_draining(tmp_path_factory: pytest.TempPathFactory,
                                    own_redis: OwnRedis, rtpengine_server: Any,
                                    webhooks: WebhookServer) -> None:
    if own_redis.service is None or not own_redis.service.alive():
        own_redis.start()
    own_redis.resume_quietly()
    pbx = start_pbx(tmp_path_factory.mktemp("pbx-health-drain"), config(webhooks),
                    redis_url=own_redis.url, rtpengine=rtpengine_server,
                    env={"SHUTDOWN_GRACE_SECS": "20"})
    servers: list[SippServer] = []
    try:
        assert options(pbx).status == 200
        register(pbx, "alice", free_udp_port())
        webhooks.reply("/call", json=[{"verb": "connect",
                                       "dest": {"type": "client", "address": "bob"}}])
        webhooks.reply("/status", json={})
        callee(servers, pbx, "bob", hold_ms=200)
        results: dict[str, Any] = {}

        def live_call() -> None:
            results["live"] = run_sipp(
                scenario("call_uac"), pbx.address, media=True, timeout=40,
                keys={"domain": DOMAIN, "caller": "alice"},
                extra=["-s", "1001", "-au", "alice", "-ap", "secret", "-m", "1",
                       "-d", "5000"])

        answered_before = answered(webhooks)
        thread = threading.Thread(target=live_call)
        thread.start()
        # the call is up (a fixed sleep raced a slow start of SIPp on a loaded machine:
        # the daemon then drained no call and had exited before the OPTIONS)
        wait_until(lambda: answered(webhooks) > answered_before, 20, "the call answered")
        pbx.signal(signal.SIGTERM)
        pbx.wait_log('"msg": "draining"')
        reply = options(pbx)
        assert reply.status == 503
        assert reply.headers["x-reason"] == "draining"
        assert int(reply.headers["retry-after"]) > 0
        thread.join(60)
        assert results["live"].rc == 0, results["live"].explain()
        assert pbx.proc.wait(20) == 0
    finally:
        for s in servers:
            s.stop()
        pbx.stop()


def test_every_rtpengine_down_takes_the_node_out_unless_configured_not_to(
        tmp_path_factory: pytest.TempPathFactory, own_redis: OwnRedis, rtpengine_spare: Any,
        webhooks: WebhookServer) -> None:
    """A node that cannot bridge calls answers OPTIONS 503 (HEALTH_REQUIRE_RTPENGINE, the
    default) but still registers; with HEALTH_REQUIRE_RTPENGINE=false it stays in."""
    if own_redis.service is None or not own_redis.service.alive():
        own_redis.start()
    own_redis.resume_quietly()
    strict = start_pbx(tmp_path_factory.mktemp("pbx-health-rtp"), config(webhooks),
                       redis_url=own_redis.url, rtpengine=rtpengine_spare)
    lenient = start_pbx(tmp_path_factory.mktemp("pbx-health-rtp-lenient"), config(webhooks),
                        redis_url=own_redis.url, rtpengine=rtpengine_spare,
                        env={"HEALTH_REQUIRE_RTPENGINE": "false"})
    try:
        assert options(strict).status == 200 and options(lenient).status == 200
        rtpengine_spare.kill()
        # the client pings every 5 s and allows two lost datagrams
        reply = wait_options(strict, 503, 15)
        assert reply.headers["x-reason"] == "rtpengine unavailable"
        assert int(reply.headers["retry-after"]) > 0
        result, _ = register_expect(strict, 200)  # registration needs no media
        assert result.rc == 0, result.explain()
        lenient.wait_log('"dependency": "rtpengine"', timeout=15)
        assert options(lenient).status == 200

        rtpengine_spare.start()
        wait_options(strict, 200, 15)
        for pbx in (strict, lenient):
            assert len(dependency_lines(pbx, 0, "dependency down", "rtpengine")) == 1
        assert len(dependency_lines(strict, 0, "dependency up", "rtpengine")) == 1
    finally:
        strict.stop()
        lenient.stop()
