"""The leak-check counters read the tables they name: a renamed attribute would make a
counter read -1 (or 0 for ever) and the memory tests would stop seeing leaks."""

from __future__ import annotations

import asyncio

from engine.hooks.client import HookClient
from engine.sizes import hooks_sizes, sip_sizes
from engine.transport.port import EmbeddedSipPort


def test_every_sip_counter_reads_its_table() -> None:
    sizes = sip_sizes(EmbeddedSipPort(host="127.0.0.1", port=0))
    assert all(v == 0 for v in sizes.values()), sizes


def test_hook_counters_see_the_pools() -> None:
    async def run() -> dict[str, int]:
        client = HookClient(user_agent="t")
        pool, target = client._route("http://127.0.0.1:9/x")
        pool._open[target.key] = 2
        try:
            return hooks_sizes(client)
        finally:
            pool._open.clear()
            await client.close()

    assert asyncio.run(run())["hook_conns_open"] == 2
