"""Redis state store (implements ``engine.ports.StateStore``).

Keys (see ``engine.store.codec`` for the field encodings):

==============================  =====  ==========================================  ==========
key                             type   fields                                      TTL
==============================  =====  ==========================================  ==========
``client:{domain}:{user}``      hash   contact, proxy, dialplan (JSON), codecs      granted
                                       (JSON) — the seed's — then transport, flow,  expiry
                                       callid, cseq, user_agent, expires
``nonce:{nonce}``               str    highest digest nonce-count seen (decimal)    nonce TTL
``call:{domain}:{callId}``      hash   caller-defined (live call summary)           caller's
``regtrunk:{domain}:{uuid}``    hash   trunkID (seed), owner (INSTANCE_ID),         registrar
                                       status fields                                Expires
==============================  =====  ==========================================  ==========

The abuse protection keeps its ``abuse:*`` keys on the same connection
(``RedisStore.client``; see ``engine.abuse.redis``).

Why it is shaped like this:

* a REGISTER costs one round trip: ``DEL`` + ``HSET`` + ``EXPIRE`` in one
  MULTI/EXEC, so a reader never sees a half-written binding and fields of an
  older registration (a stale ``flow``) never survive (D-10); a lookup is one
  pipelined ``HGETALL`` + ``TTL``;
* replay detection and owner-checked deletion are single Lua scripts, atomic
  across engine instances sharing the Redis (S-3, D-21);
* the client is ``engine.store.resp`` (one pipelined connection, hiredis
  parsing) rather than redis-py, whose per-command overhead measured 4x
  higher on this hot path; every operation is bounded by the command timeout
  (connecting and any re-send included) and is sent at most once — only reads
  are re-sent after a lost reply (a script or MULTI block may have run);
  failures are ``StoreError``.
* health (``watch_health``): a PING every ``HEALTH_PING_INTERVAL`` on the same
  connection, and every command that could not reach Redis, report to
  ``engine.health``; while Redis is known down every operation fails at once
  with ``StoreError`` (callers answer 503 without waiting for a timeout) and
  the PINGs bring it back by themselves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from engine.errors import StoreError
from engine.health import REDIS, Dependency, Health, Watcher
from engine.log import get_logger
from engine.ports import Binding
from engine.store.codec import (
    OWNER_FIELD,
    binding_fields,
    binding_from_fields,
    call_key,
    check_ttl,
    client_key,
    nonce_key,
    regtrunk_key,
)
from engine.store.resp import LuaScript, RespClient, encode

if TYPE_CHECKING:
    from engine.settings import Settings

log = get_logger(__name__)

# KEYS[1] nonce key; ARGV[1] nc; ARGV[2] ttl. 1 = nc is new (recorded), 0 = replay.
_ADVANCE_NC = """
local seen = tonumber(redis.call('GET', KEYS[1]) or '-1')
local nc = tonumber(ARGV[1])
if nc > seen then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  return 1
end
return 0
"""

# KEYS[1] regtrunk key; ARGV[1] owner. Deletes only our own registration (D-21).
_DELETE_IF_OWNER = """
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def _hash_args(fields: Mapping[str, str]) -> list[str]:
    out: list[str] = []
    for k, v in fields.items():
        out.append(str(k))
        out.append(str(v))
    return out


def _as_dict(reply: list[str]) -> dict[str, str]:
    it = iter(reply)
    return dict(zip(it, it, strict=True))


class _WatchedClient(RespClient):
    """The RESP client with a health gate: once ``watch`` has given it a dependency, a
    command fails at once while Redis is known down, and a command that could not reach
    Redis (connect refused or timed out, no reply in time, connection lost) marks it
    down. Reply errors (``WRONGTYPE``…) come back as replies, not from ``send``: Redis
    answered, so they say nothing about its health."""

    _dependency: Dependency | None = None
    _watcher: Watcher | None = None
    errors = 0  # commands that failed to reach Redis (dragonpbx_redis_errors_total)

    def watch(self, dependency: Dependency, watcher: Watcher) -> None:
        self._dependency, self._watcher = dependency, watcher

    async def send(self, *args: Any, **kwargs: Any) -> list[Any]:
        dep = self._dependency
        if dep is None:
            return await super().send(*args, **kwargs)
        if dep.up is False:
            raise StoreError(f"redis unavailable ({dep.reason})")
        try:
            return await super().send(*args, **kwargs)
        except StoreError as exc:
            self.errors += 1
            if not self._closed and self._watcher is not None:
                self._watcher.health.report(REDIS, False, str(exc))
                self._watcher.poke()  # confirm (or clear) it with a PING now
            raise

    async def probe(self) -> None:
        """PING past the gate (the health check). Cancelled by the check's timeout, it
        drops the connection: a hung Redis must not keep it, nor hold later commands."""
        try:
            (reply,) = await super().send(_PING, 1)
        except asyncio.CancelledError:
            self._drop("health PING got no reply in time")
            raise
        if reply != "PONG":
            raise StoreError(f"redis PING: {reply}")


_PING = encode("PING")


class RedisStore:
    """The production ``StateStore``. One per process; ``close()`` closes its connection."""

    def __init__(self, url: str, *, instance_id: str, socket_timeout: float = 2.0,
                 connect_timeout: float = 2.0) -> None:
        self._instance_id = instance_id
        self._client = _WatchedClient(url, connect_timeout=connect_timeout,
                                      command_timeout=socket_timeout)
        self._advance_nc = LuaScript(self._client, _ADVANCE_NC)
        self._delete_if_owner = LuaScript(self._client, _DELETE_IF_OWNER)
        self._watcher: Watcher | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisStore:
        """Store on ``REDIS_URL`` (password and TLS via ``rediss://``) owned by ``INSTANCE_ID``."""
        return cls(settings.redis_url, instance_id=settings.instance_id)

    def watch_health(self, health: Health, *, interval: float, timeout: float) -> None:
        """Report Redis's health to ``health`` (PING every ``interval``, each bounded by
        ``timeout``, plus what real commands learn) and fail fast while it is down."""
        if self._watcher is not None:
            return
        self._watcher = Watcher(health, REDIS, self._client.probe, interval=interval,
                                timeout=timeout)
        self._client.watch(health.dependency(REDIS), self._watcher)
        self._watcher.start()

    @property
    def instance_id(self) -> str:
        return self._instance_id

    @property
    def client(self) -> RespClient:
        """The connection, for adapters that keep their own keys (``engine.abuse.redis``)."""
        return self._client

    async def ping(self) -> None:
        await self._client.execute("PING")

    # ------------------------------------------------------------------ bindings

    async def save_binding(self, *, domain: str, user: str, binding: Binding) -> None:
        """Replace ``client:{domain}:{user}`` with ``binding``, TTL ``binding.expires``."""
        ttl = check_ttl(binding.expires, "save_binding")
        key = client_key(domain, user)
        await self._client.transaction((
            ("DEL", key), ("HSET", key, *_hash_args(binding_fields(binding))),
            ("EXPIRE", key, ttl)))

    async def get_binding(self, *, domain: str, user: str) -> tuple[Binding, int] | None:
        """The binding and its remaining TTL (seconds; -1 = the key has no expiry)."""
        key = client_key(domain, user)
        fields, ttl = await self._client.pipeline((("HGETALL", key), ("TTL", key)))
        if not fields:
            return None
        return binding_from_fields(_as_dict(fields)), int(ttl)

    async def remove_binding(self, *, domain: str, user: str) -> bool:
        return bool(await self._client.execute("DEL", client_key(domain, user)))

    # ------------------------------------------------------------------ digest nonces

    async def advance_nonce_count(self, *, nonce: str, nc: int, ttl: int) -> bool:
        """Record ``nc`` for ``nonce`` if it is above every count seen; False = replay."""
        if isinstance(nc, bool) or not isinstance(nc, int) or nc < 0:
            raise ValueError(f"nonce count must be an integer ≥ 0, got {nc!r}")
        seconds = check_ttl(ttl, "advance_nonce_count")
        return bool(await self._advance_nc(keys=[nonce_key(nonce)], args=[nc, seconds]))

    # ------------------------------------------------------------------ live calls

    async def save_call(self, *, domain: str, call_id: str, fields: Mapping[str, str],
                        ttl: int) -> None:
        """Replace ``call:{domain}:{callId}`` with ``fields`` and (re)arm its TTL."""
        await self._replace_hash("save_call", call_key(domain, call_id), fields, ttl)

    async def remove_call(self, *, domain: str, call_id: str) -> None:
        await self._client.execute("DEL", call_key(domain, call_id))

    async def get_call(self, *, domain: str, call_id: str) -> Mapping[str, str] | None:
        fields = await self._client.execute("HGETALL", call_key(domain, call_id))
        return _as_dict(fields) or None

    # ------------------------------------------------------------------ trunk registrations

    async def save_regtrunk(self, *, domain: str, reg_id: str, fields: Mapping[str, str],
                            ttl: int) -> None:
        """Replace ``regtrunk:{domain}:{uuid}``; ``owner`` is always this instance."""
        data = {**fields, OWNER_FIELD: self._instance_id}
        await self._replace_hash("save_regtrunk", regtrunk_key(domain, reg_id), data, ttl)

    async def get_regtrunk(self, *, domain: str, reg_id: str) -> Mapping[str, str] | None:
        fields = await self._client.execute("HGETALL", regtrunk_key(domain, reg_id))
        return _as_dict(fields) or None

    async def delete_regtrunk(self, *, domain: str, reg_id: str, owner: str) -> bool:
        """Delete the key only if its ``owner`` is ``owner`` (atomic; D-21)."""
        deleted = await self._delete_if_owner(keys=[regtrunk_key(domain, reg_id)],
                                              args=[owner])
        return bool(deleted)

    # ------------------------------------------------------------------ listing (HTTP API)

    async def scan(self, cursor: str, match: str, count: int) -> tuple[str, list[str]]:
        """One ``SCAN`` step: the next cursor ("0" = done) and the keys matching ``match``."""
        next_cursor, keys = await self._client.execute("SCAN", cursor, "MATCH", match,
                                                       "COUNT", count)
        return str(next_cursor), [str(k) for k in keys]

    @property
    def errors(self) -> int:
        """Commands that failed to reach Redis since start."""
        return self._client.errors

    # ------------------------------------------------------------------ helpers

    async def _replace_hash(self, op: str, key: str, fields: Mapping[str, str],
                            ttl: int) -> None:
        if not fields:
            raise ValueError(f"{op}: no fields to store")
        seconds = check_ttl(ttl, op)
        await self._client.transaction((
            ("DEL", key), ("HSET", key, *_hash_args(fields)), ("EXPIRE", key, seconds)))

    async def close(self) -> None:
        if self._watcher is not None:
            await self._watcher.stop()
        await self._client.close()


__all__ = ["RedisStore"]
