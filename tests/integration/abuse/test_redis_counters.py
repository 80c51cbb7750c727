"""The abuse counters' Lua script and ban listing against a real redis-server, and two
``AbuseGuard``s sharing it as two engine instances would."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from engine.abuse.guard import AbuseGuard
from engine.abuse.policy import AbusePolicy, failure_keys
from engine.abuse.redis import RedisAbuseCounters
from engine.store.redis import RedisStore

pytestmark = pytest.mark.integration

POLICY = AbusePolicy(nonce_max_failures=3, window_secs=60, source_max_failures=4,
                     aor_max_failures=6, ban_secs=120)


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_url, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def stores(redis_url: str) -> AsyncIterator[list[RedisStore]]:
    made = [RedisStore(redis_url, instance_id=f"pbx-{i}") for i in range(2)]
    try:
        yield made
    finally:
        for store in made:
            await store.close()


def guards(stores: list[RedisStore]) -> list[AbuseGuard]:
    return [AbuseGuard(POLICY, RedisAbuseCounters(s.client), config=None, nonce_ttl=300,
                       wall_clock=lambda: 1_800_000_000.0) for s in stores]


async def fail(guard: AbuseGuard, source: str, user: str = "alice",
               nonce: str = "n1") -> object:
    return await guard.record_failure(source=source, domain="pbx.test", user=user,
                                      nonce=nonce, method="REGISTER")


async def test_counts_and_windows(stores: list[RedisStore], raw: aioredis.Redis) -> None:
    a, _ = guards(stores)
    result = await fail(a, "192.0.2.1")
    assert (result.nonce_failures, result.source_failures, result.aor_failures) == (1, 1, 1)
    keys = failure_keys(source="192.0.2.1", domain="pbx.test", user="alice", nonce="n1")
    assert 55 <= await raw.ttl(keys.source) <= 60 and 55 <= await raw.ttl(keys.aor) <= 60
    assert 355 <= await raw.ttl(keys.nonce) <= 360  # the nonce's life + skew
    assert await a.check(source="192.0.2.1", domain="pbx.test", user="alice",
                         nonce="n1") == "clear"
    await fail(a, "192.0.2.1")
    await fail(a, "192.0.2.1")
    assert await a.check(source="192.0.2.1", domain="pbx.test", user="alice",
                         nonce="n1") == "nonce_spent"
    assert await a.check(source="192.0.2.1", domain="pbx.test", user="alice",
                         nonce="n2") == "clear"


async def test_two_instances_ban_once(stores: list[RedisStore], raw: aioredis.Redis) -> None:
    """Failures from one source arrive at two instances at once: the ban is created by
    exactly one failure, and both instances see it."""
    a, b = guards(stores)
    results = await asyncio.gather(*(fail(g, "192.0.2.7", user=f"u{i}", nonce=f"n{i}")
                                     for i, g in enumerate([a, b] * 4)))
    assert sum(r.banned_source for r in results) == 1
    assert sorted(r.source_failures for r in results) == list(range(1, 9))
    for guard in (a, b):
        assert await guard.check(source="192.0.2.7", domain="pbx.test", user="bob",
                                 nonce="zz") == "banned"
    (ban,) = await a.counters.bans()
    creator = next(i for i, r in enumerate(results) if r.banned_source)
    assert (ban.scope, ban.source, ban.user, ban.domain, ban.failures) == (
        "source", "192.0.2.7", f"u{creator}", "pbx.test", 4)
    assert ban.since == 1_800_000_000.0 and 115 <= ban.ttl <= 120


async def test_attacked_user_bans_pairs_and_lift_clears_them(stores: list[RedisStore],
                                                             raw: aioredis.Redis) -> None:
    a, _ = guards(stores)
    for source in ("192.0.2.1", "192.0.2.2"):
        for _ in range(3):
            result = await fail(a, source)
    assert result.guarded_aor and result.banned_pair and not result.banned_source
    assert await a.check(source="192.0.2.2", domain="pbx.test", user="alice",
                         nonce="x") == "banned"
    assert await a.check(source="192.0.2.2", domain="pbx.test", user="bob",
                         nonce="x") == "clear"
    assert await a.check(source="192.0.2.3", domain="pbx.test", user="alice",
                         nonce="x") == "clear"
    assert (await fail(a, "192.0.2.1")).banned_source  # its 4th: the source limit
    assert await a.counters.lift("192.0.2.2") == 1
    assert await a.check(source="192.0.2.2", domain="pbx.test", user="alice",
                         nonce="x") == "clear"
    assert await a.counters.lift("192.0.2.2") == 0
    assert len(await a.counters.bans()) == 1  # 192.0.2.1 is still banned


async def test_ipv6_sources_are_canonical_and_lifted_alone(stores: list[RedisStore]) -> None:
    a, _ = guards(stores)
    for _ in range(4):
        await fail(a, "2001:db8:0:0::1")
    await fail(a, "2001:db8::1:0", user="x")
    assert await a.check(source="2001:DB8::1", domain="pbx.test", user="y",
                         nonce="x") == "banned"
    assert await a.counters.lift("2001:db8::1") == 1
    assert await a.check(source="2001:db8::1", domain="pbx.test", user="y",
                         nonce="x") == "clear"
