"""A draining engine withdraws its routes (issue 12, H6), against the real drachtio-server
and the real redis-server: after ``remove_route`` drachtio answers new requests 503 by
itself when no other application routed them, or hands them to the one that did; after
a restore they reach us again; a reconnection keeps the withdrawal. The presence zset's
Lua scripts on real Redis."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from engine.drachtio.peers import PeerRegistry, engines_key
from engine.store.resp import RespClient
from tests.fixtures.drachtio import Drachtio
from tests.integration.drachtio.conftest import UdpPhone, drachtio_client
from tests.integration.drachtio.test_client import answer_options, eventually

pytestmark = pytest.mark.integration


async def test_withdrawn_routes_get_drachtios_own_503_and_restored_ones_are_served(
        drachtio_spare: Drachtio, phone: UdpPhone) -> None:
    async with drachtio_client(drachtio_spare) as (client, inbox):
        assert await client.wait_ready(5)
        assert (await answer_options(client, inbox, phone, drachtio_spare)).startswith(
            "SIP/2.0 200 OK")
        await client.withdraw_routes()
        for _ in range(2):
            got = await phone.response(phone.options(drachtio_spare))
            assert got.startswith("SIP/2.0 503 "), got
            assert "Retry-After" not in got  # why the last engine keeps its routes
        assert inbox.frames[1:] == []
        await client.restore_routes()
        got = await answer_options(client, inbox, phone, drachtio_spare)
        assert got.startswith("SIP/2.0 200 OK") and "X-Handled-By: dragonpbx-test" in got


async def test_a_reconnection_keeps_the_withdrawal(drachtio_spare: Drachtio,
                                                    phone: UdpPhone) -> None:
    async with drachtio_client(drachtio_spare) as (client, inbox):
        assert await client.wait_ready(5)
        await client.withdraw_routes()
        drachtio_spare.kill()
        await eventually(lambda: not client.ready, timeout=3)
        await asyncio.to_thread(drachtio_spare.start)
        assert await client.wait_ready(5) and client.epoch == 2
        got = await phone.response(phone.options(drachtio_spare))
        assert got.startswith("SIP/2.0 503 "), got
        assert inbox.frames == []
        await client.restore_routes()
        got = await answer_options(client, inbox, phone, drachtio_spare)
        assert got.startswith("SIP/2.0 200 OK")


async def test_with_another_application_routed_every_new_request_goes_to_it(
        drachtio_spare: Drachtio, phone: UdpPhone) -> None:
    async with drachtio_client(drachtio_spare) as (a, a_inbox), \
            drachtio_client(drachtio_spare) as (b, b_inbox):
        assert await a.wait_ready(5) and await b.wait_ready(5)
        await a.withdraw_routes()
        for _ in range(4):  # round-robin would give a every other one
            got = await answer_options(b, b_inbox, phone, drachtio_spare)
            assert got.startswith("SIP/2.0 200 OK"), got
        assert a_inbox.frames == []


async def test_presence_zset_expires_by_redis_time_and_lists_only_the_others(
        redis_url: str) -> None:
    client = RespClient(redis_url, connect_timeout=2, command_timeout=2)
    raw = aioredis.from_url(redis_url, decode_responses=True)
    try:
        a, b = PeerRegistry(client, "a", ttl=0.5), PeerRegistry(client, "b", ttl=0.5)
        server = "udp/127.0.0.1:5080;udp/127.0.0.1:5080"
        await a.announce(server)
        await b.announce(server)
        assert await a.others(server) == ["b"] and await b.others(server) == ["a"]
        assert await a.others("udp/10.9.9.9:5060;") == []  # another server: nobody
        assert 0 < await raw.pttl(engines_key(server)) <= 500
        for _ in range(3):  # a keeps announcing, b has crashed: b is gone after its ttl
            await asyncio.sleep(0.25)
            await a.announce(server)
        assert await a.others(server) == []
        assert await raw.zrange(engines_key(server), 0, -1) == ["a"]  # pruned
        await b.announce(server)
        await a.leave(server)  # a drains
        assert await b.others(server) == []
    finally:
        await client.close()
        await raw.aclose()
