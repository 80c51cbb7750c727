"""The asyncio drachtio client against the real, vendored drachtio-server."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from engine.drachtio.client import Backoff, ClientState
from engine.drachtio.wire import build_sip_message
from tests.fixtures.drachtio import Drachtio
from tests.integration.drachtio.conftest import UdpPhone, drachtio_client

pytestmark = pytest.mark.integration

LOGGER = "engine.drachtio.client"


def client_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno >= logging.WARNING]


async def eventually(check, timeout: float = 5.0, step: float = 0.01) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(step)


async def answer_options(client, inbox, phone: UdpPhone, server: Drachtio) -> str:  # type: ignore[no-untyped-def]
    """One OPTIONS from the phone through drachtio to the client and our 200 back."""
    call_id = phone.options(server)
    frame = await inbox.next()
    msg = frame.message
    assert msg.method == "OPTIONS" and msg.header("Call-ID") == call_id
    reply = build_sip_message("SIP/2.0 200 OK", [
        (name, msg.header(name) or "") for name in ("Call-ID", "CSeq", "From", "To")
    ] + [("X-Handled-By", "dragonpbx-test")])
    sent = await client.respond(frame.transaction_id, reply)
    assert sent.ok, sent.reason
    return await phone.response(call_id)


async def test_connects_authenticates_and_routes(drachtio_server: Drachtio) -> None:
    async with drachtio_client(drachtio_server) as (client, _inbox):
        assert await client.wait_ready(5)
        assert client.state is ClientState.READY and client.epoch == 1
        assert client.server is not None
        assert client.server.version.startswith("v0.9.10")
        assert ("udp", "127.0.0.1", drachtio_server.sip_port) in client.server.hostports
        assert await client.ping(timeout=2)


async def test_a_real_options_arrives_with_its_meta_and_our_200_reaches_the_sender(
        drachtio_server: Drachtio, phone: UdpPhone) -> None:
    async with drachtio_client(drachtio_server, verbs=("options",)) as (client, inbox):
        assert await client.wait_ready(5)
        call_id = phone.options(drachtio_server)
        frame = await inbox.next()
        assert frame.meta.source == "network"
        assert frame.meta.protocol == "udp"
        assert (frame.meta.address, frame.meta.port) == ("127.0.0.1", phone.port)
        assert frame.meta.size > 0 and len(frame.meta.time) == len("08:42:15.477168")
        assert frame.transaction_id and frame.dialog_id == "" and not frame.unsolicited
        assert frame.received_on == ("127.0.0.1", drachtio_server.sip_port)
        assert frame.message.method == "OPTIONS"
        assert frame.message.header("call-id") == call_id
        msg = frame.message
        reply = build_sip_message("SIP/2.0 200 OK", [
            (name, msg.header(name) or "") for name in ("Call-ID", "CSeq", "From", "To")
        ] + [("X-Handled-By", "dragonpbx-test")])
        sent = await client.respond(frame.transaction_id, reply)
        assert sent.ok and sent.meta is not None and sent.meta.source == "application"
        assert sent.transaction_id == frame.transaction_id and sent.dialog_id == ""
        assert sent.message is not None and sent.message.status == 200
        got = await phone.response(call_id)
        assert got.startswith("SIP/2.0 200 OK\r\n")
        assert "X-Handled-By: dragonpbx-test\r\n" in got


async def test_a_method_that_was_not_routed_is_refused_by_the_server(
        drachtio_spare: Drachtio, phone: UdpPhone) -> None:
    """``route`` is what makes requests arrive: without it the server answers 503 itself.
    (A private server: no other client may have routed OPTIONS.)"""
    async with drachtio_client(drachtio_spare, verbs=("register",)) as (client, inbox):
        assert await client.wait_ready(5)
        call_id = phone.options(drachtio_spare)
        got = await phone.response(call_id)
        assert got.startswith("SIP/2.0 503 ")
        assert inbox.frames == []


async def test_wrong_secret_is_one_clear_line_per_attempt_and_keeps_retrying(
        drachtio_server: Drachtio, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    fast = Backoff(first=0.05, factor=1.7, cap=0.2)
    async with drachtio_client(drachtio_server, secret="not-the-secret-42",
                               backoff=fast) as (client, _inbox):
        await eventually(lambda: client.attempts >= 3)
        assert not client.ready and not await client.wait_ready(0.05)
        lines = [r for r in caplog.records if r.name == LOGGER]
        assert len(lines) == client.attempts  # one line per attempt, nothing else
        where = f"drachtio at 127.0.0.1:{drachtio_server.admin_port}"
        for record in lines:
            text = record.getMessage()
            assert text.startswith(f"{where} refused authentication (incorrect secret)"), text
            assert "DRACHTIO_SECRET" in text and "retrying in" in text
            assert "not-the-secret" not in text and record.exc_info is None
            assert record.levelno == logging.WARNING


async def test_unreachable_server_is_one_line_per_attempt_then_connects_when_it_appears(
        drachtio_spare: Drachtio, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    drachtio_spare.kill()
    fast = Backoff(first=0.05, factor=1.7, cap=0.3)
    async with drachtio_client(drachtio_spare, backoff=fast) as (client, _inbox):
        await eventually(lambda: client.attempts >= 3)
        assert not client.ready and client.state is not ClientState.READY
        failures = client_warnings(caplog)
        assert len(failures) == client.attempts
        for record in failures:
            assert record.getMessage().startswith(
                f"cannot reach drachtio at 127.0.0.1:{drachtio_spare.admin_port}: ")
            assert record.exc_info is None
        await asyncio.to_thread(drachtio_spare.start)
        assert await client.wait_ready(5)
        assert await client.ping(timeout=2)


async def test_server_killed_and_restarted_the_client_routes_again_within_5_s(
        drachtio_spare: Drachtio, phone: UdpPhone, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    lost: list[int] = []
    async with drachtio_client(drachtio_spare, on_connection_lost=lost.append) as (client, inbox):
        assert await client.wait_ready(5)
        assert (await answer_options(client, inbox, phone, drachtio_spare)).startswith(
            "SIP/2.0 200 OK")
        drachtio_spare.kill()
        await eventually(lambda: not client.ready, timeout=3)
        assert lost == [1]
        await asyncio.sleep(3.0)  # long enough for the backoff to reach its cap
        await asyncio.to_thread(drachtio_spare.start)
        back = time.monotonic()
        assert await client.wait_ready(5), "not ready within 5 s of drachtio being back"
        elapsed = time.monotonic() - back
        print(f"ready again {elapsed:.2f} s after drachtio was back")
        assert elapsed < 5.0
        assert client.epoch == 2
        # routed again: a new OPTIONS reaches this client and is answered through drachtio
        got = await answer_options(client, inbox, phone, drachtio_spare)
        assert got.startswith("SIP/2.0 200 OK") and "X-Handled-By: dragonpbx-test" in got
        lost_lines = [r.getMessage() for r in client_warnings(caplog)
                      if "lost" in r.getMessage()]
        assert len(lost_lines) == 1
        assert f"connection to drachtio at 127.0.0.1:{drachtio_spare.admin_port} lost" \
            in lost_lines[0]
        assert all(r.exc_info is None for r in caplog.records if r.name == LOGGER)


async def test_a_frozen_server_is_detected_by_ping_and_the_client_recovers(
        drachtio_spare: Drachtio, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    async with drachtio_client(drachtio_spare, ping_interval=0.2, ping_timeout=0.4,
                               connect_timeout=0.5) as (client, _inbox):
        assert await client.wait_ready(5)
        drachtio_spare.sigstop()
        try:
            await eventually(lambda: not client.ready, timeout=3)
        finally:
            drachtio_spare.sigcont()
        assert any("no pong within 0.4 s" in r.getMessage() for r in client_warnings(caplog))
        assert await client.wait_ready(5)
        assert await client.ping(timeout=2)


async def test_proxy_collects_every_answer_until_done(drachtio_server: Drachtio) -> None:
    """``proxy`` is answered several times (``continue`` … ``done``): the correlator keeps
    the request open until the last answer (§4.4)."""
    caller, callee = UdpPhone(), UdpPhone()
    try:
        async with drachtio_client(drachtio_server, verbs=("options",)) as (client, inbox):
            assert await client.wait_ready(5)
            call_id = caller.options(drachtio_server)
            frame = await inbox.next()
            proxied = asyncio.create_task(client.proxy(
                frame.transaction_id, [f"127.0.0.1:{callee.port}"],
                f"OPTIONS sip:127.0.0.1:{callee.port} SIP/2.0\r\nX-Proxied: yes\r\n"
                "Content-Length: 0\r\n\r\n"))
            loop = asyncio.get_running_loop()
            request = (await asyncio.wait_for(loop.sock_recv(callee.sock, 65536), 5)).decode()
            assert request.startswith("OPTIONS ") and f"Call-ID: {call_id}" in request
            assert "X-Proxied: yes" in request
            head = request.split("\r\n\r\n", 1)[0].split("\r\n")[1:]
            keep = [h for h in head if h.split(":", 1)[0].lower() in
                    ("via", "from", "to", "call-id", "cseq")]
            answer = "\r\n".join(["SIP/2.0 200 OK", *keep, "Content-Length: 0", "", ""])
            callee.sock.sendto(answer.encode(), drachtio_server.sip_address)  # its Via
            answers = await asyncio.wait_for(proxied, 10)
            assert [a.is_continue for a in answers] == [True, False]
            assert answers[0].message is not None and answers[0].message.status == 200
            assert answers[-1].ok and answers[-1].fields == ("done",)
            assert (await caller.response(call_id)).startswith("SIP/2.0 200 OK")
    finally:
        caller.close()
        callee.close()
