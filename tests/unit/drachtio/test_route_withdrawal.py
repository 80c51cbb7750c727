"""A draining engine behind a shared drachtio-server hands new requests to the others
(issue 12, H6): the client's withdraw/restore of its routes against the fake server, and
the drain decisions of ``engine.drachtio.peers`` with an in-memory registry. The real
server's answers (503 once nothing is routed) are in tests/integration/drachtio/."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from engine.drachtio.client import DrachtioClient
from engine.drachtio.peers import SharedServerPresence, engines_key, server_identity
from engine.drachtio.wire import AuthenticateFrame, RouteFrame, ServerInfo
from engine.errors import StoreError
from tests.unit.drachtio.fakes import FakeConnection, FakeDrachtio
from tests.unit.drachtio.test_client_fake_server import FAST, eventually


@pytest.fixture
async def fake() -> AsyncIterator[FakeDrachtio]:
    server = await FakeDrachtio().start()
    yield server
    await server.close()


@pytest.fixture
async def client(fake: FakeDrachtio) -> AsyncIterator[DrachtioClient]:
    c = DrachtioClient("127.0.0.1", fake.port, fake.secret, verbs=("invite", "register"),
                       on_sip=lambda frame: None, backoff=FAST, request_timeout=2.0)
    c.start()
    assert await c.wait_ready(5)
    yield c
    await c.stop()


def routes(conn: FakeConnection) -> list[tuple[str, bool]]:
    return [(f.verb, f.remove) for f in conn.received if isinstance(f, RouteFrame)]


async def test_withdraw_sends_one_remove_route_and_restore_routes_every_verb_again(
        fake: FakeDrachtio, client: DrachtioClient) -> None:
    conn = await fake.connection(0)
    await eventually(lambda: len(routes(conn)) == 2)
    await client.withdraw_routes()
    # one remove_route drops every route of the connection (spec §3.4)
    assert routes(conn)[2:] == [("invite", True)]
    assert client.withdrawn and client.ready  # still connected: our dialogs go on
    await client.restore_routes()
    assert sorted(routes(conn)[3:]) == [("invite", False), ("register", False)]
    assert not client.withdrawn


async def test_a_reconnection_during_a_withdrawal_does_not_route_again(
        fake: FakeDrachtio, client: DrachtioClient) -> None:
    first = await fake.connection(0)
    await client.withdraw_routes()
    first.close()
    second = await fake.connection(1)
    await eventually(lambda: client.ready and client.epoch == 2)
    assert isinstance(second.received[0], AuthenticateFrame)
    assert routes(second) == []  # authenticated, but asks for no new request
    await client.add_verb("options")  # a handler added meanwhile: not routed either
    assert routes(second) == []
    await client.restore_routes()
    assert sorted(routes(second)) == [("invite", False), ("options", False),
                                      ("register", False)]
    second.close()
    third = await fake.connection(2)
    await eventually(lambda: len(routes(third)) == 3)  # restored: every connection routes


# --------------------------------------------------------------------------- presence

SERVER = ServerInfo((("udp", "203.0.113.5", 5060),), "v0.9.10",
                    (("udp", "10.0.0.5", 5060), ("tcp", "10.0.0.5", 5060)))


class MemoryRegistry:
    """PeerRegistry's operations on a dict (the Lua scripts are tested on real Redis)."""

    def __init__(self, instance_id: str, present: dict[str, set[str]]):
        self.instance_id = instance_id
        self.present = present
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise StoreError("redis: connection refused")

    async def announce(self, server: str) -> None:
        self._check()
        self.present.setdefault(server, set()).add(self.instance_id)

    async def leave(self, server: str) -> None:
        self._check()
        self.present.get(server, set()).discard(self.instance_id)

    async def others(self, server: str) -> list[str]:
        self._check()
        return sorted(self.present.get(server, set()) - {self.instance_id})


class FakePort:
    def __init__(self) -> None:
        self.ready = True
        self.server: ServerInfo | None = SERVER
        self.routes_withdrawn = False
        self.calls: list[str] = []

    async def withdraw_routes(self) -> None:
        self.calls.append("withdraw")
        self.routes_withdrawn = True

    async def restore_routes(self) -> None:
        self.calls.append("restore")
        self.routes_withdrawn = False


def presence(registry: MemoryRegistry, port: FakePort) -> SharedServerPresence:
    return SharedServerPresence(registry, port, refresh=0.02, drain_check=0.02)  # type: ignore[arg-type]


def info_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "engine.drachtio.peers"]


async def test_a_draining_engine_withdraws_while_another_is_present_and_routes_when_it_left(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="engine.drachtio.peers")
    present: dict[str, set[str]] = {}
    key = server_identity(SERVER)
    port_a, port_b = FakePort(), FakePort()
    a, b = presence(MemoryRegistry("a", present), port_a), \
        presence(MemoryRegistry("b", present), port_b)
    a.start()
    b.start()
    try:
        await eventually(lambda: present.get(key) == {"a", "b"})
        a.drain()
        await eventually(lambda: port_a.routes_withdrawn)
        assert present[key] == {"b"} and port_a.calls == ["withdraw"]
        await asyncio.sleep(0.1)  # looked again several times: nothing changes
        assert port_a.calls == ["withdraw"]
        b.drain()  # the other one goes too: a routes again, b (alone) never withdrew
        await eventually(lambda: not port_a.routes_withdrawn)
        await asyncio.sleep(0.1)
        assert port_a.calls == ["withdraw", "restore"] and port_b.calls == []
        assert present[key] == set()
    finally:
        await a.stop()
        await b.stop()
    lines = [(r.getMessage(), getattr(r, "others", None)) for r in info_lines(caplog)]
    assert any("withdrawn" in m for m, _ in lines) and any("restored" in m for m, _ in lines)


async def test_the_last_engine_keeps_its_routes_and_a_connection_loss_changes_nothing(
) -> None:
    present: dict[str, set[str]] = {server_identity(SERVER): {"a"}}
    port = FakePort()
    p = presence(MemoryRegistry("a", present), port)
    p.start()
    try:
        p.drain()
        await asyncio.sleep(0.1)
        assert port.calls == []
        port.ready = False  # disconnected: another engine appearing cannot be acted on yet
        present[server_identity(SERVER)].add("b")
        await asyncio.sleep(0.1)
        assert port.calls == []
        port.ready = True
        await eventually(lambda: port.calls == ["withdraw"])
    finally:
        await p.stop()


async def test_redis_down_while_draining_keeps_the_routes_with_one_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="engine.drachtio.peers")
    present: dict[str, set[str]] = {server_identity(SERVER): {"b"}}
    registry = MemoryRegistry("a", present)
    port = FakePort()
    p = presence(registry, port)
    p.start()
    try:
        p.drain()
        await eventually(lambda: port.routes_withdrawn)
        registry.down = True
        await eventually(lambda: not port.routes_withdrawn)
        await asyncio.sleep(0.1)  # many more looks while Redis stays down
        warnings = [r for r in info_lines(caplog) if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "keeps its routes" in warnings[0].getMessage()
        registry.down = False
        await eventually(lambda: port.routes_withdrawn)
        assert port.calls == ["withdraw", "restore", "withdraw"]
    finally:
        await p.stop()


def test_the_server_is_named_by_its_own_host_ports_in_any_order() -> None:
    shuffled = ServerInfo(SERVER.hostports, "v0.9.11", tuple(reversed(SERVER.local_hostports)))
    assert server_identity(shuffled) == server_identity(SERVER)
    assert engines_key(server_identity(SERVER)) == \
        "drachtio:engines:udp/203.0.113.5:5060;tcp/10.0.0.5:5060,udp/10.0.0.5:5060"
    other_host = ServerInfo((("udp", "203.0.113.6", 5060),), "v0.9.10", SERVER.local_hostports)
    assert server_identity(other_host) != server_identity(SERVER)
