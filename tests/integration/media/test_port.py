"""RtpEngineMedia against a real rtpengine, with real RTP through the relay."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine.errors import MediaError
from engine.media.port import RtpEngineMedia
from engine.paths import media_dir
from engine.ports import MediaPort
from engine.rtpengine.errors import MediaUnavailable, NgError, NgUnknownCall
from engine.settings import load_settings
from tests.fixtures.rtpengine import RtpEngine
from tests.integration.media.rtp import (
    RtpPeer,
    media_formats,
    media_port,
    telephone_events,
    wait_for,
)

pytestmark = pytest.mark.integration


def settings_for(engine: RtpEngine, tmp_path: Path, **extra: str):
    env = {"RTPENGINE_HOST": engine.address, "MEDIA_CACHE_DIR": str(tmp_path / "cache"),
           "DEFAULT_CODECS": "PCMU,PCMA", **extra}
    return load_settings(env)


@pytest.fixture
async def media(rtpengine_server: RtpEngine, tmp_path: Path) -> AsyncIterator[RtpEngineMedia]:
    port = RtpEngineMedia.from_settings(settings_for(rtpengine_server, tmp_path))
    await port.start()
    yield port
    await port.close()


@pytest.fixture
async def peers() -> AsyncIterator[tuple[RtpPeer, RtpPeer]]:
    a, b = await RtpPeer.open("alice"), await RtpPeer.open("bob")
    yield a, b
    a.close()
    b.close()


def new_call() -> str:
    return f"it-{uuid.uuid4()}"


def test_implements_the_port_protocol(tmp_path: Path) -> None:
    port = RtpEngineMedia.from_settings(load_settings({"MEDIA_CACHE_DIR": str(tmp_path)}))
    assert isinstance(port, MediaPort)


async def test_offer_answer_rewrites_sdp(media: RtpEngineMedia,
                                         peers: tuple[RtpPeer, RtpPeer]) -> None:
    a, b = peers
    call_id = new_call()
    offer_sdp = a.sdp([0, 8, 9, 101]).replace(
        b"a=sendrecv", b"a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdef0123456789\r\n"
                       b"a=candidate:1 1 UDP 2130706431 127.0.0.1 9 typ host\r\na=sendrecv")
    offered = await media.offer(call_id=call_id, from_tag="A", sdp=offer_sdp)
    assert media_formats(offered.sdp) == [0, 8, 9, 101]
    assert media_port(offered.sdp) != a.port  # B is sent to rtpengine, not to A
    assert b"a=ice-" not in offered.sdp and b"a=candidate" not in offered.sdp
    assert b"c=IN IP4 127.0.0.1" in offered.sdp and b"a=rtcp:" in offered.sdp
    assert offered.raw["result"] == "ok"
    answered = await media.answer(call_id=call_id, from_tag="A", to_tag="B",
                                  sdp=b.sdp([8, 101]))
    # rtpengine narrows A's answer to the codec B chose
    assert media_formats(answered.sdp) == [8, 101]
    assert media_port(answered.sdp) not in (a.port, b.port, media_port(offered.sdp))
    await media.delete(call_id=call_id)


async def test_transcoding_pcmu_to_g722(media: RtpEngineMedia,
                                        peers: tuple[RtpPeer, RtpPeer]) -> None:
    a, b = peers
    call_id = new_call()
    offered = await media.offer(call_id=call_id, from_tag="A", sdp=a.sdp([0, 101]),
                                source_codecs=["PCMU"], dest_codecs=["G722"])
    assert media_formats(offered.sdp) == [9, 101]  # PCMU masked, G722 added
    answered = await media.answer(call_id=call_id, from_tag="A", to_tag="B",
                                  sdp=b.sdp([9, 101]))
    assert media_formats(answered.sdp) == [0, 101]
    await asyncio.gather(a.stream(media_port(answered.sdp), 0, 25),
                         b.stream(media_port(offered.sdp), 9, 25))
    await wait_for(lambda: len(b.packets) >= 20 and len(a.packets) >= 20)
    assert set(b.pts()) == {9}  # A sent PCMU, B got G722
    assert set(a.pts()) == {0}  # B sent G722, A got PCMU
    info = await media.query(call_id=call_id)
    flags = {f for tag in info["tags"].values() for m in tag["medias"] for f in m["flags"]}
    assert "transcoding" in flags
    await media.delete(call_id=call_id)


async def test_forked_offers_keep_their_own_codec_policy(
        media: RtpEngineMedia, peers: tuple[RtpPeer, RtpPeer]) -> None:
    """D-34: two B legs offered from the same A leg with different policies."""
    a, b2 = peers
    b1 = await RtpPeer.open("bob1")
    try:
        call_id = new_call()
        to_b1 = await media.offer(call_id=call_id, from_tag="A", sdp=a.sdp([0, 101]),
                                  source_codecs=["PCMU"], dest_codecs=["G722"], branch="br-1")
        to_b2 = await media.offer(call_id=call_id, from_tag="A", sdp=a.sdp([0, 101]),
                                  source_codecs=["PCMU"], dest_codecs=["PCMA"], branch="br-2")
        assert media_formats(to_b1.sdp) == [9, 101]
        assert media_formats(to_b2.sdp) == [8, 101]
        assert media_port(to_b1.sdp) != media_port(to_b2.sdp)
        # re-offering branch 1 (e.g. a retransmission) does not disturb branch 2
        again = await media.offer(call_id=call_id, from_tag="A", sdp=a.sdp([0, 101]),
                                  source_codecs=["PCMU"], dest_codecs=["G722"], branch="br-1")
        assert media_port(again.sdp) == media_port(to_b1.sdp)
        # the second branch answers first: its own policy (PCMA) applies
        answered = await media.answer(call_id=call_id, from_tag="A", to_tag="B2",
                                      sdp=b2.sdp([8, 101]), branch="br-2")
        assert media_formats(answered.sdp) == [0, 101]
        await asyncio.gather(a.stream(media_port(answered.sdp), 0, 20),
                             b2.stream(media_port(to_b2.sdp), 8, 20))
        await wait_for(lambda: len(b2.packets) >= 15 and len(a.packets) >= 15)
        assert set(b2.pts()) == {8} and set(a.pts()) == {0}
        assert b1.packets == []
        await media.delete(call_id=call_id)
    finally:
        b1.close()


async def test_play_media_reaches_the_offering_side(media: RtpEngineMedia,
                                                    peers: tuple[RtpPeer, RtpPeer]) -> None:
    a, b = peers
    call_id = new_call()
    await media.offer(call_id=call_id, from_tag="A", sdp=a.sdp([0, 101]))
    await media.answer(call_id=call_id, from_tag="A", to_tag="B", sdp=b.sdp([0, 101]))
    started = time.monotonic()
    duration = await media.play_media(call_id=call_id, from_tag="A",
                                      file="file:/announcement.wav")
    assert duration == 1500
    await wait_for(lambda: len(a.packets) >= 25)
    assert set(a.pts()) == {0}
    # paced like real audio (50 packets/s), not dumped at once
    assert time.monotonic() - started >= 0.4
    assert b.packets == []
    await media.delete(call_id=call_id)


async def test_play_blob_to_callee_and_stop(media: RtpEngineMedia,
                                            peers: tuple[RtpPeer, RtpPeer]) -> None:
    a, b = peers
    call_id = new_call()
    await media.offer(call_id=call_id, from_tag="A", sdp=a.sdp([0, 8, 101]))
    await media.answer(call_id=call_id, from_tag="A", to_tag="B", sdp=b.sdp([8, 101]))
    blob = (media_dir() / "uk.wav").read_bytes()
    duration = await media.play_media(call_id=call_id, from_tag="B", blob=blob, repeat=600)
    assert duration == 3000
    await wait_for(lambda: len(b.packets) >= 10)
    assert set(b.pts()) == {8}
    await media.stop_media(call_id=call_id, from_tag="B")
    await asyncio.sleep(0.1)  # packets already in flight
    count = len(b.packets)
    await asyncio.sleep(0.3)
    assert len(b.packets) <= count + 1
    assert a.packets == []
    await media.delete(call_id=call_id)


async def test_play_dtmf_sends_telephone_events(media: RtpEngineMedia,
                                                peers: tuple[RtpPeer, RtpPeer]) -> None:
    a, b = peers
    call_id = new_call()
    offered = await media.offer(call_id=call_id, from_tag="A", sdp=a.sdp([0, 101]))
    answered = await media.answer(call_id=call_id, from_tag="A", to_tag="B",
                                  sdp=b.sdp([0, 101]))
    # the generating party (A) must be sending RTP while the event is injected
    sending = asyncio.create_task(a.stream(media_port(answered.sdp), 0, 40))
    try:
        await wait_for(lambda: len(b.packets) >= 5)
        await media.play_dtmf(call_id=call_id, from_tag="A", code="5", duration=200)
        await wait_for(lambda: any(end for _, end, _ in telephone_events(b.packets)))
    finally:
        await sending
    events = telephone_events(b.packets)
    assert {event for event, _, _ in events} == {5}
    assert events[-1][1] is True  # end bit on the last packet(s)
    assert media_port(offered.sdp) > 0
    await media.delete(call_id=call_id)


async def test_delete_is_idempotent(media: RtpEngineMedia,
                                    peers: tuple[RtpPeer, RtpPeer]) -> None:
    a, _ = peers
    call_id = new_call()
    await media.offer(call_id=call_id, from_tag="A", sdp=a.sdp([0]))
    assert (await media.query(call_id=call_id))["result"] == "ok"
    await media.delete(call_id=call_id, from_tag="A")
    with pytest.raises(NgUnknownCall):
        await media.query(call_id=call_id)
    await media.delete(call_id=call_id, from_tag="A")  # again: fine
    await media.delete(call_id=new_call())  # never existed: fine


async def test_errors_are_typed(media: RtpEngineMedia, peers: tuple[RtpPeer, RtpPeer]) -> None:
    a, _ = peers
    call_id = new_call()
    with pytest.raises(NgUnknownCall):
        await media.answer(call_id=call_id, from_tag="A", to_tag="B", sdp=a.sdp([0]))
    with pytest.raises(NgUnknownCall):
        await media.play_media(call_id=call_id, from_tag="A", file="file:/uk.wav")
    await media.offer(call_id=call_id, from_tag="A", sdp=a.sdp([0]))
    with pytest.raises(NgError, match="playback"):
        await media.play_media(call_id=call_id, from_tag="A", file="/nonexistent/x.wav")
    with pytest.raises(MediaError):
        await media.play_media(call_id=call_id, from_tag="A", file="file:/../etc/passwd")
    await media.delete(call_id=call_id)


async def test_dead_rtpengine_fails_fast_then_recovers(rtpengine_spare: RtpEngine,
                                                       tmp_path: Path,
                                                       peers: tuple[RtpPeer, RtpPeer]) -> None:
    a, _ = peers
    port = RtpEngineMedia.from_settings(settings_for(rtpengine_spare, tmp_path))
    port.client.ping_interval = 0.2
    try:
        await port.start()
        rtpengine_spare.kill()
        started = time.monotonic()
        with pytest.raises(MediaUnavailable):
            await port.offer(call_id=new_call(), from_tag="A", sdp=a.sdp([0]))
        assert time.monotonic() - started < 0.5
        rtpengine_spare.start()
        await wait_for(port.client.any_up, timeout=5)
        answer = await port.offer(call_id=new_call(), from_tag="A", sdp=a.sdp([0]))
        assert b"m=audio" in answer.sdp
    finally:
        await port.close()
