"""State stores: ``engine.store.redis.RedisStore`` (production) and
``engine.store.memory.MemoryStore`` (tests, simulation).

Both implement ``engine.ports.StateStore`` with the same keys and encodings
(``engine.store.codec``). The composition root builds ``RedisStore.from_settings``.
Deliberately no re-exports: importing the pure codec must not pull in the Redis driver.
"""
