"""The Redis work of one digest registration, as the engine's client pays for it.

Today a registration makes two round trips (README "Performance"): the nonce-count
script (``RedisStore.advance_nonce_count``, replay check) when the credentials are
verified, then the binding's ``MULTI``/``DEL``/``HSET``/``EXPIRE``/``EXEC``
(``RedisStore.save_binding``) once the machine decides to save. This prints the
engine-side CPU (``time.process_time``) and wall time of that pair against a single
Lua script doing both — same keys, same encodings, the replay check first and
nothing written on a replay — to tell whether merging them (which needs an action
that verifies and saves in one step, machines/registration.yaml and
engine/actions) would pay. ``--concurrent N`` keeps N registrations in flight (at
low rates each command wakes an idle Redis; under load they overlap).

    .venv/bin/python bench/bench_store.py [--n 5000] [--concurrent 1] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from harness import free_port, spawn

from engine.ports import Binding
from engine.store.codec import binding_fields, client_key, nonce_key
from engine.store.redis import RedisStore, _hash_args
from engine.store.resp import LuaScript

# KEYS[1] nonce key, KEYS[2] client key; ARGV[1] nc, ARGV[2] nonce TTL, ARGV[3] binding
# TTL, ARGV[4..] the binding's field/value pairs. 0 = replay (nothing written).
_ADVANCE_AND_SAVE = """
local seen = tonumber(redis.call('GET', KEYS[1]) or '-1')
local nc = tonumber(ARGV[1])
if nc <= seen then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], unpack(ARGV, 4))
redis.call('EXPIRE', KEYS[2], ARGV[3])
return 1
"""

BINDING = Binding(contact="sip:u00001@127.0.0.1:5072;transport=UDP", proxy="",
                  dialplan={"*": "http://127.0.0.1:9/call"}, codecs=["PCMU"],
                  transport="udp", flow=None, callid="1-4521@127.0.0.1", cseq=2,
                  user_agent="SIPp", expires=300)


async def measure(name: str, one: Callable[[int], Awaitable[None]], n: int,
                  concurrent: int, ids: itertools.count) -> None:
    async def worker(count: int) -> None:
        for _ in range(count):
            await one(next(ids))

    for _ in range(2):  # first pass warms the connection and the allocator
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*[worker(n // concurrent) for _ in range(concurrent)])
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    done = n // concurrent * concurrent
    print(f"  {name:34s} engine CPU {cpu / done * 1e6:6.1f} µs, "
          f"wall {wall / done * 1e6:6.1f} µs per registration", flush=True)


async def run(n: int, concurrent: int, rounds: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="bench-store-"))
    port = free_port()
    redis = spawn("redis", ["redis-server", "--bind", "127.0.0.1", "--port", str(port),
                            "--save", "", "--appendonly", "no"], workdir)
    store = RedisStore(f"redis://127.0.0.1:{port}/0", instance_id="bench")
    try:
        for _ in range(50):
            try:
                await store.ping()
                break
            except Exception:
                await asyncio.sleep(0.1)
        both = LuaScript(store.client, _ADVANCE_AND_SAVE)
        ids = itertools.count()

        async def two_round_trips(i: int) -> None:
            assert await store.advance_nonce_count(nonce=f"a{i}", nc=1, ttl=360)
            await store.save_binding(domain="pbx.bench", user=f"u{i}", binding=BINDING)

        async def one_script(i: int) -> None:
            assert await both(keys=[nonce_key(f"b{i}"), client_key("pbx.bench", f"v{i}")],
                              args=[1, 360, 300, *_hash_args(binding_fields(BINDING))])

        # the merged script must leave what today's pair leaves (spec §9 keys/encodings)
        await two_round_trips(-1)
        await one_script(-1)
        c = store.client
        assert await c.execute("HGETALL", client_key("pbx.bench", "u-1")) == \
            await c.execute("HGETALL", client_key("pbx.bench", "v-1"))
        assert await c.execute("GET", nonce_key("a-1")) == \
            await c.execute("GET", nonce_key("b-1")) == "1"
        assert not await both(keys=[nonce_key("b-1"), client_key("pbx.bench", "w-1")],
                              args=[1, 360, 300, "contact", "x"])  # a replay writes nothing
        assert not await c.execute("EXISTS", client_key("pbx.bench", "w-1"))

        print(f"{n} registrations, {concurrent} in flight, Redis on TCP loopback:")
        for _ in range(rounds):  # alternated: the machine's load drifts between runs
            await measure("nonce script + MULTI/EXEC (today)", two_round_trips, n,
                          concurrent, ids)
            await measure("one script (advance + save)", one_script, n, concurrent, ids)
    finally:
        await store.close()
        redis.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--concurrent", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    try:
        import uvloop
        uvloop.install()  # what the daemon runs on
    except ImportError:
        pass
    asyncio.run(run(args.n, args.concurrent, args.rounds))


if __name__ == "__main__":
    main()
