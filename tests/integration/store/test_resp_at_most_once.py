"""The RESP client sends a command at most once, against a real redis-server.

A loopback proxy between the client and Redis stands in for a failing network:
it can cut the client's connection right after Redis has run a command (the
reply is dropped), or forward commands and hold every reply back (a hung
Redis). Redis itself (``INFO commandstats``, key values) tells how often a
command really ran. The last test stops the redis-server process (SIGSTOP).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from engine.errors import StoreError
from engine.ports import Binding
from engine.store.redis import RedisStore
from engine.store.resp import RespClient, read_only
from tests.fixtures.procs import free_port, require_binary, running, send_signal, start_service

pytestmark = pytest.mark.integration


@dataclass
class Proxy:
    """Relays loopback TCP to Redis; ``cut_on`` cuts, ``hold`` hangs (see module doc)."""

    upstream: tuple[str, int]
    port: int = 0
    connections: int = 0
    cut_on: bytes | None = None  # next chunk containing this: forward, await reply, cut
    hold: bool = False  # forward commands, never the replies
    cuts: int = 0
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        replied = asyncio.Event()
        cut = asyncio.Event()

        async def to_redis() -> None:
            while data := await reader.read(65536):
                up_writer.write(data)
                await up_writer.drain()
                if self.cut_on is not None and self.cut_on in data:
                    self.cut_on = None
                    replied.clear()
                    await replied.wait()  # Redis has run it and answered
                    self.cuts += 1
                    cut.set()
                    return

        async def to_client() -> None:
            while data := await up_reader.read(65536):
                replied.set()
                if self.hold:
                    continue
                await asyncio.sleep(0)  # let to_redis see the reply first
                if cut.is_set():
                    return
                writer.write(data)
                await writer.drain()

        jobs = [asyncio.create_task(to_redis()), asyncio.create_task(to_client())]
        try:
            await asyncio.wait(jobs, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for job in jobs:
                job.cancel()
            transport = writer.transport
            transport.abort()  # a cut, not a polite close
            up_writer.close()

    async def start(self) -> None:
        def spawn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.create_task(self.handle(reader, writer))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

        self._server = await asyncio.start_server(spawn, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self._server.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


@pytest.fixture
async def proxy(redis_url: str) -> AsyncIterator[Proxy]:
    host, port = redis_url.removeprefix("redis://").split("/")[0].split(":")
    p = Proxy((host, int(port)))
    await p.start()
    yield p
    await p.stop()


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


async def calls(raw: aioredis.Redis, command: str) -> int:
    stats = await raw.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


async def test_script_cut_after_the_write_runs_once(proxy: Proxy,
                                                    raw: aioredis.Redis) -> None:
    """The nonce-count script reached Redis, the reply was lost: it is not run again
    (a second run would read as a replay and answer a good REGISTER with 401)."""
    store = RedisStore(f"redis://127.0.0.1:{proxy.port}/0", instance_id="x")
    try:
        assert await store.advance_nonce_count(nonce="warm", nc=1, ttl=60)  # script loaded
        await raw.config_resetstat()
        proxy.cut_on = b"EVALSHA"
        with pytest.raises(StoreError):
            await store.advance_nonce_count(nonce="n1", nc=1, ttl=60)
        assert proxy.cuts == 1
        assert await calls(raw, "evalsha") == 1
        assert await raw.get("nonce:n1") == "1"
        # the store goes on, on a new connection
        assert await store.advance_nonce_count(nonce="n1", nc=2, ttl=60)
        assert proxy.connections == 2
    finally:
        await store.close()


async def test_transaction_cut_after_the_write_is_not_resent(proxy: Proxy,
                                                             raw: aioredis.Redis) -> None:
    store = RedisStore(f"redis://127.0.0.1:{proxy.port}/0", instance_id="x")
    binding = Binding(contact="sip:u@h", proxy="sip:h:1", dialplan=None, codecs=None,
                      expires=60)
    try:
        await store.ping()
        await raw.config_resetstat()
        proxy.cut_on = b"MULTI"
        with pytest.raises(StoreError):
            await store.save_binding(domain="d", user="u", binding=binding)
        assert await calls(raw, "exec") == 1
        assert await raw.hget("client:d:u", "contact") == "sip:u@h"
    finally:
        await store.close()


async def test_read_cut_after_the_write_is_sent_again(proxy: Proxy,
                                                      raw: aioredis.Redis) -> None:
    """A read changes nothing: it is re-sent once, and the caller never notices."""
    store = RedisStore(f"redis://127.0.0.1:{proxy.port}/0", instance_id="x")
    try:
        await raw.hset("call:d:c1", mapping={"state": "up"})
        await store.ping()
        await raw.config_resetstat()
        proxy.cut_on = b"HGETALL"
        assert await store.get_call(domain="d", call_id="c1") == {"state": "up"}
        assert proxy.cuts == 1 and proxy.connections == 2
        assert await calls(raw, "hgetall") == 2
    finally:
        await store.close()


async def test_hung_redis_fails_within_the_timeout_and_sends_once(
        proxy: Proxy, raw: aioredis.Redis) -> None:
    """Commands reach Redis but no reply comes back: the caller's ``INCR`` fails within
    its 1 s timeout (not 2 s), and Redis ran it once."""
    client = RespClient(f"redis://127.0.0.1:{proxy.port}/0", command_timeout=1.0)
    try:
        await client.execute("PING")
        proxy.hold = True
        started = time.monotonic()
        with pytest.raises(StoreError):
            await client.execute("INCR", "counter")
        waited = time.monotonic() - started
        assert 0.9 <= waited < 1.2, waited
        await asyncio.sleep(0.5)  # a re-send, if any, would have arrived by now
        assert await raw.get("counter") == "1"
        # a read on a hung Redis is bounded the same way, re-send included
        started = time.monotonic()
        with pytest.raises(StoreError):
            await client.execute("GET", "counter")
        assert time.monotonic() - started < 1.2
    finally:
        await client.close()


async def test_idle_connection_closed_by_redis_is_replaced_before_the_write(
        redis_url: str, raw: aioredis.Redis) -> None:
    """Redis closes an idle client (``CLIENT KILL``, as its ``timeout`` setting would)
    while our loop is busy: the next write finds it closed and goes on a new connection
    — nothing was sent, so even a script is safe to send there."""
    store = RedisStore(redis_url, instance_id="x")
    try:
        assert await store.advance_nonce_count(nonce="k", nc=1, ttl=60)
        killer = socket.create_connection(("127.0.0.1", int(redis_url.split(":")[2]
                                                            .split("/", maxsplit=1)[0])))
        with killer:
            killer.sendall(b"CLIENT KILL TYPE normal SKIPME yes\r\n")
            killer.recv(64)
        time.sleep(0.2)  # block the loop: the close is here, connection_lost has not run
        assert await store.advance_nonce_count(nonce="k", nc=2, ttl=60)
        assert await raw.get("nonce:k") == "2"
    finally:
        await store.close()


async def test_stopped_redis_process_fails_within_the_timeout(tmp_path: Path) -> None:
    port = free_port()
    svc = start_service("redis-stop", [require_binary("redis-server"), "--port", str(port),
                                       "--bind", "127.0.0.1", "--save", "",
                                       "--appendonly", "no"], tmp_path)

    def up() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")

    client = RespClient(f"redis://127.0.0.1:{port}/0", command_timeout=1.0)
    with running(svc, up):
        try:
            await client.execute("PING")
            send_signal(svc.proc.pid, signal.SIGSTOP)
            try:
                started = time.monotonic()
                with pytest.raises(StoreError):
                    await client.execute("INCR", "counter")
                waited = time.monotonic() - started
                assert 0.9 <= waited < 1.2, waited
            finally:
                os.kill(svc.proc.pid, signal.SIGCONT)
            await asyncio.sleep(0.3)
            check = aioredis.from_url(f"redis://127.0.0.1:{port}/0", decode_responses=True)
            try:
                assert await check.get("counter") in (None, "1")  # at most once
            finally:
                await check.aclose()
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(svc.proc.pid, signal.SIGCONT)
            await client.close()


def test_only_reads_count_as_safe_to_send_twice() -> None:
    assert read_only([("GET", "k"), ("HGETALL", "h"), ("ttl", "h")])
    for command in ("INCR", "SET", "EVALSHA", "EVAL", "MULTI", "DEL", "EXPIRE", "HSET",
                    "FLUSHALL", "UNKNOWN"):
        assert not read_only([("GET", "k"), (command, "k")])
