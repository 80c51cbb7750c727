"""Trunk-registration leases in Redis: each registration is kept by exactly one engine.

Several engines (instances behind a load balancer, or the workers of one
supervisor) share one Redis and the same trunks. Only the holder of a trunk's
lease registers it; the others stand by (machines/trunk_registration.yaml,
state ``standby``) and try again every half lease, so when the holder dies its
lease runs out and another engine takes the trunk over — within two
``REGTRUNKREFRESH`` intervals, the lease's lifetime.

Keys:

=======================================  ======  ===============================  =====
key                                      type    value                            TTL
=======================================  ======  ===============================  =====
``lease:trunk:{domain}:{trunkId}``       string  INSTANCE_ID of the holder        lease
``lease:standby:{domain}:{trunkId}``     zset    INSTANCE_ID → expiry (ms, Redis  lease
                                                 time) of each engine standing by
=======================================  ======  ===============================  =====

Every operation is one Lua script (atomic across engines): take-or-renew sets
the lease only if it is free or already ours, and otherwise records us as
standing by; release deletes it only if ours. A holder that drains asks
whether another engine stands by for the trunk: then it hands the trunk over
without ``Expires: 0`` (calls keep arriving; the next holder registers the
same Contact), else it is the last one and unregisters.
"""

from __future__ import annotations

from typing import Any

from engine.store.resp import LuaScript, RespClient

# KEYS[1] lease, KEYS[2] standby zset; ARGV[1] owner; ARGV[2] ttl ms. 1 = held by ARGV[1]
# now; 0 = by another (ARGV[1] is then recorded as standing by, until Redis time + ttl).
_TAKE_OR_RENEW = """
local cur = redis.call('GET', KEYS[1])
if cur == false or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 1
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 0
"""

# KEYS[1] lease; ARGV[1] owner. 1 = deleted (it was ours).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS[1] a zset of member → expiry (ms, Redis time). The members whose expiry has not
# passed, dropping the others (Redis's clock, not ours: engines may run on hosts whose
# clocks differ). The engines standing by for a trunk; engine.drachtio.peers' engines.
LIVE_MEMBERS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')
"""


def lease_key(domain: str, trunk_id: str) -> str:
    return f"lease:trunk:{domain}:{trunk_id}"


def standby_key(domain: str, trunk_id: str) -> str:
    return f"lease:standby:{domain}:{trunk_id}"


class Leases:
    """The lease operations of one engine (``owner`` = its INSTANCE_ID)."""

    def __init__(self, client: RespClient, owner: str, ttl: float):
        self.client = client
        self.owner = owner
        self.ttl = ttl
        self._ttl_ms = max(1, int(ttl * 1000))
        self._take = LuaScript(client, _TAKE_OR_RENEW)
        self._release = LuaScript(client, _RELEASE)
        self._standing_by = LuaScript(client, LIVE_MEMBERS)

    async def take_or_renew(self, domain: str, trunk_id: str) -> bool:
        """Hold the trunk's lease for another ``ttl``; False = another engine holds it
        (and this one is recorded as standing by)."""
        held = await self._take(keys=[lease_key(domain, trunk_id),
                                      standby_key(domain, trunk_id)],
                                args=[self.owner, self._ttl_ms])
        return bool(held)

    async def release(self, domain: str, trunk_id: str) -> bool:
        return bool(await self._release(keys=[lease_key(domain, trunk_id)], args=[self.owner]))

    async def holder(self, domain: str, trunk_id: str) -> str | None:
        value: Any = await self.client.execute("GET", lease_key(domain, trunk_id))
        return value if isinstance(value, str) else None

    async def stop_standing_by(self, domain: str, trunk_id: str) -> None:
        """This engine drains: it no longer takes the trunk over."""
        await self.client.execute("ZREM", standby_key(domain, trunk_id), self.owner)

    async def others_standing_by(self, domain: str, trunk_id: str) -> list[str]:
        alive = await self._standing_by(keys=[standby_key(domain, trunk_id)], args=[])
        return [e for e in alive if e != self.owner]


class MemoryLeases:
    """The same operations for one process alone (``dragonpbx simulate``, unit tests):
    this engine is the only one, so it always holds what it asks for."""

    def __init__(self, owner: str, ttl: float):
        self.owner = owner
        self.ttl = ttl
        self._held: set[tuple[str, str]] = set()

    async def take_or_renew(self, domain: str, trunk_id: str) -> bool:
        self._held.add((domain, trunk_id))
        return True

    async def release(self, domain: str, trunk_id: str) -> bool:
        if (domain, trunk_id) in self._held:
            self._held.discard((domain, trunk_id))
            return True
        return False

    async def holder(self, domain: str, trunk_id: str) -> str | None:
        return self.owner if (domain, trunk_id) in self._held else None

    async def stop_standing_by(self, domain: str, trunk_id: str) -> None:
        return None

    async def others_standing_by(self, domain: str, trunk_id: str) -> list[str]:
        return []
