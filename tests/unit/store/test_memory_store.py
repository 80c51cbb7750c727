"""MemoryStore: StateStore semantics with TTLs on a fake clock."""

from __future__ import annotations

import pytest

from engine.clock import FakeClock
from engine.errors import StoreError
from engine.ports import Binding, StateStore
from engine.store.codec import binding_fields, binding_from_fields
from engine.store.memory import MemoryStore


def make_binding(**over: object) -> Binding:
    base: dict[str, object] = dict(
        contact="sip:1000@192.0.2.5:5062;transport=tcp", proxy="sip:192.0.2.5:5062",
        dialplan={"1*": "http://h/c", "*": {"callHook": "file:x.json", "statusHook": "http://s"}},
        codecs=["PCMU", "PCMA"], transport="tcp", flow="flow-1", callid="cid@x", cseq=7,
        user_agent="Phone/1.0", expires=300,
    )
    base.update(over)
    return Binding(**base)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(clock: FakeClock) -> MemoryStore:
    return MemoryStore(clock=clock, instance_id="pbx-a")


def test_implements_protocol(store: MemoryStore) -> None:
    assert isinstance(store, StateStore)


async def test_binding_round_trip_and_exact_fields(store: MemoryStore) -> None:
    binding = make_binding()
    await store.save_binding(domain="d.example", user="1000", binding=binding)
    assert await store.get_binding(domain="d.example", user="1000") == (binding, 300)
    assert store.hash("client:d.example:1000") == {
        "contact": "sip:1000@192.0.2.5:5062;transport=tcp",
        "proxy": "sip:192.0.2.5:5062",
        "dialplan": '{"1*":"http://h/c","*":{"callHook":"file:x.json","statusHook":"http://s"}}',
        "codecs": '["PCMU","PCMA"]',
        "transport": "tcp", "callid": "cid@x", "cseq": "7", "user_agent": "Phone/1.0",
        "expires": "300", "flow": "flow-1",
    }


async def test_binding_ttl_counts_down_and_expires(store: MemoryStore, clock: FakeClock) -> None:
    await store.save_binding(domain="d", user="u", binding=make_binding(expires=60))
    clock.advance(20.4)
    found = await store.get_binding(domain="d", user="u")
    assert found is not None
    assert found[1] == 40
    clock.advance(39.5)
    assert store.ttl("client:d:u") == 0  # rounded to nearest, like Redis
    clock.advance(0.1)
    assert await store.get_binding(domain="d", user="u") is None
    assert store.ttl("client:d:u") == -2
    assert store.keys() == []


async def test_overwrite_drops_stale_fields(store: MemoryStore) -> None:
    await store.save_binding(domain="d", user="u", binding=make_binding(flow="old-flow"))
    await store.save_binding(domain="d", user="u", binding=make_binding(flow=None, expires=30))
    fields = store.hash("client:d:u")
    assert fields is not None
    assert "flow" not in fields
    assert store.ttl("client:d:u") == 30


async def test_remove_binding(store: MemoryStore) -> None:
    assert not await store.remove_binding(domain="d", user="u")
    await store.save_binding(domain="d", user="u", binding=make_binding())
    assert await store.remove_binding(domain="d", user="u")
    assert await store.get_binding(domain="d", user="u") is None


@pytest.mark.parametrize("expires", [0, -5])
async def test_binding_needs_positive_expiry(store: MemoryStore, expires: int) -> None:
    with pytest.raises(ValueError):
        await store.save_binding(domain="d", user="u", binding=make_binding(expires=expires))
    assert store.keys() == []


async def test_nonce_count_replay_detection(store: MemoryStore, clock: FakeClock) -> None:
    assert await store.advance_nonce_count(nonce="n1", nc=1, ttl=300)
    assert not await store.advance_nonce_count(nonce="n1", nc=1, ttl=300)  # replay
    assert await store.advance_nonce_count(nonce="n1", nc=3, ttl=300)
    assert not await store.advance_nonce_count(nonce="n1", nc=2, ttl=300)  # older
    assert await store.advance_nonce_count(nonce="n2", nc=1, ttl=300)  # independent nonce
    assert store.ttl("nonce:n1") == 300
    clock.advance(301)
    assert await store.advance_nonce_count(nonce="n1", nc=1, ttl=300)  # forgotten after TTL
    with pytest.raises(ValueError):
        await store.advance_nonce_count(nonce="n1", nc=-1, ttl=300)


async def test_calls_with_ttl(store: MemoryStore, clock: FakeClock) -> None:
    await store.save_call(domain="d", call_id="c1", fields={"state": "ringing", "from": "1000"},
                          ttl=10)
    assert await store.get_call(domain="d", call_id="c1") == {"state": "ringing", "from": "1000"}
    await store.save_call(domain="d", call_id="c1", fields={"state": "up"}, ttl=10)
    assert store.hash("call:d:c1") == {"state": "up"}
    clock.advance(10)
    assert await store.get_call(domain="d", call_id="c1") is None
    await store.save_call(domain="d", call_id="c2", fields={"state": "up"}, ttl=10)
    await store.remove_call(domain="d", call_id="c2")
    assert store.keys() == []


async def test_regtrunk_owner_only_delete(store: MemoryStore) -> None:
    other = MemoryStore(clock=FakeClock(), instance_id="pbx-b")
    other._data = store._data  # two instances sharing one "Redis"
    await store.save_regtrunk(domain="d", reg_id="u-1", fields={"trunkID": "7"}, ttl=60)
    assert await store.get_regtrunk(domain="d", reg_id="u-1") == {"trunkID": "7",
                                                                  "owner": "pbx-a"}
    assert not await other.delete_regtrunk(domain="d", reg_id="u-1", owner="pbx-b")
    assert await store.get_regtrunk(domain="d", reg_id="u-1") is not None
    assert await store.delete_regtrunk(domain="d", reg_id="u-1", owner="pbx-a")
    assert await store.get_regtrunk(domain="d", reg_id="u-1") is None
    assert not await store.delete_regtrunk(domain="d", reg_id="u-1", owner="pbx-a")


async def test_owner_field_cannot_be_spoofed_by_caller(store: MemoryStore) -> None:
    await store.save_regtrunk(domain="d", reg_id="u", fields={"trunkID": "1", "owner": "x"},
                              ttl=60)
    assert (await store.get_regtrunk(domain="d", reg_id="u") or {})["owner"] == "pbx-a"


async def test_down_store_raises_store_error(store: MemoryStore) -> None:
    store.down = True
    with pytest.raises(StoreError):
        await store.ping()
    with pytest.raises(StoreError):
        await store.save_binding(domain="d", user="u", binding=make_binding())
    with pytest.raises(StoreError):
        await store.advance_nonce_count(nonce="n", nc=1, ttl=10)
    store.down = False
    await store.ping()
    await store.close()
    with pytest.raises(StoreError):
        await store.ping()


async def test_default_clock_is_the_loop() -> None:
    store = MemoryStore()
    await store.save_call(domain="d", call_id="c", fields={"a": "b"}, ttl=5)
    assert store.ttl("call:d:c") == 5


def test_codec_reads_a_seed_written_hash() -> None:
    seed = {"contact": "sip:1000@10.0.0.2:5060", "proxy": "sip:10.0.0.2:5060",
            "dialplan": '{"*":"http://h"}', "codecs": '["G722"]'}
    assert binding_from_fields(seed) == Binding(
        contact="sip:1000@10.0.0.2:5060", proxy="sip:10.0.0.2:5060",
        dialplan={"*": "http://h"}, codecs=["G722"])


def test_codec_tolerates_bad_json_and_numbers() -> None:
    b = binding_from_fields({"contact": "c", "proxy": "p", "dialplan": "{oops",
                             "codecs": "null", "cseq": "x"})
    assert (b.dialplan, b.codecs, b.cseq) == (None, None, 0)


def test_codec_seed_fields_come_first_in_js_form() -> None:
    fields = binding_fields(make_binding(dialplan={"é": "x"}, codecs=None, flow=None))
    assert list(fields)[:4] == ["contact", "proxy", "dialplan", "codecs"]
    assert fields["dialplan"] == '{"é":"x"}'
    assert fields["codecs"] == "null"
