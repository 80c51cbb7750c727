"""The asyncio client against a fake server: what the real one cannot be made to do
(malformed frames, withheld or late answers). Real-server behaviour is covered in
tests/integration/drachtio/."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from engine.drachtio.client import (
    Backoff,
    DrachtioClient,
    DrachtioTimeout,
    DrachtioUnavailable,
)
from engine.drachtio.wire import (
    AppSipFrame,
    AuthenticateFrame,
    FrameTooLarge,
    Meta,
    RouteFrame,
    SipFrame,
    encode_frame,
)
from tests.unit.drachtio.fakes import FakeConnection, FakeDrachtio, build_server_sip

FAST = Backoff(first=0.02, factor=1.5, cap=0.1, jitter=0.25)
OPTIONS = ("OPTIONS sip:app@127.0.0.1:5080 SIP/2.0\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\n"
           "Content-Length: 0\r\n\r\n")
META = Meta("network", 100, "udp", "127.0.0.1", 16000, "08:42:15.477168")


@pytest.fixture
async def fake() -> AsyncIterator[FakeDrachtio]:
    server = await FakeDrachtio().start()
    yield server
    await server.close()


class Harness:
    def __init__(self, fake: FakeDrachtio, **kwargs: object):
        self.sip: list[SipFrame] = []
        self.lost: list[int] = []
        self.client = DrachtioClient(
            "127.0.0.1", fake.port, kwargs.pop("secret", fake.secret),  # type: ignore[arg-type]
            verbs=kwargs.pop("verbs", ("INVITE", "register")),  # type: ignore[arg-type]
            on_sip=self.sip.append, on_connection_lost=self.lost.append,
            backoff=FAST, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
async def harness(fake: FakeDrachtio) -> AsyncIterator[Harness]:
    h = Harness(fake, request_timeout=2.0)
    h.client.start()
    assert await h.client.wait_ready(5)
    yield h
    await h.client.stop()


def client_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "engine.drachtio.client"]


async def eventually(check, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)


async def test_authenticates_first_then_routes_every_verb_lower_case(
        fake: FakeDrachtio, harness: Harness) -> None:
    conn = await fake.connection(0)
    first, *routes = conn.received
    assert isinstance(first, AuthenticateFrame) and first.secret == fake.secret
    assert sorted(r.verb for r in routes if isinstance(r, RouteFrame)) == ["invite", "register"]
    assert harness.client.server is not None and harness.client.server.version == "v0.9.10-fake"
    assert harness.client.epoch == 1


@pytest.mark.parametrize("garbage", [
    b"not-a-length#whatever",
    encode_frame(b"s|sip|network|1|udp"),                 # framed, but too few fields
    encode_frame(b"s|response|m|MAYBE"),                  # framed, unknown status
    encode_frame(b"s|sip|network|1|udp|h|1|t|x||\r\n\x00garbage"),  # framed, no start line
])
async def test_a_malformed_frame_resets_the_connection_and_the_client_recovers(
        fake: FakeDrachtio, harness: Harness, caplog: pytest.LogCaptureFixture,
        garbage: bytes) -> None:
    caplog.set_level(logging.INFO, logger="engine.drachtio.client")
    first = await fake.connection(0)
    first.send(garbage)
    await asyncio.wait_for(first.closed.wait(), 5)
    second = await fake.connection(1)
    assert await harness.client.wait_ready(5)
    assert harness.lost == [1] and harness.client.epoch == 2
    warnings = [r for r in client_lines(caplog) if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "malformed frame from drachtio at 127.0.0.1:" in warnings[0].getMessage()
    assert warnings[0].exc_info is None
    # and the new connection works: a request arrives and is delivered
    second.send(build_server_sip("s9", META, "txn-9", "", OPTIONS, ("127.0.0.1", 5080)))
    await eventually(lambda: len(harness.sip) == 1)


async def test_frames_before_the_corruption_are_still_delivered(
        fake: FakeDrachtio, harness: Harness) -> None:
    conn = await fake.connection(0)
    good = build_server_sip("s1", META, "txn-1", "", OPTIONS, ("127.0.0.1", 5080))
    conn.send(good + b"x#")
    await asyncio.wait_for(conn.closed.wait(), 5)
    assert [f.transaction_id for f in harness.sip] == ["txn-1"]


async def test_a_failing_handler_does_not_take_the_connection_down(
        fake: FakeDrachtio, caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []

    def handler(frame: SipFrame) -> None:
        calls.append(frame.transaction_id)
        raise RuntimeError("bug in a handler")

    client = DrachtioClient("127.0.0.1", fake.port, fake.secret, verbs=["options"],
                            on_sip=handler, backoff=FAST)
    client.start()
    try:
        assert await client.wait_ready(5)
        conn = await fake.connection(0)
        conn.send(build_server_sip("s1", META, "t1", "", OPTIONS, ("127.0.0.1", 5080)) * 2)
        await eventually(lambda: len(calls) == 2)
        assert client.ready and len(fake.connections) == 1
    finally:
        await client.stop()


async def test_answers_are_correlated_by_message_id_even_out_of_order(
        fake: FakeDrachtio, harness: Harness) -> None:
    conn = await fake.connection(0)
    first = asyncio.create_task(harness.client.respond("t1", "SIP/2.0 200 OK\r\n\r\n"))
    second = asyncio.create_task(harness.client.respond("t2", "SIP/2.0 486 Busy Here\r\n\r\n"))
    req1 = await asyncio.wait_for(conn.requests.get(), 5)
    req2 = await asyncio.wait_for(conn.requests.get(), 5)
    assert isinstance(req1, AppSipFrame) and isinstance(req2, AppSipFrame)
    conn.answer(req2.msg_id, "NOK", ["Response not sent due to unknown transaction"])
    conn.answer(req1.msg_id, "OK", ["application", "10", "udp", "127.0.0.1", "16000", "t",
                                    "t1", "", "", "Msg sent:", ""], "SIP/2.0 200 OK\r\n\r\n")
    one, two = await asyncio.wait_for(asyncio.gather(first, second), 5)
    assert one.ok and one.transaction_id == "t1"
    assert two.status == "NOK" and two.reason.startswith("Response not sent")


async def test_a_request_pending_when_the_connection_drops_fails_and_is_not_resent(
        fake: FakeDrachtio, harness: Harness) -> None:
    conn = await fake.connection(0)
    pending = asyncio.create_task(harness.client.send_sip(OPTIONS))
    await asyncio.wait_for(conn.requests.get(), 5)
    conn.close()
    with pytest.raises(DrachtioUnavailable):
        await asyncio.wait_for(pending, 5)
    second = await fake.connection(1)
    assert await harness.client.wait_ready(5)
    await asyncio.sleep(0.1)
    assert not any(isinstance(f, AppSipFrame) for f in second.received)


async def test_no_answer_is_a_timeout_and_a_late_answer_is_ignored(
        fake: FakeDrachtio, harness: Harness) -> None:
    conn = await fake.connection(0)
    with pytest.raises(DrachtioTimeout, match=r"did not answer sip within 0\.2 s"):
        await harness.client.send_sip(OPTIONS, timeout=0.2)
    late = await conn.requests.get()
    conn.answer(late.msg_id, "OK")
    assert await harness.client.ping(timeout=2)  # still connected, nothing broke
    assert harness.client.ready


async def test_nothing_is_written_behind_a_large_frame_until_it_is_answered(
        fake: FakeDrachtio, harness: Harness) -> None:
    conn = await fake.connection(0)
    big_body = "x" * 5000
    big = asyncio.create_task(harness.client.send_sip(
        "MESSAGE sip:a@127.0.0.1 SIP/2.0\r\nContent-Type: text/plain\r\n\r\n" + big_body))
    big_frame = await asyncio.wait_for(conn.requests.get(), 5)
    small = asyncio.create_task(harness.client.send_sip(OPTIONS))
    await asyncio.sleep(0.2)
    assert conn.requests.empty()  # the small frame waits for the large one's answer
    conn.answer(big_frame.msg_id, "OK")
    small_frame = await asyncio.wait_for(conn.requests.get(), 5)
    conn.answer(small_frame.msg_id, "OK")
    assert (await big).ok and (await small).ok


async def test_oversized_frames_and_requests_while_not_ready_fail_before_any_io(
        fake: FakeDrachtio, harness: Harness) -> None:
    with pytest.raises(FrameTooLarge):
        await harness.client.send_sip("MESSAGE sip:a SIP/2.0\r\n\r\n" + "x" * 13_000)
    idle = DrachtioClient("127.0.0.1", fake.port, fake.secret, verbs=[], on_sip=print)
    with pytest.raises(DrachtioUnavailable, match="not connected"):
        await idle.send_sip(OPTIONS)


async def test_a_refused_secret_is_one_line_per_attempt_without_the_secret(
        fake: FakeDrachtio, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="engine.drachtio.client")
    h = Harness(fake, secret="hunter2-wrong")
    h.client.start()
    try:
        await eventually(lambda: h.client.attempts >= 3)
        assert not h.client.ready
        lines = client_lines(caplog)
        assert len(lines) == h.client.attempts
        for record in lines:
            text = record.getMessage()
            assert f"drachtio at 127.0.0.1:{fake.port} refused authentication" in text
            assert "incorrect secret" in text and "DRACHTIO_SECRET" in text
            assert "hunter2" not in text and record.exc_info is None
    finally:
        await h.client.stop()


async def test_silent_server_fails_set_up_on_time(caplog: pytest.LogCaptureFixture) -> None:
    async def mute(conn: FakeConnection, frame: object) -> None:
        return None

    server = await FakeDrachtio(policy=mute).start()
    client = DrachtioClient("127.0.0.1", server.port, "x", verbs=["invite"], on_sip=print,
                            connect_timeout=0.2, backoff=FAST)
    client.start()
    try:
        await eventually(lambda: client.attempts >= 2)
        text = client_lines(caplog)[0].getMessage()
        assert f"drachtio at 127.0.0.1:{server.port} did not answer authenticate" in text
    finally:
        await client.stop()
        await server.close()


def test_backoff_grows_is_capped_and_jittered() -> None:
    backoff = Backoff()
    delays = [backoff.delay(n, rand=lambda: 0.0) for n in range(12)]
    assert delays[0] == pytest.approx(0.255)
    assert delays == sorted(delays) and max(delays) == backoff.cap
    assert backoff.delay(20, rand=lambda: 1.0) == pytest.approx(backoff.cap * 0.75)


async def test_from_settings_uses_the_original_variables(fake: FakeDrachtio) -> None:
    from engine.settings import load_settings

    settings = load_settings({"DRACHTIO_HOST": "127.0.0.1", "DRACHTIO_PORT": str(fake.port),
                              "DRACHTIO_SECRET": fake.secret})
    client = DrachtioClient.from_settings(settings, verbs=["options"], on_sip=print)
    client.start()
    try:
        assert await client.wait_ready(5)
        assert client.address == f"127.0.0.1:{fake.port}"
    finally:
        await client.stop()


async def test_a_bug_while_reading_resets_the_connection_not_the_client(
        fake: FakeDrachtio, harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.drachtio.client as client_module

    real = client_module.parse_server_frame
    calls = {"n": 0}

    def broken_once(payload: bytes):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("simulated bug")
        return real(payload)

    monkeypatch.setattr(client_module, "parse_server_frame", broken_once)
    conn = await fake.connection(0)
    conn.send(build_server_sip("s1", META, "t1", "", OPTIONS, ("127.0.0.1", 5080)))
    await asyncio.wait_for(conn.closed.wait(), 5)
    await fake.connection(1)
    assert await harness.client.wait_ready(5)
    assert harness.lost == [1]


async def test_a_failing_connection_lost_handler_does_not_stop_reconnection(
        fake: FakeDrachtio) -> None:
    def broken(epoch: int) -> None:
        raise RuntimeError("bug in the handler")

    client = DrachtioClient("127.0.0.1", fake.port, fake.secret, verbs=["options"],
                            on_sip=print, on_connection_lost=broken, backoff=FAST)
    client.start()
    try:
        assert await client.wait_ready(5)
        (await fake.connection(0)).close()
        await fake.connection(1)
        await eventually(lambda: client.epoch == 2 and client.ready)
    finally:
        await client.stop()
