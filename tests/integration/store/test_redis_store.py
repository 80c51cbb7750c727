"""RedisStore against a real redis-server (the session fixture, flushed per test)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from engine.errors import StoreError
from engine.ports import Binding, StateStore
from engine.store.redis import RedisStore
from tests.fixtures.procs import free_port, require_binary, running, start_service

pytestmark = pytest.mark.integration


def make_binding(**over: object) -> Binding:
    base: dict[str, object] = dict(
        contact="sip:1000@192.0.2.5:5062;transport=tcp;ob", proxy="sip:192.0.2.5:5062",
        dialplan={"1???": "http://hooks/call", "*": {"callHook": "file:x.json",
                                                     "statusHook": "http://hooks/s"}},
        codecs=["G722", "PCMA", "DIRECT"], transport="tcp", flow="tcp:192.0.2.5:5062#3",
        callid="a84b4c76e66710", cseq=314159, user_agent="Phone/2.1 (ü)", expires=3600,
    )
    base.update(over)
    return Binding(**base)  # type: ignore[arg-type]


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_url, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisStore]:
    s = RedisStore(redis_url, instance_id="pbx-a")
    try:
        yield s
    finally:
        await s.close()


async def test_implements_protocol_and_pings(store: RedisStore) -> None:
    assert isinstance(store, StateStore)
    await store.ping()


async def test_concurrent_operations_share_one_pipelined_connection(
        store: RedisStore, raw: aioredis.Redis) -> None:
    """Hundreds of callers at once: every reply reaches its own caller (FIFO pipelining),
    and MULTI/EXEC blocks of different callers never interleave."""
    # The session's Redis may hold other clients (a daemon an e2e test left running):
    # count only the connections opened during this test, the store's (it connects
    # lazily) and not our own.
    before = {c["id"] for c in await raw.client_list()}

    async def one(i: int) -> None:
        b = Binding(contact=f"sip:u{i}@h", proxy="sip:h:1", dialplan={"n": i}, codecs=["PCMU"],
                    expires=60 + i)
        await store.save_binding(domain="d", user=f"u{i}", binding=b)
        got = await store.get_binding(domain="d", user=f"u{i}")
        assert got is not None and got[0].dialplan == {"n": i} and got[1] <= 60 + i
        assert await store.advance_nonce_count(nonce=f"n{i}", nc=1, ttl=30)

    await asyncio.gather(*(one(i) for i in range(300)))
    opened = [c for c in await raw.client_list() if c["id"] not in before]
    assert len(opened) == 1, opened


async def test_password_and_database_from_the_url(tmp_path: Path) -> None:
    from tests.fixtures.procs import free_port, require_binary, running, start_service

    port = free_port()
    svc = start_service("redis-auth", [require_binary("redis-server"), "--port", str(port),
                                       "--bind", "127.0.0.1", "--save", "", "--requirepass",
                                       "s3cret"], tmp_path)

    def up() -> bool:
        import socket

        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith((b"-NOAUTH", b"+PONG"))

    with running(svc, up):
        bad = RedisStore(f"redis://:wrong@127.0.0.1:{port}/0", instance_id="x")
        with pytest.raises(StoreError):
            await bad.ping()
        await bad.close()
        good = RedisStore(f"redis://:s3cret@127.0.0.1:{port}/3", instance_id="x")
        try:
            await good.save_binding(domain="d", user="u", binding=Binding(
                contact="sip:u@h", proxy="sip:h:1", dialplan=None, codecs=None, expires=30))
            check = aioredis.from_url(f"redis://:s3cret@127.0.0.1:{port}/3")
            assert await check.exists("client:d:u") == 1
            await check.aclose()
        finally:
            await good.close()


async def test_binding_exact_hash_fields_json_text_and_ttl(store: RedisStore,
                                                          raw: aioredis.Redis) -> None:
    await store.save_binding(domain="pbx.example", user="1000", binding=make_binding())
    assert await raw.hgetall("client:pbx.example:1000") == {
        "contact": "sip:1000@192.0.2.5:5062;transport=tcp;ob",
        "proxy": "sip:192.0.2.5:5062",
        "dialplan": '{"1???":"http://hooks/call","*":{"callHook":"file:x.json",'
                    '"statusHook":"http://hooks/s"}}',
        "codecs": '["G722","PCMA","DIRECT"]',
        "transport": "tcp", "flow": "tcp:192.0.2.5:5062#3", "callid": "a84b4c76e66710",
        "cseq": "314159", "user_agent": "Phone/2.1 (ü)", "expires": "3600",
    }
    assert 3599 <= await raw.ttl("client:pbx.example:1000") <= 3600
    # the seed's readers JSON.parse these fields
    assert json.loads(await raw.hget("client:pbx.example:1000", "codecs")) == [
        "G722", "PCMA", "DIRECT"]


async def test_binding_written_in_one_multi_exec(store: RedisStore, raw: aioredis.Redis) -> None:
    await store.ping()
    await raw.config_resetstat()
    await store.save_binding(domain="d", user="u", binding=make_binding())
    stats = await raw.info("commandstats")
    calls = {k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items()}
    assert calls.get("multi") == 1
    assert calls.get("exec") == 1
    assert calls.get("del") == 1 and calls.get("hset") == 1 and calls.get("expire") == 1


async def test_get_binding_round_trip_with_ttl(store: RedisStore) -> None:
    binding = make_binding(expires=120)
    await store.save_binding(domain="d", user="1000", binding=binding)
    found = await store.get_binding(domain="d", user="1000")
    assert found is not None
    got, ttl = found
    assert got == binding
    assert 119 <= ttl <= 120
    assert await store.get_binding(domain="d", user="2000") is None


async def test_get_binding_reads_a_seed_written_hash(store: RedisStore,
                                                     raw: aioredis.Redis) -> None:
    await raw.hset("client:d:9", mapping={"contact": "sip:9@h", "proxy": "sip:h:5060",
                                          "dialplan": '{"*":"http://x"}', "codecs": '["PCMU"]'})
    found = await store.get_binding(domain="d", user="9")
    assert found is not None
    assert found[0] == Binding(contact="sip:9@h", proxy="sip:h:5060", dialplan={"*": "http://x"},
                               codecs=["PCMU"])
    assert found[1] == -1  # no expiry on that key


async def test_overwrite_drops_stale_fields(store: RedisStore, raw: aioredis.Redis) -> None:
    await store.save_binding(domain="d", user="u", binding=make_binding(flow="old"))
    await raw.hset("client:d:u", "foreign", "x")
    await store.save_binding(domain="d", user="u", binding=make_binding(flow=None, expires=60))
    fields = await raw.hgetall("client:d:u")
    assert "flow" not in fields
    assert "foreign" not in fields
    assert fields["expires"] == "60"
    assert 59 <= await raw.ttl("client:d:u") <= 60


async def test_remove_binding(store: RedisStore, raw: aioredis.Redis) -> None:
    await store.save_binding(domain="d", user="u", binding=make_binding())
    assert await store.remove_binding(domain="d", user="u")
    assert not await raw.exists("client:d:u")
    assert not await store.remove_binding(domain="d", user="u")


async def test_binding_expiry_must_be_positive(store: RedisStore, raw: aioredis.Redis) -> None:
    with pytest.raises(ValueError):
        await store.save_binding(domain="d", user="u", binding=make_binding(expires=0))
    assert not await raw.exists("client:d:u")


async def test_nonce_count_replay_detection(store: RedisStore, raw: aioredis.Redis) -> None:
    assert await store.advance_nonce_count(nonce="abc", nc=1, ttl=300)
    assert not await store.advance_nonce_count(nonce="abc", nc=1, ttl=300)
    assert await store.advance_nonce_count(nonce="abc", nc=2, ttl=300)
    assert not await store.advance_nonce_count(nonce="abc", nc=1, ttl=300)
    assert await raw.get("nonce:abc") == "2"
    assert 299 <= await raw.ttl("nonce:abc") <= 300
    assert await store.advance_nonce_count(nonce="other", nc=1, ttl=300)


async def test_nonce_count_concurrent_replays_admit_exactly_one(redis_url: str) -> None:
    # Two engine instances (two pools) race the same captured request 2 × 25 times.
    a = RedisStore(redis_url, instance_id="a")
    b = RedisStore(redis_url, instance_id="b")
    try:
        results = await asyncio.gather(*(
            s.advance_nonce_count(nonce="race", nc=5, ttl=60)
            for _ in range(25) for s in (a, b)))
        assert results.count(True) == 1
        # Arrival order of concurrent counts is not defined, but the highest always
        # wins and is what the other instance then sees.
        counts = await asyncio.gather(*(
            a.advance_nonce_count(nonce="seq", nc=n, ttl=60) for n in range(1, 41)))
        assert counts[-1] is True
        assert not await b.advance_nonce_count(nonce="seq", nc=40, ttl=60)
        assert await b.advance_nonce_count(nonce="seq", nc=41, ttl=60)
    finally:
        await a.close()
        await b.close()


async def test_call_save_remove_with_ttl(store: RedisStore, raw: aioredis.Redis) -> None:
    await store.save_call(domain="d", call_id="c@h", fields={"state": "ringing", "from": "1000"},
                          ttl=90)
    assert await raw.hgetall("call:d:c@h") == {"state": "ringing", "from": "1000"}
    assert 89 <= await raw.ttl("call:d:c@h") <= 90
    await store.save_call(domain="d", call_id="c@h", fields={"state": "up"}, ttl=30)
    assert await store.get_call(domain="d", call_id="c@h") == {"state": "up"}
    assert 29 <= await raw.ttl("call:d:c@h") <= 30
    await store.remove_call(domain="d", call_id="c@h")
    assert not await raw.exists("call:d:c@h")
    assert await store.get_call(domain="d", call_id="c@h") is None


async def test_regtrunk_owner_field_and_owner_only_delete(redis_url: str,
                                                          raw: aioredis.Redis) -> None:
    a = RedisStore(redis_url, instance_id="pbx-a")
    b = RedisStore(redis_url, instance_id="pbx-b")
    try:
        await a.save_regtrunk(domain="d", reg_id="0f8f", fields={"trunkID": "7",
                                                                 "status": "registered"}, ttl=60)
        assert await raw.hgetall("regtrunk:d:0f8f") == {"trunkID": "7", "status": "registered",
                                                         "owner": "pbx-a"}
        assert 59 <= await raw.ttl("regtrunk:d:0f8f") <= 60
        assert await b.get_regtrunk(domain="d", reg_id="0f8f") == {
            "trunkID": "7", "status": "registered", "owner": "pbx-a"}
        assert not await b.delete_regtrunk(domain="d", reg_id="0f8f", owner="pbx-b")
        assert await raw.exists("regtrunk:d:0f8f")
        assert await a.delete_regtrunk(domain="d", reg_id="0f8f", owner="pbx-a")
        assert not await raw.exists("regtrunk:d:0f8f")
        assert not await a.delete_regtrunk(domain="d", reg_id="0f8f", owner="pbx-a")
        # a seed-written key has no owner: nobody deletes it by owner
        await raw.hset("regtrunk:d:seed", "trunkID", "1")
        assert not await a.delete_regtrunk(domain="d", reg_id="seed", owner="pbx-a")
        assert await a.get_regtrunk(domain="d", reg_id="missing") is None
    finally:
        await a.close()
        await b.close()


async def test_unreachable_redis_fails_fast_with_store_error() -> None:
    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", instance_id="x")
    try:
        started = time.monotonic()
        with pytest.raises(StoreError):
            await store.save_binding(domain="d", user="u", binding=make_binding())
        with pytest.raises(StoreError):
            await store.get_binding(domain="d", user="u")
        with pytest.raises(StoreError):
            await store.advance_nonce_count(nonce="n", nc=1, ttl=10)
        assert time.monotonic() - started < 2.0
    finally:
        await store.close()


async def test_blackholed_redis_is_bounded_by_connect_timeout() -> None:
    # 192.0.2.0/24 (TEST-NET-1) is never routed: either an immediate error or a
    # connect timeout, never a hang.
    store = RedisStore("redis://192.0.2.1:6379/0", instance_id="x", connect_timeout=0.3,
                       socket_timeout=0.3)
    try:
        started = time.monotonic()
        with pytest.raises(StoreError):
            await store.ping()
        assert time.monotonic() - started < 1.5
    finally:
        await store.close()


async def test_killed_redis_gives_store_error_quickly(tmp_path: Path) -> None:
    binary = require_binary("redis-server")
    port = free_port()
    svc = start_service("redis-kill", [binary, "--bind", "127.0.0.1", "--port", str(port),
                                       "--save", "", "--appendonly", "no",
                                       "--requirepass", "pa:ss/w@rd"], tmp_path)
    from urllib.parse import quote

    url = f"redis://:{quote('pa:ss/w@rd', safe='')}@127.0.0.1:{port}/0"

    def ready() -> bool:
        import socket

        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return bool(s.recv(64))

    store = RedisStore(url, instance_id="x")
    wrong = RedisStore(f"redis://:nope@127.0.0.1:{port}/0", instance_id="y")
    try:
        with running(svc, ready):
            await store.ping()  # password from the URL works
            await store.save_call(domain="d", call_id="c", fields={"a": "1"}, ttl=10)
            with pytest.raises(StoreError):
                await wrong.ping()
            svc.stop()
            started = time.monotonic()
            with pytest.raises(StoreError):
                await store.save_call(domain="d", call_id="c", fields={"a": "2"}, ttl=10)
            with pytest.raises(StoreError):
                await store.get_binding(domain="d", user="u")
            assert time.monotonic() - started < 2.0
    finally:
        await store.close()
        await wrong.close()


def test_bad_url_is_store_error() -> None:
    with pytest.raises(StoreError):
        RedisStore("http://nope", instance_id="x")
