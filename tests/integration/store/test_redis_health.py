"""RedisStore's health reporting against a real redis-server that the test hangs
(SIGSTOP), resumes and kills: Redis is marked down by its PINGs and by real commands,
every operation then fails at once, and it comes back by itself."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from engine.errors import StoreError
from engine.health import REDIS, Health
from engine.store.redis import RedisStore
from tests.fixtures.procs import (
    Service,
    free_port,
    require_binary,
    send_signal,
    start_service,
    wait_until,
)

pytestmark = [pytest.mark.integration]


def _ping(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
        s.sendall(b"PING\r\n")
        return s.recv(16).startswith(b"+PONG")


def _start(port: int, workdir: Path) -> Service:
    svc = start_service("redis-health-store",
                        [require_binary("redis-server"), "--bind", "127.0.0.1", "--port",
                         str(port), "--save", "", "--appendonly", "no"], workdir)
    wait_until(lambda: _ping(port), 15, "redis-server")
    return svc


@pytest.fixture
def redis_proc(tmp_path: Path) -> Iterator[tuple[int, list[Service]]]:
    port = free_port()
    services = [_start(port, tmp_path)]
    yield port, services
    for svc in services:
        if svc.alive():
            os.kill(svc.proc.pid, signal.SIGCONT)
        svc.stop()


async def _until(check: Callable[[], bool], within: float) -> None:
    end = time.monotonic() + within
    while not check():
        assert time.monotonic() < end, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_hung_redis_is_marked_down_fails_fast_and_recovers(
        redis_proc: tuple[int, list[Service]]) -> None:
    port, services = redis_proc
    health = Health()
    store = RedisStore(f"redis://127.0.0.1:{port}/0", instance_id="h")
    try:
        await store.ping()
        store.watch_health(health, interval=0.1, timeout=0.3)
        send_signal(services[0].proc.pid, signal.SIGSTOP)
        await _until(lambda: health.is_down(REDIS), 2.0)
        assert "0.3s" in (health.dependency(REDIS).reason or "")
        started = time.monotonic()
        with pytest.raises(StoreError, match="redis unavailable"):
            await store.get_call(domain="d", call_id="c")
        assert time.monotonic() - started < 0.05  # no wait for a timeout
        os.kill(services[0].proc.pid, signal.SIGCONT)
        await _until(lambda: health.dependency(REDIS).up is True, 2.0)
        await store.save_call(domain="d", call_id="c", fields={"a": "1"}, ttl=10)
        assert await store.get_call(domain="d", call_id="c") == {"a": "1"}
    finally:
        await store.close()


async def test_a_refused_command_marks_redis_down_at_once_and_a_restart_clears_it(
        tmp_path: Path, redis_proc: tuple[int, list[Service]]) -> None:
    port, services = redis_proc
    health = Health()
    store = RedisStore(f"redis://127.0.0.1:{port}/0", instance_id="h")
    try:
        await store.ping()
        store.watch_health(health, interval=5, timeout=0.5)  # traffic first, PINGs later
        services[0].proc.kill()
        services[0].proc.wait(5)
        with pytest.raises(StoreError):
            await store.get_call(domain="d", call_id="c")
        assert health.is_down(REDIS)
        await asyncio.sleep(0.2)  # the poke after the failure re-checked: still down
        assert health.is_down(REDIS)
        services.append(_start(port, tmp_path))
        await _until(lambda: health.dependency(REDIS).up is True, 7.0)  # the next PING
        await store.save_call(domain="d", call_id="c", fields={"a": "1"}, ttl=10)
    finally:
        await store.close()
