"""Endpoint core: timer tables per state, malformed input handling, stateless
answers, the timer queue helper."""

from __future__ import annotations

from typing import Any

import pytest

from engine.ports import Peer
from engine.sip.effects import (
    MessageRejected,
    RequestReceived,
    Send,
    StartTimer,
    TimerQueue,
)
from engine.sip.message import SipResponse
from engine.sip.parser import parse_message
from tests.unit.sip._harness import (
    PEER_TCP,
    PEER_UDP,
    Harness,
    our_request,
    reply_to,
    uac_request,
)
from tests.unit.sip._util import raw


def started(h: Harness, effects: list[Any]) -> dict[str, float]:
    """Timers started by ``effects`` and still armed, as {name: delay}."""
    h.run(effects)
    out = {}
    for e in effects:
        if isinstance(e, StartTimer) and e.timer_id in h.core._timers:
            out[h.core._timers[e.timer_id][1]] = e.delay
    return out


def peer(transport: str) -> Peer:
    return PEER_UDP if transport == "udp" else PEER_TCP


# (kind, transport, final status) -> timers after sending, after the final response
CLIENT_TABLE = [
    ("INVITE", "udp", 486, {"A": 0.5, "B": 32.0}, {"D": 32.0}),
    ("INVITE", "tcp", 486, {"B": 32.0}, {}),
    ("INVITE", "udp", 200, {"A": 0.5, "B": 32.0}, {"M": 32.0}),
    ("INVITE", "tcp", 200, {"B": 32.0}, {"M": 32.0}),
    ("OPTIONS", "udp", 200, {"E": 0.5, "F": 32.0}, {"K": 5.0}),
    ("OPTIONS", "tcp", 404, {"F": 32.0}, {}),
]


@pytest.mark.parametrize("method, transport, status, on_send, on_final", CLIENT_TABLE)
def test_client_timer_table(method: str, transport: str, status: int,
                            on_send: dict[str, float], on_final: dict[str, float]) -> None:
    h = Harness()
    tx, effects = h.core.send_request(our_request(method), peer(transport))
    assert started(h, effects) == on_send
    data = h.take_sent()[0][1].data
    assert started(h, h.core.receive_bytes(reply_to(data, status), peer(transport), 0.1)) \
        == on_final
    assert h.core.state(tx) == ("terminated" if not on_final else
                                "accepted" if status < 300 and method == "INVITE" else "completed")


# (method, transport, status) -> timers after the final response, after the ACK (INVITE)
SERVER_TABLE = [
    ("INVITE", "udp", 486, {"G": 0.5, "H": 32.0}, {"I": 5.0}),
    ("INVITE", "tcp", 486, {"H": 32.0}, {}),
    ("INVITE", "udp", 200, {"L": 32.0, "G2": 0.5}, {}),
    ("INVITE", "tcp", 200, {"L": 32.0}, {}),
    ("REGISTER", "udp", 200, {"J": 32.0}, None),
    ("REGISTER", "tcp", 200, {}, None),
]


@pytest.mark.parametrize("method, transport, status, on_final, on_ack", SERVER_TABLE)
def test_server_timer_table(method: str, transport: str, status: int,
                            on_final: dict[str, float], on_ack: dict[str, float] | None) -> None:
    h = Harness()
    req = uac_request(method, transport=transport.upper())
    h.recv(req, peer(transport))
    [ev] = h.take_events(RequestReceived)
    resp, effects = h.core.respond(ev.tx, status)
    assert started(h, effects) == on_final
    if on_ack is not None:
        ack = uac_request("ACK", transport=transport.upper(), to_tag=resp.to_tag,
                          branch="z9hG4bKuac1" if status >= 300 else "z9hG4bKack")
        ack.set_header("CSeq", "1 ACK")
        assert started(h, h.core.receive(ack, peer(transport), 0.1)) == on_ack


# ------------------------------------------------------------------ malformed input


def test_garbage_request_answered_400_with_reason() -> None:
    h = Harness()
    data = raw("OPTIONS sip:a@192.0.2.1 SIP/2.0",
               "Via: SIP/2.0/UDP 198.51.100.7:5070;branch=z9hG4bK1",
               "From: <sip:b@x>;tag=1", "To: <sip:a@192.0.2.1>", "Call-ID: c",
               "CSeq: 1 INVITE")
    h.recv(data)
    [(_, send)] = h.take_sent()
    assert send.peer == PEER_UDP
    resp = parse_message(send.data)
    assert isinstance(resp, SipResponse)
    assert (resp.status, resp.reason) == (400, "CSeq method does not match Request-Line")
    assert resp.to_tag
    [rej] = h.take_events(MessageRejected)
    assert rej.replied and rej.source == PEER_UDP


def test_bad_structured_header_in_new_request_answered_400() -> None:
    h = Harness()
    req = uac_request("OPTIONS")
    req.set_header("From", '"unterminated <sip:alice@198.51.100.7>;tag=1')
    h.recv(req)
    [(_, send)] = h.take_sent()
    resp = parse_message(send.data)
    assert resp.status == 400 and "Unterminated" in resp.reason  # type: ignore[union-attr]
    assert h.take_events(RequestReceived) == []


@pytest.mark.parametrize("header, value", [
    ("To", "<sip:bob@exa mple.com>"), ("From", "<sip:alice@host:99999>;tag=1"),
])
def test_bad_from_to_uri_answered_400(header: str, value: str) -> None:
    h = Harness()
    req = uac_request("INVITE")
    req.set_header(header, value)
    h.recv(req)
    [resp] = h.sent_messages()
    assert resp.status == 400  # type: ignore[union-attr]
    assert h.take_events(RequestReceived) == []


def test_bad_request_uri_answered_400() -> None:
    h = Harness()
    req = uac_request("OPTIONS")
    req.uri = "sip:bob@192.0.2.1?Route=%3Csip:x%3E"
    h.recv(req)
    [resp] = h.sent_messages()
    assert (resp.status, resp.reason) == (400, "Request-URI must not contain headers")  # type: ignore[union-attr]


def test_unusable_via_means_drop() -> None:
    h = Harness()
    req = uac_request("OPTIONS")
    req.set_header("Via", "SIP/2.0/UDP")
    h.recv(req)
    assert h.take_sent() == []
    [rej] = h.take_events(MessageRejected)
    assert not rej.replied


def test_malformed_response_and_ack_are_dropped() -> None:
    h = Harness()
    h.recv(raw("SIP/2.0 200 OK", "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1", "Call-ID: c",
               "CSeq: 1 INVITE", "From: <sip:a@b>;tag=1"))  # no To
    ack = uac_request("ACK")
    ack.set_header("CSeq", "1 INVITE")
    h.recv(ack)
    assert h.take_sent() == []
    assert [e.replied for e in h.take_events(MessageRejected)] == [False, False]


def test_unknown_uri_scheme_is_416() -> None:
    h = Harness()
    req = uac_request("OPTIONS")
    req.uri = "mailto:bob@example.com"
    h.recv(req)
    [resp] = h.sent_messages()
    assert resp.status == 416  # type: ignore[union-attr]
    assert h.take_events(RequestReceived) == []


def test_overload_is_503_with_retry_after() -> None:
    h = Harness(max_server_transactions=1, server_header="DragonPBX")
    h.recv(uac_request("OPTIONS", branch="z9hG4bKa"))
    h.recv(uac_request("OPTIONS", branch="z9hG4bKb"))
    [resp] = h.sent_messages()
    assert resp.status == 503 and resp.header("retry-after") == "5"  # type: ignore[union-attr]
    assert resp.header("server") == "DragonPBX"


def test_keepalives_and_empty_datagrams_ignored() -> None:
    h = Harness()
    assert h.core.receive_bytes(b"\r\n\r\n", PEER_UDP, 0.0) == []
    assert h.core.receive_bytes(b"\r\n", PEER_UDP, 0.0) == []


def test_late_or_unknown_timer_fire_is_harmless() -> None:
    h = Harness()
    _tx, effects = h.core.send_request(our_request("OPTIONS"), PEER_UDP)
    h.run(effects)
    data = h.take_sent()[0][1].data
    timer_e = next(e.timer_id for e in effects if isinstance(e, StartTimer))
    h.run(h.core.receive_bytes(reply_to(data, 200), PEER_UDP, 0.1))
    assert h.core.timer_fired(timer_e, 0.5) == []  # E was cancelled by the final response
    assert h.core.timer_fired(999999, 1.0) == []


def test_send_stateless_and_ack_get_a_via() -> None:
    h = Harness()
    [send] = h.core.send_stateless(our_request("OPTIONS"), PEER_UDP)
    assert isinstance(send, Send)
    assert parse_message(send.data).top_via.host == "192.0.2.1"
    [ack] = h.core.send_ack(our_request("ACK"), PEER_TCP)
    assert parse_message(ack.data).top_via.transport == "TCP"


# ------------------------------------------------------------------ TimerQueue


def test_timer_queue_orders_cancels_and_pops() -> None:
    q = TimerQueue()
    q.start(1, 5.0)
    q.start(2, 1.0)
    q.start(3, 3.0)
    q.cancel(2)
    assert q.next_deadline() == 3.0
    assert q.pop_due(2.9) == []
    q.start(4, 3.0)
    assert q.pop_due(4.0) == [3, 4]
    assert len(q) == 1
    q.start(1, 10.0)  # re-armed under the same id: the old deadline is stale
    assert q.pop_due(6.0) == []
    assert q.pop_due(10.0) == [1]
    assert q.next_deadline() is None
