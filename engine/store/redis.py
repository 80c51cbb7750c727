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

Why it is shaped like this:

* a REGISTER costs one round trip: ``DEL`` + ``HSET`` + ``EXPIRE`` in one
  MULTI/EXEC, so a reader never sees a half-written binding and fields of an
  older registration (a stale ``flow``) never survive (D-10); a lookup is one
  pipelined ``HGETALL`` + ``TTL``;
* replay detection and owner-checked deletion are single Lua scripts, atomic
  across engine instances sharing the Redis (S-3, D-21);
* every socket operation is bounded (connect and read timeouts) and retried
  at most once, immediately — enough to survive a pooled connection that a
  Redis restart killed, without stretching an outage into seconds of
  retries; redis-py errors become ``StoreError`` here, at the edge.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from engine.errors import StoreError
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


class RedisStore:
    """The production ``StateStore``. One per process; ``close()`` releases the pool."""

    def __init__(
        self, url: str, *, instance_id: str, socket_timeout: float = 2.0,
        connect_timeout: float = 2.0, max_connections: int = 128,
    ) -> None:
        self._instance_id = instance_id
        try:
            # Blocking pool: a burst beyond max_connections waits (bounded by the socket
            # timeout) for a free connection instead of failing outright.
            self._pool = aioredis.BlockingConnectionPool.from_url(
                url, max_connections=max_connections, timeout=socket_timeout,
                socket_timeout=socket_timeout, socket_connect_timeout=connect_timeout,
                socket_keepalive=True, health_check_interval=30,
                retry=Retry(NoBackoff(), 1), decode_responses=True,
            )
        except (ValueError, RedisError) as exc:
            raise StoreError(f"bad REDIS_URL: {exc}") from exc
        self._redis = aioredis.Redis(connection_pool=self._pool)
        self._advance_nc = self._redis.register_script(_ADVANCE_NC)
        self._delete_if_owner = self._redis.register_script(_DELETE_IF_OWNER)

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisStore:
        """Store on ``REDIS_URL`` (password and TLS via ``rediss://``) owned by ``INSTANCE_ID``."""
        return cls(settings.redis_url, instance_id=settings.instance_id)

    @property
    def instance_id(self) -> str:
        return self._instance_id

    @contextlib.contextmanager
    def _errors(self, op: str) -> Iterator[None]:
        # Translate at the edge; CancelledError is not a RedisError and passes untouched.
        try:
            yield
        except RedisError as exc:
            log.warning("redis operation failed", op=op, error=type(exc).__name__)
            raise StoreError(f"redis {op} failed: {exc}") from exc
        except OSError as exc:
            raise StoreError(f"redis {op} failed: {exc}") from exc

    async def ping(self) -> None:
        with self._errors("ping"):
            await self._redis.ping()

    # ------------------------------------------------------------------ bindings

    async def save_binding(self, *, domain: str, user: str, binding: Binding) -> None:
        """Replace ``client:{domain}:{user}`` with ``binding``, TTL ``binding.expires``."""
        ttl = check_ttl(binding.expires, "save_binding")
        key = client_key(domain, user)
        fields = binding_fields(binding)
        with self._errors("save_binding"):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(key)
                pipe.hset(key, mapping=fields)
                pipe.expire(key, ttl)
                await pipe.execute()

    async def get_binding(self, *, domain: str, user: str) -> tuple[Binding, int] | None:
        """The binding and its remaining TTL (seconds; -1 = the key has no expiry)."""
        key = client_key(domain, user)
        with self._errors("get_binding"):
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hgetall(key)
                pipe.ttl(key)
                fields, ttl = await pipe.execute()
        if not fields:
            return None
        return binding_from_fields(fields), int(ttl)

    async def remove_binding(self, *, domain: str, user: str) -> bool:
        with self._errors("remove_binding"):
            return bool(await self._redis.delete(client_key(domain, user)))

    # ------------------------------------------------------------------ digest nonces

    async def advance_nonce_count(self, *, nonce: str, nc: int, ttl: int) -> bool:
        """Record ``nc`` for ``nonce`` if it is above every count seen; False = replay."""
        if isinstance(nc, bool) or not isinstance(nc, int) or nc < 0:
            raise ValueError(f"nonce count must be an integer ≥ 0, got {nc!r}")
        seconds = check_ttl(ttl, "advance_nonce_count")
        with self._errors("advance_nonce_count"):
            return bool(await self._advance_nc(keys=[nonce_key(nonce)], args=[nc, seconds]))

    # ------------------------------------------------------------------ live calls

    async def save_call(self, *, domain: str, call_id: str, fields: Mapping[str, str],
                        ttl: int) -> None:
        """Replace ``call:{domain}:{callId}`` with ``fields`` and (re)arm its TTL."""
        await self._replace_hash("save_call", call_key(domain, call_id), fields, ttl)

    async def remove_call(self, *, domain: str, call_id: str) -> None:
        with self._errors("remove_call"):
            await self._redis.delete(call_key(domain, call_id))

    async def get_call(self, *, domain: str, call_id: str) -> Mapping[str, str] | None:
        with self._errors("get_call"):
            fields = await self._redis.hgetall(call_key(domain, call_id))
        return fields or None

    # ------------------------------------------------------------------ trunk registrations

    async def save_regtrunk(self, *, domain: str, reg_id: str, fields: Mapping[str, str],
                            ttl: int) -> None:
        """Replace ``regtrunk:{domain}:{uuid}``; ``owner`` is always this instance."""
        data = {**fields, OWNER_FIELD: self._instance_id}
        await self._replace_hash("save_regtrunk", regtrunk_key(domain, reg_id), data, ttl)

    async def get_regtrunk(self, *, domain: str, reg_id: str) -> Mapping[str, str] | None:
        with self._errors("get_regtrunk"):
            fields = await self._redis.hgetall(regtrunk_key(domain, reg_id))
        return fields or None

    async def delete_regtrunk(self, *, domain: str, reg_id: str, owner: str) -> bool:
        """Delete the key only if its ``owner`` is ``owner`` (atomic; D-21)."""
        with self._errors("delete_regtrunk"):
            deleted = await self._delete_if_owner(keys=[regtrunk_key(domain, reg_id)],
                                                  args=[owner])
        return bool(deleted)

    # ------------------------------------------------------------------ helpers

    async def _replace_hash(self, op: str, key: str, fields: Mapping[str, str],
                            ttl: int) -> None:
        if not fields:
            raise ValueError(f"{op}: no fields to store")
        seconds = check_ttl(ttl, op)
        data = {str(k): str(v) for k, v in fields.items()}
        with self._errors(op):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(key)
                pipe.hset(key, mapping=data)
                pipe.expire(key, seconds)
                await pipe.execute()

    async def close(self) -> None:
        with self._errors("close"):
            await self._redis.aclose()
            await self._pool.aclose()


__all__ = ["RedisStore"]
