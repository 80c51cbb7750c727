"""Operating the daemon through its HTTP side: refusing an open API on a network
address, systemd readiness (sd_notify over a real unix datagram socket), and
``/ready`` telling the truth while Redis hangs and while the daemon drains.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.api import ApiCheck
from tests.fixtures.daemon import start_pbx
from tests.fixtures.procs import free_port, require_binary, send_signal, start_service, wait_until
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

DOMAIN = "ops.test"


def config(hooks: WebhookServer) -> dict[str, Any]:
    plan = {"1???": {"callHook": hooks.url("/opscall"), "statusHook": hooks.url("/opsstatus")}}
    clients = [{"username": u, "password": "secret", "codecs": ["PCMA", "PCMU"],
                "dialplan": plan} for u in ("alice", "bob")]
    return {"domains": {DOMAIN: {"domain_id": 1, "clients": clients, "trunks": []}}}


def test_open_api_on_a_network_address_refuses_to_start(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "API_TOKEN"}
    env.update({"WEBHOST": "0.0.0.0", "WEBPORT": str(free_port()), "DATA_SOURCE": "json",
                "CONFIG_FILE": str(tmp_path / "none.json"), "LOG_FORMAT": "text"})
    result = subprocess.run([sys.executable, "-m", "engine", "run"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    out = (result.stdout + result.stderr).strip().splitlines()
    lines = [line for line in out if "API_TOKEN" in line]
    assert len(lines) == 1 and "WEBHOST=0.0.0.0" in lines[0], out


def test_sd_notify_ready_and_stopping(tmp_path_factory: pytest.TempPathFactory,
                                      redis_server: str, rtpengine_server: Any,
                                      webhook_server: WebhookServer) -> None:
    folder = Path(tempfile.mkdtemp(prefix="sdn-", dir="/tmp"))  # short: sun_path ≤ 107
    address = str(folder / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(20)
    try:
        pbx = start_pbx(tmp_path_factory.mktemp("pbx-sdnotify"), config(webhook_server),
                        redis_url=redis_server, rtpengine=rtpengine_server,
                        env={"NOTIFY_SOCKET": address, "WEBPORT": "auto"})
        try:
            ready = sock.recv(4096).decode()
            assert "READY=1" in ready.splitlines(), ready
            pbx.signal(signal.SIGHUP)
            reloading = sock.recv(4096).decode().splitlines()
            assert "RELOADING=1" in reloading and any(
                f.startswith("MONOTONIC_USEC=") for f in reloading), reloading
            assert "READY=1" in sock.recv(4096).decode().splitlines()
        finally:
            assert pbx.stop() == 0, pbx.tail()
        assert "STOPPING=1" in sock.recv(4096).decode().splitlines()
    finally:
        sock.close()
        os.unlink(address)
        folder.rmdir()


# --------------------------------------------------------------------------- /ready


class OwnRedis:
    """A redis-server only this module uses, so it can be paused."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        binary = require_binary("redis-server")
        self.service = start_service(
            "redis-api-ops", [binary, "--bind", "127.0.0.1", "--port", str(self.port),
                              "--save", "", "--appendonly", "no", "--dir", str(workdir)],
            workdir)
        wait_until(self._ping, 15, "redis-server")

    def _ping(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def signal(self, sig: int) -> None:
        send_signal(self.service.proc.pid, sig)

    def stop(self) -> None:
        if self.service.alive():
            self.signal(signal.SIGCONT)
        self.service.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    try:
        yield server
    finally:
        server.stop()


def _ready(api: ApiCheck) -> httpx.Response:
    return api.call("GET", "/ready", expect=None, token=None)


def test_ready_is_503_naming_redis_while_it_hangs(tmp_path_factory: pytest.TempPathFactory,
                                                  own_redis: OwnRedis, rtpengine_server: Any,
                                                  webhook_server: WebhookServer) -> None:
    pbx = start_pbx(tmp_path_factory.mktemp("pbx-ready"), config(webhook_server),
                    redis_url=own_redis.url, rtpengine=rtpengine_server,
                    env={"WEBPORT": "auto", "API_TOKEN": "t"})
    api = ApiCheck(pbx.api_url, "t")
    try:
        assert _ready(api).status_code == 200
        own_redis.signal(signal.SIGSTOP)
        try:
            wait_until(lambda: _ready(api).status_code == 503, 8, "/ready 503")
            body = _ready(api).json()
            assert body["ready"] is False and "redis unavailable" in body["problems"]
            assert body["dependencies"]["redis"]["up"] is False
            assert body["dependencies"]["redis"]["reason"]
            assert api.call("GET", "/health", token=None).status_code == 200  # alive
        finally:
            own_redis.signal(signal.SIGCONT)
        wait_until(lambda: _ready(api).status_code == 200, 15, "/ready 200 again")
    finally:
        api.close()
        assert pbx.stop() == 0, pbx.tail()


def test_ready_is_503_while_draining(tmp_path_factory: pytest.TempPathFactory,
                                     redis_server: str, rtpengine_server: Any,
                                     webhook_server: WebhookServer) -> None:
    pbx = start_pbx(tmp_path_factory.mktemp("pbx-drain"), config(webhook_server),
                    redis_url=redis_server, rtpengine=rtpengine_server,
                    env={"WEBPORT": "auto", "SHUTDOWN_GRACE_SECS": "20"})
    api = ApiCheck(pbx.api_url, None)  # no token: loopback only
    servers: list[SippServer] = []
    try:
        port = free_udp_port()
        for user, at in (("alice", free_udp_port()), ("bob", port)):
            reg = run_sipp(scenario_with("reg_auth", code=200), pbx.address, port=at,
                           keys={"domain": DOMAIN, "expires": "300"},
                           extra=["-s", user, "-au", user, "-ap", "secret", "-m", "1"])
            assert reg.rc == 0, reg.explain()
        servers.append(start_sipp(scenario("call_uas"), port=port, media=True, timeout=90,
                                  extra=["-rtp_echo", "-m", "1", "-d", "200"]))
        webhook_server.reply("/opscall", json=[{"verb": "connect",
                                                "dest": {"type": "client", "address": "bob"}}])
        webhook_server.reply("/opsstatus", json={"ok": True})
        servers.append(start_sipp(scenario("call_uac_wait_bye"), remote=pbx.address,
                                  media=True, timeout=90,
                                  keys={"domain": DOMAIN, "caller": "alice"},
                                  extra=["-s", "1001", "-au", "alice", "-ap", "secret",
                                         "-m", "1"]))
        live = "/api/v1/calls"
        wait_until(lambda: api.call("GET", live).json()["items"], 20, "a live call")
        assert _ready(api).status_code == 200
        pbx.signal(signal.SIGTERM)
        wait_until(lambda: _ready(api).status_code == 503, 5, "/ready 503 while draining")
        body = _ready(api).json()
        assert body["problems"][0] == "draining"
        # the call is still live and shown; ending it lets the drain finish
        call_id = api.call("GET", live).json()["items"][0]["call_id"]
        api.call("DELETE", f"{live}/{call_id}", expect=202, template=live + "/{call_id}")
        pbx.proc.wait(30)
        assert pbx.proc.returncode == 0, pbx.tail()
    finally:
        api.close()
        for s in servers:
            s.stop()
        if pbx.alive():
            pbx.stop()
        webhook_server.clear()
