"""The asyncio ng client against a scripted UDP peer and against real rtpengine daemons."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from engine.rtpengine.client import DOWN, UP, RtpEngineClient
from engine.rtpengine.errors import (
    MediaTimeout,
    MediaUnavailable,
    NgSdpError,
    NgUnknownCall,
)
from engine.rtpengine.ng import ResendPolicy, bencode, split_cookie
from engine.rtpengine.selection import rank
from tests.fixtures.rtpengine import RtpEngine

pytestmark = pytest.mark.integration

FAST = ResendPolicy((0.1, 0.1, 0.1))

SDP = (
    "v=0\r\no=alice 1 1 IN IP4 127.0.0.1\r\ns=call\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 30000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
)


def offer(call_id: str) -> dict[str, Any]:
    return {"command": "offer", "call-id": call_id, "from-tag": "a1", "sdp": SDP,
            "ICE": "remove"}


class ScriptedPeer(asyncio.DatagramProtocol):
    """A fake rtpengine: records datagrams, ignores the first ``drop`` of each cookie."""

    def __init__(self, drop: int = 0, reply: dict[str, Any] | None = None):
        self.drop = drop
        self.reply = reply or {"result": "pong"}
        self.seen: list[bytes] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.seen.append(data)
        cookie, _ = split_cookie(data)
        if sum(1 for d in self.seen if d.startswith(cookie.encode() + b" ")) <= self.drop:
            return
        assert self.transport is not None
        self.transport.sendto(cookie.encode() + b" " + bencode(self.reply), addr)


async def scripted(drop: int = 0, reply: dict[str, Any] | None = None
                   ) -> tuple[ScriptedPeer, int]:
    loop = asyncio.get_running_loop()
    transport, peer = await loop.create_datagram_endpoint(
        lambda: ScriptedPeer(drop, reply), local_addr=("127.0.0.1", 0))
    return peer, transport.get_extra_info("sockname")[1]


# --------------------------------------------------------------------------- scripted peer


async def test_resend_uses_the_same_cookie() -> None:
    peer, port = await scripted(drop=0)
    client = RtpEngineClient([("127.0.0.1", port)], policy=FAST, ping_policy=FAST)
    try:
        await client.start()
        peer.drop = 2  # from now on, answer only the third copy
        peer.seen.clear()
        started = time.monotonic()
        reply = await client.command({"command": "ping"})
        assert reply == {"result": "pong"}
        assert 0.15 < time.monotonic() - started < 1.5
        assert len(peer.seen) == 3
        assert len(set(peer.seen)) == 1  # byte-identical resends, same cookie
    finally:
        await client.close()
        assert peer.transport is not None
        peer.transport.close()


async def test_silent_instance_times_out_and_is_marked_down() -> None:
    peer, port = await scripted(drop=0)
    client = RtpEngineClient([("127.0.0.1", port)], policy=FAST, ping_policy=FAST,
                             ping_interval=60)
    try:
        await client.start()
        assert client.statuses()[0].state == UP
        peer.drop = 99
        started = time.monotonic()
        with pytest.raises(MediaTimeout):
            await client.command(offer("c-timeout"))
        assert time.monotonic() - started < 1.5
        status = client.statuses()[0]
        assert status.state == DOWN and "no reply" in (status.last_error or "")
        assert status.pending == 0
        # down now: the next command fails at once, without waiting for a timeout
        started = time.monotonic()
        with pytest.raises(MediaUnavailable, match="no rtpengine instance is up"):
            await client.command(offer("c-next"))
        assert time.monotonic() - started < 0.05
        # the peer recovers: the background probe marks the instance up again
        peer.drop = 0
        await asyncio.sleep(0.6)
        with pytest.raises(MediaUnavailable):  # this call triggers the probe
            await client.command(offer("c-probe"))
        for _ in range(40):
            if client.statuses()[0].state == UP:
                break
            await asyncio.sleep(0.05)
        assert client.statuses()[0].state == UP
        assert await client.command({"command": "ping"}) == {"result": "pong"}
    finally:
        await client.close()
        assert peer.transport is not None
        peer.transport.close()


async def test_cancelled_command_leaves_nothing_in_flight() -> None:
    peer, port = await scripted(drop=0)
    client = RtpEngineClient([("127.0.0.1", port)], policy=ResendPolicy((5.0,)))
    try:
        await client.start()
        peer.drop = 99
        task = asyncio.create_task(client.command({"command": "ping"}))
        await asyncio.sleep(0.05)
        assert client.statuses()[0].pending == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert client.statuses()[0].pending == 0
    finally:
        await client.close()
        assert peer.transport is not None
        peer.transport.close()


async def test_close_fails_commands_in_flight() -> None:
    peer, port = await scripted(drop=0)
    client = RtpEngineClient([("127.0.0.1", port)], policy=ResendPolicy((5.0,)))
    await client.start()
    peer.drop = 99
    task = asyncio.create_task(client.command({"command": "ping"}))
    await asyncio.sleep(0.05)
    await client.close()
    with pytest.raises(MediaUnavailable, match="closed"):
        await task
    with pytest.raises(MediaUnavailable, match="closed"):
        await client.command({"command": "ping"})
    assert peer.transport is not None
    peer.transport.close()


# --------------------------------------------------------------------------- real daemon


async def test_commands_against_rtpengine(rtpengine_server: RtpEngine) -> None:
    async with RtpEngineClient([rtpengine_server.endpoint]) as client:
        assert await client.command({"command": "ping"}) == {"result": "pong"}
        call_id = f"cl-{uuid.uuid4()}"
        reply = await client.command(offer(call_id))
        assert reply["result"] == "ok" and "m=audio" in reply["sdp"]
        assert client.instance_of(call_id) == rtpengine_server.address
        assert (await client.command({"command": "query", "call-id": call_id}))["result"] == "ok"
        with pytest.raises(NgSdpError):
            await client.command({"command": "offer", "call-id": call_id, "from-tag": "x"})
        await client.command({"command": "delete", "call-id": call_id})
        assert client.instance_of(call_id) is None
        with pytest.raises(NgUnknownCall):
            await client.command({"command": "query", "call-id": call_id})


async def test_killed_instance_fails_fast_and_recovers(rtpengine_spare: RtpEngine) -> None:
    client = RtpEngineClient([rtpengine_spare.endpoint], ping_interval=0.2)
    try:
        await client.start()
        await client.command(offer("before-kill"))
        rtpengine_spare.kill()
        started = time.monotonic()
        with pytest.raises(MediaUnavailable):
            await client.command(offer(f"k-{uuid.uuid4()}"))
        with pytest.raises(MediaUnavailable):  # the existing call as well
            await client.command({"command": "query", "call-id": "before-kill"})
        assert time.monotonic() - started < 0.5  # no resend budget spent
        assert client.statuses()[0].state == DOWN
        rtpengine_spare.start()
        await _until(lambda: client.statuses()[0].state == UP)
        reply = await client.command(offer(f"k-{uuid.uuid4()}"))
        assert reply["result"] == "ok"
        # the restarted daemon has forgotten the old call: a typed error, not a hang
        with pytest.raises(NgUnknownCall):
            await client.command({"command": "query", "call-id": "before-kill"})
    finally:
        await client.close()


async def test_second_instance_takes_over(rtpengine_spares: Callable[[], RtpEngine]) -> None:
    first, second = rtpengine_spares(), rtpengine_spares()
    client = RtpEngineClient([first.endpoint, second.endpoint], ping_interval=0.2)
    try:
        await client.start()
        calls = [f"fo-{n}-{uuid.uuid4()}" for n in range(12)]
        for call_id in calls:
            await client.command(offer(call_id))
        where = {c: client.instance_of(c) for c in calls}
        assert set(where.values()) == {first.address, second.address}  # spread over both
        first.kill()
        # calls on the dead instance fail fast; calls on the live one keep working
        for call_id, name in where.items():
            if name == first.address:
                with pytest.raises(MediaUnavailable):
                    await client.command({"command": "query", "call-id": call_id})
            else:
                await client.command({"command": "query", "call-id": call_id})
        # every new call lands on the survivor, even those that prefer the dead one
        started = time.monotonic()
        for n in range(12):
            call_id = f"new-{n}-{uuid.uuid4()}"
            await client.command(offer(call_id))
            assert client.instance_of(call_id) == second.address
        assert time.monotonic() - started < 2.0
        second.kill()
        with pytest.raises(MediaUnavailable):
            await client.command(offer(f"none-{uuid.uuid4()}"))
        first.start()
        await _until(lambda: client.statuses()[0].state == UP)
        call_id = f"back-{uuid.uuid4()}"
        await client.command(offer(call_id))
        assert client.instance_of(call_id) == first.address
    finally:
        await client.close()


async def test_new_call_fails_over_when_preferred_instance_is_silent(
        rtpengine_server: RtpEngine) -> None:
    """An instance that swallows datagrams (no ICMP) is only found dead by timeout;
    the offer of a new call then moves on to the next instance."""
    peer, port = await scripted(drop=0)
    client = RtpEngineClient([("127.0.0.1", port), rtpengine_server.endpoint],
                             policy=FAST, ping_interval=60)
    try:
        await client.start()
        peer.drop = 99
        names = [s.endpoint for s in client.statuses()]
        # find a call-id whose first choice is the silent peer
        call_id = next(c for c in (f"sil-{uuid.uuid4()}" for _ in range(100))
                       if rank(c, names)[0] == 0)
        reply = await client.command(offer(call_id))
        assert reply["result"] == "ok"
        assert client.instance_of(call_id) == rtpengine_server.address
        assert client.statuses()[0].state == DOWN
        await client.command({"command": "delete", "call-id": call_id})
    finally:
        await client.close()
        assert peer.transport is not None
        peer.transport.close()


async def _until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


async def test_concurrent_first_commands_open_once() -> None:
    peer, port = await scripted(drop=0)
    client = RtpEngineClient([("127.0.0.1", port)], policy=FAST, ping_interval=60)
    try:
        replies = await asyncio.gather(*(client.command({"command": "ping"}) for _ in range(10)))
        assert replies == [{"result": "pong"}] * 10
        assert len(peer.seen) == 12  # start-up ping and statistics (uptime), ten commands
        assert len(set(peer.seen)) == 12  # every command had its own cookie
    finally:
        await client.close()
        assert peer.transport is not None
        peer.transport.close()
