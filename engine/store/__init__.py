"""State stores: ``RedisStore`` (production) and ``MemoryStore`` (tests, simulation).

Both implement ``engine.ports.StateStore`` with the same keys and encodings
(``engine.store.codec``). The composition root builds ``RedisStore.from_settings``.
"""

from engine.store.memory import MemoryStore
from engine.store.redis import RedisStore

__all__ = ["MemoryStore", "RedisStore"]
