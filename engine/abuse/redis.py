"""Authentication-failure counters and bans in Redis, shared by every engine instance.

Keys (names in ``engine.abuse.policy``; all expire by themselves):

=====================================  ====  ===========================================
key                                    type  meaning (TTL)
=====================================  ====  ===========================================
``abuse:nonce:{nonce}``                int   failed responses on the nonce (nonce life)
``abuse:fail:src:{ip}``                int   failures from the source (window)
``abuse:fail:aor:{domain}/{user}``     int   failures on the AOR, any source (window)
``abuse:guard:aor:{domain}/{user}``    str   the AOR is under attack (ban duration)
``abuse:ban:src:{ip}``                 JSON  the source is banned for every user (ban)
``abuse:ban:pair:{ip}/{domain}/{user}`` JSON  the source is banned for this AOR (ban)
=====================================  ====  ===========================================

Counting a failure is one Lua script (atomic across instances), so exactly one
instance sees that a failure created a ban and logs it. Windows are fixed: they
start at a key's first failure.
"""

from __future__ import annotations

from typing import Any

from engine.abuse.policy import (
    BAN_PATTERN,
    AbusePolicy,
    Ban,
    FailureKeys,
    FailureResult,
    pair_ban_pattern,
    source_ban_key,
    source_failures_key,
)
from engine.store.resp import LuaScript, RespClient

# KEYS: nonce, source, aor, aor_guard, source_ban, pair_ban
# ARGV: window, source max, aor max, ban secs, nonce ttl, source, domain, user, now
_RECORD_FAILURE = """
local function bump(key, ttl)
  local n = redis.call('INCR', key)
  if n == 1 then redis.call('EXPIRE', key, ttl) end
  return n
end
local window = tonumber(ARGV[1])
local ban = tonumber(ARGV[4])
local nf = bump(KEYS[1], tonumber(ARGV[5]))
local sf = bump(KEYS[2], window)
local af = bump(KEYS[3], window)
local function record(scope, failures)
  return cjson.encode({scope = scope, source = ARGV[6], domain = ARGV[7], user = ARGV[8],
                       failures = failures, since = tonumber(ARGV[9])})
end
local new_src, new_pair, new_guard = 0, 0, 0
if sf >= tonumber(ARGV[2]) and
   redis.call('SET', KEYS[5], record('source', sf), 'NX', 'EX', ban) then
  new_src = 1
end
if af >= tonumber(ARGV[3]) and redis.call('SET', KEYS[4], '1', 'NX', 'EX', ban) then
  new_guard = 1
end
if new_src == 0 and redis.call('EXISTS', KEYS[4]) == 1 and
   redis.call('SET', KEYS[6], record('pair', af), 'NX', 'EX', ban) then
  new_pair = 1
end
return {nf, sf, af, new_src, new_pair, new_guard}
"""


class RedisAbuseCounters:
    """The counters on the store's Redis connection (``RedisStore.client``)."""

    def __init__(self, client: RespClient):
        self._client = client
        self._record = LuaScript(client, _RECORD_FAILURE)

    async def read(self, keys: FailureKeys) -> tuple[Any, Any, Any]:
        """(source ban, pair ban, nonce failures) — one MGET."""
        source_ban, pair_ban, nonce = await self._client.execute(
            "MGET", keys.source_ban, keys.pair_ban, keys.nonce)
        return source_ban, pair_ban, nonce

    async def record_failure(self, keys: FailureKeys, policy: AbusePolicy, *, source: str,
                             domain: str, user: str, nonce_ttl: int,
                             now: float) -> FailureResult:
        reply = await self._record(keys=keys.as_list(), args=[
            policy.window_secs, policy.source_max_failures, policy.aor_max_failures,
            policy.ban_secs, nonce_ttl, source, domain, user, f"{now:.3f}"])
        return FailureResult.from_reply(reply)

    async def bans(self, limit: int = 10_000) -> list[Ban]:
        """Every ban with its remaining seconds (at most ``limit``)."""
        keys = await self._scan(BAN_PATTERN, limit)
        if not keys:
            return []
        replies = await self._client.pipeline(
            [cmd for key in keys for cmd in (("GET", key), ("TTL", key))])
        out: list[Ban] = []
        for i in range(0, len(replies), 2):
            if replies[i] is None:
                continue  # expired between SCAN and GET
            ban = Ban.from_json(replies[i], int(replies[i + 1]))
            if ban is not None:
                out.append(ban)
        return out

    async def lift(self, source: str) -> int:
        """Remove every ban of ``source`` and its failure count; the number of bans lifted."""
        pair_keys = await self._scan(pair_ban_pattern(source), 100_000)
        lifted = await self._client.execute("DEL", source_ban_key(source), *pair_keys)
        await self._client.execute("DEL", source_failures_key(source))
        return int(lifted)

    async def _scan(self, pattern: str, limit: int) -> list[str]:
        cursor, found = "0", []
        while True:
            cursor, batch = await self._client.execute("SCAN", cursor, "MATCH", pattern,
                                                       "COUNT", 1000)
            found.extend(batch)
            if cursor == "0" or len(found) >= limit:
                return found[:limit]


__all__ = ["RedisAbuseCounters"]
