"""Trunk leases (engine/lease.py) against the real redis-server: one holder at a time,
renew and release only by the holder, engines standing by expire with their lease."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from engine.lease import Leases, lease_key
from engine.store.resp import RespClient

pytestmark = [pytest.mark.integration]


@pytest.fixture
async def clients(redis_url: str) -> AsyncIterator[tuple[RespClient, aioredis.Redis]]:
    client = RespClient(redis_url, connect_timeout=2, command_timeout=2)
    raw = aioredis.from_url(redis_url, decode_responses=True)
    yield client, raw
    await client.close()
    await raw.aclose()


async def test_one_holder_renews_others_stand_by_until_it_is_gone(
        clients: tuple[RespClient, aioredis.Redis]) -> None:
    client, raw = clients
    a, b = Leases(client, "a", ttl=0.5), Leases(client, "b", ttl=0.5)
    assert await a.take_or_renew("d.test", "7")
    assert not await b.take_or_renew("d.test", "7")
    assert await a.holder("d.test", "7") == "a"
    assert await a.others_standing_by("d.test", "7") == ["b"]
    assert 0 < await raw.pttl(lease_key("d.test", "7")) <= 500
    for _ in range(3):  # renewed past its first expiry
        await asyncio.sleep(0.3)
        assert await a.take_or_renew("d.test", "7")
    assert not await b.release("d.test", "7")  # not b's to release
    assert await a.holder("d.test", "7") == "a"
    await asyncio.sleep(0.6)  # a stops renewing (dies): the lease and b's standby expire
    assert await a.holder("d.test", "7") is None
    assert await a.others_standing_by("d.test", "7") == []
    assert await b.take_or_renew("d.test", "7")
    assert not await a.take_or_renew("d.test", "7")  # a is back: b holds it now
    assert await b.release("d.test", "7")
    assert await b.holder("d.test", "7") is None


async def test_a_draining_engine_no_longer_stands_by(
        clients: tuple[RespClient, aioredis.Redis]) -> None:
    client, _ = clients
    a, b, c = (Leases(client, n, ttl=5) for n in "abc")
    assert await a.take_or_renew("d.test", "8")
    assert not await b.take_or_renew("d.test", "8")
    assert not await c.take_or_renew("d.test", "8")
    await b.stop_standing_by("d.test", "8")
    assert await a.others_standing_by("d.test", "8") == ["c"]
