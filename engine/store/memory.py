"""In-memory ``StateStore`` for unit tests and ``dragonpbx simulate`` — never production.

It keeps the same keys and hash encodings as ``RedisStore`` (``engine.store.codec``)
so a test can assert on exactly what Redis would hold (``hash()``/``ttl()``),
and honours TTLs against an injected clock (``engine.clock.FakeClock`` in
tests), expiring keys lazily on access like Redis does. Setting ``down = True``
makes every operation raise ``StoreError``, to exercise outage paths.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from engine.clock import LoopClock
from engine.errors import StoreError
from engine.ports import Binding, Clock
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


@dataclass
class _Entry:
    fields: dict[str, str] = field(default_factory=dict)
    value: str | None = None  # string keys (nonce counts)
    expires_at: float | None = None


class MemoryStore:
    """Dict-backed ``StateStore`` with Redis semantics for TTL, atomicity and ownership."""

    def __init__(self, *, clock: Clock | None = None, instance_id: str = "memory") -> None:
        self._clock: Clock = clock or LoopClock()
        self._instance_id = instance_id
        self._data: dict[str, _Entry] = {}
        self.down = False
        self.closed = False

    @property
    def instance_id(self) -> str:
        return self._instance_id

    # ------------------------------------------------------------------ Redis-like core

    def _check(self, op: str) -> None:
        if self.down:
            raise StoreError(f"memory store {op} failed: store is down")
        if self.closed:
            raise StoreError(f"memory store {op} failed: store is closed")

    def _live(self, key: str) -> _Entry | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        if entry.expires_at is not None and self._clock.monotonic() >= entry.expires_at:
            del self._data[key]
            return None
        return entry

    def _put_hash(self, key: str, fields: Mapping[str, str], ttl: int) -> None:
        self._data[key] = _Entry(fields=dict(fields),
                                 expires_at=self._clock.monotonic() + ttl)

    def keys(self) -> list[str]:
        """Live keys (for assertions)."""
        return [k for k in list(self._data) if self._live(k) is not None]

    def hash(self, key: str) -> dict[str, str] | None:
        """The raw hash at ``key`` as Redis would hold it (for assertions)."""
        entry = self._live(key)
        return dict(entry.fields) if entry is not None and entry.value is None else None

    def ttl(self, key: str) -> int:
        """Redis ``TTL`` semantics: seconds rounded to nearest, -1 no expiry, -2 no key."""
        entry = self._live(key)
        if entry is None:
            return -2
        if entry.expires_at is None:
            return -1
        ms = (entry.expires_at - self._clock.monotonic()) * 1000
        return int((ms + 500) // 1000)

    # ------------------------------------------------------------------ StateStore

    async def ping(self) -> None:
        self._check("ping")

    async def save_binding(self, *, domain: str, user: str, binding: Binding) -> None:
        ttl = check_ttl(binding.expires, "save_binding")
        self._check("save_binding")
        self._put_hash(client_key(domain, user), binding_fields(binding), ttl)

    async def get_binding(self, *, domain: str, user: str) -> tuple[Binding, int] | None:
        self._check("get_binding")
        key = client_key(domain, user)
        fields = self.hash(key)
        if not fields:
            return None
        return binding_from_fields(fields), self.ttl(key)

    async def remove_binding(self, *, domain: str, user: str) -> bool:
        self._check("remove_binding")
        key = client_key(domain, user)
        return self._live(key) is not None and self._data.pop(key, None) is not None

    async def advance_nonce_count(self, *, nonce: str, nc: int, ttl: int) -> bool:
        if isinstance(nc, bool) or not isinstance(nc, int) or nc < 0:
            raise ValueError(f"nonce count must be an integer ≥ 0, got {nc!r}")
        seconds = check_ttl(ttl, "advance_nonce_count")
        self._check("advance_nonce_count")
        key = nonce_key(nonce)
        entry = self._live(key)
        seen = int(entry.value) if entry is not None and entry.value is not None else -1
        if nc <= seen:
            return False
        self._data[key] = _Entry(value=str(nc), expires_at=self._clock.monotonic() + seconds)
        return True

    async def save_call(self, *, domain: str, call_id: str, fields: Mapping[str, str],
                        ttl: int) -> None:
        self._replace("save_call", call_key(domain, call_id), fields, ttl)

    async def remove_call(self, *, domain: str, call_id: str) -> None:
        self._check("remove_call")
        self._data.pop(call_key(domain, call_id), None)

    async def get_call(self, *, domain: str, call_id: str) -> Mapping[str, str] | None:
        self._check("get_call")
        return self.hash(call_key(domain, call_id)) or None

    async def save_regtrunk(self, *, domain: str, reg_id: str, fields: Mapping[str, str],
                            ttl: int) -> None:
        self._replace("save_regtrunk", regtrunk_key(domain, reg_id),
                      {**fields, OWNER_FIELD: self._instance_id}, ttl)

    async def get_regtrunk(self, *, domain: str, reg_id: str) -> Mapping[str, str] | None:
        self._check("get_regtrunk")
        return self.hash(regtrunk_key(domain, reg_id)) or None

    async def delete_regtrunk(self, *, domain: str, reg_id: str, owner: str) -> bool:
        self._check("delete_regtrunk")
        key = regtrunk_key(domain, reg_id)
        fields = self.hash(key)
        if fields is None or fields.get(OWNER_FIELD) != owner:
            return False
        del self._data[key]
        return True

    def _replace(self, op: str, key: str, fields: Mapping[str, str], ttl: int) -> None:
        if not fields:
            raise ValueError(f"{op}: no fields to store")
        seconds = check_ttl(ttl, op)
        self._check(op)
        self._put_hash(key, {str(k): str(v) for k, v in fields.items()}, seconds)

    async def close(self) -> None:
        self.closed = True


__all__ = ["MemoryStore"]
