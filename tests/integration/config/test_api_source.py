"""DATA_SOURCE=api against a real local HTTP server (aiohttp)."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web

from engine.config.api_source import ApiSource, redact_url
from engine.config.model import ConfigSnapshot
from engine.errors import ConfigError
from engine.settings import Settings, load_settings
from tests.fixtures.procs import free_port

pytestmark = pytest.mark.integration

TOKEN = "t0ken-for-tests-only"

BODY: dict[str, Any] = {
    "count": 1,
    "domains": [{
        "id": 7, "domain": "sip.example", "createdAt": "2026-01-01T00:00:00Z", "users": [],
        "clients": [{"id": 3, "label": "desk", "username": "1*", "authType": "standard",
                     "password": "pw-1", "reghook": None, "codecs": ["PCMA"],
                     "dialplan": {"*": "http://hooks.example/call"}}],
        "trunks": [{"id": 9, "label": "itsp", "authType": "registration", "regUser": "u",
                    "regPass": "pw-2", "regHost": "reg.itsp.example",
                    "inbound": ["192.0.2.0/24"], "outbound": {"host": "sip.itsp.example"},
                    "codecs": ["PCMA"], "dialplan": {"*": "http://hooks.example/trunk"}}],
    }],
}


class ConfigServer:
    """Serves the configuration; ``mode`` switches the failure the next requests see."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.body: dict[str, Any] = copy.deepcopy(BODY)
        self.requests: list[dict[str, str]] = []
        self.release = asyncio.Event()
        self.fail_first = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(dict(request.headers))
        if self.fail_first > 0:
            self.fail_first -= 1
            return web.Response(status=503, text="starting")
        if self.mode == "slow":
            try:
                await asyncio.wait_for(self.release.wait(), 10)
            except TimeoutError:
                pass
        if self.mode == "error":
            return web.Response(status=500, text="boom")
        if self.mode == "no-domains":
            return web.json_response({"count": 0, "error": "database offline"})
        if self.mode == "invalid":
            body = copy.deepcopy(self.body)
            body["domains"][0]["trunks"][0]["inbound"] = ["192.0.2.0/64"]
            return web.json_response(body)
        return web.json_response(self.body)


@pytest.fixture
async def server() -> AsyncIterator[tuple[ConfigServer, str]]:
    srv = ConfigServer()
    app = web.Application()
    app.router.add_get("/api/v1/domains", srv.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield srv, f"http://127.0.0.1:{port}/api/v1/domains"
    finally:
        srv.release.set()
        await runner.cleanup()


def make_settings(url: str) -> Settings:
    return load_settings({"DATA_SOURCE": "api", "CONFIG_URL": url, "CONFIG_TOKEN": TOKEN,
                          "HTTP_TIMEOUT": "0.3", "CONFIG_TTL": "0.05",
                          "HTTP_USER_AGENT_HEADER": "dragonpbx-test/1.0"})


@pytest.fixture
async def source(server: tuple[ConfigServer, str]) -> AsyncIterator[ApiSource]:
    src = ApiSource(make_settings(server[1]), retry_delay=0.02)
    await src.start()
    try:
        yield src
    finally:
        await src.close()


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def assert_no_token(caplog: pytest.LogCaptureFixture) -> None:
    assert TOKEN not in caplog.text
    for record in caplog.records:
        assert TOKEN not in json.dumps(getattr(record, "fields", {}), default=str)


async def test_fetch_sends_auth_and_transforms(server: tuple[ConfigServer, str],
                                               source: ApiSource) -> None:
    srv, url = server
    headers = srv.requests[0]
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert headers["User-Agent"] == "dragonpbx-test/1.0"
    dom = source.get_domain("sip.example")
    assert dom is not None and dom.id == 7
    assert source.get_trunk_by_name("sip.example", "itsp").id == 9  # type: ignore[union-attr]
    assert source.get_trunk_by_ip("sip.example", "192.0.2.77").id == 9  # type: ignore[union-attr]
    assert source.get_trunk_by_id("sip.example", "9") is not None
    reg = source.get_reg_trunks("sip.example")[0].registration
    assert reg is not None and (reg.host, reg.username) == ("reg.itsp.example", "u")
    assert source.description == f"api:{url}"
    # polled again every CONFIG_TTL
    await eventually(lambda: len(srv.requests) >= 3)


@pytest.mark.parametrize(("mode", "error"), [
    ("slow", "no answer within 0.3 s"),
    ("error", "HTTP 500 Internal Server Error"),
    ("no-domains", "configuration refused"),
    ("invalid", "configuration refused"),
])
async def test_failed_refresh_keeps_the_last_good_config(
        server: tuple[ConfigServer, str], source: ApiSource, caplog: pytest.LogCaptureFixture,
        mode: str, error: str) -> None:
    srv, _ = server
    changes: asyncio.Queue[ConfigSnapshot] = asyncio.Queue()
    source.on_change(changes.put_nowait)
    good = source.snapshot
    srv.mode = mode
    seen = len(srv.requests)
    await eventually(lambda: source.last_error is not None and len(srv.requests) >= seen + 2)
    assert error in str(source.last_error)
    assert source.snapshot is good and changes.empty()
    assert source.get_domain("sip.example") is not None
    if mode == "no-domains":
        assert "missing required property 'domains'" in str(source.last_error.diagnostics[0])  # type: ignore[union-attr]
    if mode == "invalid":
        assert str(source.last_error.diagnostics[0]).startswith(  # type: ignore[union-attr]
            f"{redact_url(source.url)}:")
        assert "CONFIG_CIDR $.domains[0].trunks[0].inbound[0]" in str(
            source.last_error.diagnostics[0])  # type: ignore[union-attr]
    assert any(r.getMessage().startswith("config refused") for r in caplog.records)

    # the API recovers with new content: picked up, callback fired
    srv.body["domains"][0]["domain"] = "new.example"
    srv.mode = "ok"
    srv.release.set()
    new = await asyncio.wait_for(changes.get(), 5)
    assert new.list_domains() == ["new.example"] and source.snapshot is new
    assert source.last_error is None
    assert_no_token(caplog)


async def test_start_waits_for_the_first_good_config(server: tuple[ConfigServer, str],
                                                      caplog: pytest.LogCaptureFixture) -> None:
    srv, url = server
    srv.fail_first = 2
    src = ApiSource(make_settings(url), retry_delay=0.01, start_attempts=5)
    try:
        await src.start()
        assert src.get_domain("sip.example") is not None
        assert len([r for r in caplog.records
                    if r.getMessage() == "config not available yet"]) == 2
    finally:
        await src.close()


async def test_start_gives_up_with_config_error(server: tuple[ConfigServer, str],
                                                caplog: pytest.LogCaptureFixture) -> None:
    srv, url = server
    srv.mode = "no-domains"
    src = ApiSource(make_settings(url), retry_delay=0.01, start_attempts=3)
    with pytest.raises(ConfigError, match="after 3 attempts") as info:
        await src.start()
    assert info.value.diagnostics and info.value.diagnostics[0].code == "CONFIG_SCHEMA"
    assert not src.ready and len(srv.requests) == 3
    await src.close()
    assert_no_token(caplog)


async def test_unreachable_api_is_a_config_error(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    url = f"http://127.0.0.1:{free_port()}/config"
    src = ApiSource(make_settings(url), retry_delay=0.01, start_attempts=2)
    with pytest.raises(ConfigError, match="request failed: ConnectError"):
        await src.start()
    await src.close()


def test_redact_url() -> None:
    assert redact_url("https://user:pw@cfg.example:8443/api?token=x#f") == \
        "https://cfg.example:8443/api"
    assert redact_url("http://[::1]:1337/api/v1/domains") == "http://[::1]:1337/api/v1/domains"
