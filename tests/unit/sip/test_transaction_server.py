"""Server transactions (RFC 3261 §17.2, RFC 6026 Accepted state, §13.3.1.4 2xx
retransmission, §9.2 CANCEL) on a virtual clock."""

from __future__ import annotations

import pytest

from engine.sip.effects import (
    AckTimeout,
    CancelReceived,
    RequestReceived,
    TransactionTerminated,
    TransactionTimeout,
)
from engine.sip.errors import TransactionStateError
from engine.sip.message import SipRequest, SipResponse
from engine.sip.parser import parse_message
from tests.unit.sip._harness import PEER_TCP, PEER_UDP, Harness, uac_request


def new_call(h: Harness, peer=PEER_UDP, **kw) -> tuple[int, SipRequest]:
    inv = uac_request("INVITE", transport=peer.transport.upper(), **kw)
    h.recv(inv, peer)
    [ev] = h.take_events(RequestReceived)
    assert ev.request.method == "INVITE" and ev.tx is not None
    return ev.tx, inv


def statuses(h: Harness) -> list[int]:
    out = []
    for m in h.sent_messages():
        assert isinstance(m, SipResponse)
        out.append(m.status)
    return out


# ------------------------------------------------------------------ INVITE server


def test_invite_gets_100_and_retransmissions_resend_last_provisional() -> None:
    h = Harness()
    tx, inv = new_call(h)
    [trying] = h.sent_messages()
    assert isinstance(trying, SipResponse) and trying.status == 100
    assert trying.to_tag is None
    h.recv(inv)  # retransmission: 100 again, not a new call
    assert statuses(h) == [100]
    assert h.take_events(RequestReceived) == []
    resp, effects = h.core.respond(tx, 180)
    h.run(effects)
    assert statuses(h) == [180]
    h.recv(inv)
    assert statuses(h) == [180]
    assert resp.to_tag  # a To tag is chosen once per transaction…
    final, effects = h.core.respond(tx, 486)
    h.run(effects)
    assert final.to_tag == resp.to_tag  # …and kept for the final response


def test_non2xx_timer_g_backoff_until_timer_h() -> None:
    h = Harness()
    tx, _ = new_call(h)
    h.take_sent()
    h.run(h.core.respond(tx, 486)[1])
    h.advance(40)
    times = [t for t, _ in h.take_sent()]
    # sent at 0, then G = .5, 1, 2, 4, 4, 4 … until H at 32
    assert times == [0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    [t] = h.take_events(TransactionTimeout)
    assert (t.tx, t.timer) == (tx, "H")
    assert h.core.state(tx) == "terminated"


def test_ack_confirms_then_timer_i() -> None:
    h = Harness()
    tx, inv = new_call(h)
    resp, effects = h.core.respond(tx, 404)
    h.run(effects)
    h.take_sent()
    ack = uac_request("ACK", cseq=1, to_tag=resp.to_tag)
    ack.set_header("CSeq", "1 ACK")
    h.recv(ack)
    assert h.core.state(tx) == "confirmed"
    assert h.take_events(RequestReceived) == []  # ACK for non-2xx stays in the transaction
    h.recv(ack)  # retransmitted ACK absorbed
    h.recv(inv)  # and so is the INVITE
    h.advance(4.9)
    assert h.take_sent() == []  # G stopped
    assert h.core.state(tx) == "confirmed"
    h.advance(0.2)  # timer I = T4
    assert h.core.state(tx) == "terminated"
    assert h.take_events(TransactionTimeout) == []


def test_2xx_retransmitted_until_ack_and_invite_retransmission_absorbed() -> None:
    h = Harness()
    tx, inv = new_call(h)
    h.take_sent()
    ok, effects = h.core.respond(tx, 200, headers=[("Contact", "<sip:bob@192.0.2.1>")],
                                 body=b"v=0\r\n", content_type="application/sdp")
    h.run(effects)
    assert h.core.state(tx) == "accepted"
    h.advance(3.6)
    assert [t for t, _ in h.take_sent()] == [0, 0.5, 1.5, 3.5]
    # RFC 6026: the INVITE retransmitted after our 2xx is absorbed — no new call
    h.recv(inv)
    assert h.take_events(RequestReceived) == []
    assert h.take_sent() == []
    # the ACK (its own branch) stops the 2xx and is delivered once
    ack = uac_request("ACK", branch="z9hG4bKack1", to_tag=ok.to_tag)
    ack.set_header("CSeq", "1 ACK")
    h.recv(ack)
    [ev] = h.take_events(RequestReceived)
    assert ev.request.method == "ACK" and ev.tx is None and ev.invite_tx == tx
    h.recv(ack)
    assert h.take_events(RequestReceived) == []
    h.advance(30)
    assert h.take_sent() == []
    assert h.take_events(AckTimeout) == []
    assert h.core.state(tx) == "terminated"  # timer L


def test_2xx_never_acked_gives_ack_timeout() -> None:
    h = Harness()
    tx, _ = new_call(h)
    h.take_sent()
    h.run(h.core.respond(tx, 200)[1])
    h.advance(31.9)
    assert h.take_events(AckTimeout) == []
    h.advance(0.2)
    [t] = h.take_events(AckTimeout)
    assert t.tx == tx and t.response.status == 200 and t.request.method == "INVITE"
    times = [t for t, _ in h.take_sent()]
    assert times == [0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert h.core.counts["awaiting_ack"] == 0


def test_2xx_over_tcp_not_retransmitted_but_ack_awaited() -> None:
    h = Harness()
    tx, _ = new_call(h, PEER_TCP)
    h.take_sent()
    h.run(h.core.respond(tx, 200)[1])
    h.advance(40)
    assert len(h.take_sent()) == 1
    assert len(h.take_events(AckTimeout)) == 1
    h2 = Harness(retransmit_2xx_reliable=True)
    tx2, _ = new_call(h2, PEER_TCP)
    h2.take_sent()
    h2.run(h2.core.respond(tx2, 200)[1])
    h2.advance(2)
    assert len(h2.take_sent()) == 3


def test_tu_may_resend_2xx_in_accepted_but_not_other_finals() -> None:
    h = Harness()
    tx, _ = new_call(h)
    ok, effects = h.core.respond(tx, 200)
    h.run(effects)
    h.take_sent()
    h.run(h.core.send_response(tx, ok))
    assert len(h.take_sent()) == 1
    with pytest.raises(TransactionStateError):
        h.core.respond(tx, 500)
    with pytest.raises(TransactionStateError):
        h.core.respond(tx, 180)
    with pytest.raises(TransactionStateError):
        h.core.respond(999, 200)


def test_auto_trying_can_be_disabled() -> None:
    h = Harness(auto_trying=False)
    new_call(h)
    assert h.take_sent() == []


# ------------------------------------------------------------------ CANCEL (server side)


def test_cancel_answered_200_and_invite_487() -> None:
    h = Harness()
    tx, _inv = new_call(h)
    h.take_sent()
    cancel = uac_request("CANCEL")
    h.recv(cancel)
    msgs = h.sent_messages()
    assert [(m.status, m.cseq.method) for m in msgs] == [(200, "CANCEL"), (487, "INVITE")]  # type: ignore[union-attr]
    assert msgs[0].top_via.branch == "z9hG4bKuac1"
    [ev] = h.take_events(CancelReceived)
    assert (ev.invite_tx, ev.answered) == (tx, True)
    assert h.take_events(RequestReceived) == []
    assert h.core.state(tx) == "completed"
    h.recv(cancel)  # CANCEL retransmission: its 200 again
    assert statuses(h) == [200]
    with pytest.raises(TransactionStateError):
        h.core.respond(tx, 200)  # the TU's late answer is refused


def test_cancel_unknown_gets_481_and_after_final_only_200() -> None:
    h = Harness()
    h.recv(uac_request("CANCEL", branch="z9hG4bKnothing"))
    assert statuses(h) == [481]
    tx, _ = new_call(h)
    h.take_sent()
    h.run(h.core.respond(tx, 200)[1])
    h.take_sent()
    h.recv(uac_request("CANCEL"))
    assert statuses(h) == [200]
    assert h.take_events(CancelReceived) == []
    assert h.core.state(tx) == "accepted"


def test_cancel_left_to_the_tu() -> None:
    h = Harness(auto_cancel=False)
    tx, _ = new_call(h)
    h.take_sent()
    h.recv(uac_request("CANCEL"))
    assert h.take_sent() == []
    [ev] = h.take_events(CancelReceived)
    assert not ev.answered and ev.invite_tx == tx
    h.run(h.core.respond(ev.cancel_tx, 200)[1])
    h.run(h.core.respond(tx, 487)[1])
    assert statuses(h) == [200, 487]


# ------------------------------------------------------------------ non-INVITE server


def test_non_invite_absorbs_in_trying_resends_final_then_timer_j() -> None:
    h = Harness()
    reg = uac_request("REGISTER", branch="z9hG4bKreg1")
    h.recv(reg)
    [ev] = h.take_events(RequestReceived)
    assert h.take_sent() == []  # no 100 for non-INVITE
    h.recv(reg)
    assert h.take_sent() == [] and h.take_events(RequestReceived) == []
    h.run(h.core.respond(ev.tx, 200, headers=[("Expires", "300")])[1])
    assert statuses(h) == [200]
    h.advance(10)
    h.recv(reg)
    assert statuses(h) == [200]
    h.advance(21.9)
    assert h.core.state(ev.tx) == "completed"
    h.advance(0.2)
    assert h.core.state(ev.tx) == "terminated"
    assert h.take_events(TransactionTerminated)[0].tx == ev.tx
    h.recv(reg)  # after timer J the same branch is a new transaction
    assert len(h.take_events(RequestReceived)) == 1


def test_non_invite_provisional_then_final() -> None:
    h = Harness()
    msg = uac_request("MESSAGE", branch="z9hG4bKm1")
    h.recv(msg)
    [ev] = h.take_events(RequestReceived)
    h.run(h.core.respond(ev.tx, 100)[1])
    h.recv(msg)
    assert statuses(h) == [100, 100]
    h.run(h.core.respond(ev.tx, 202)[1])
    assert statuses(h) == [202]
    with pytest.raises(TransactionStateError):
        h.core.respond(ev.tx, 200)


def test_non_invite_over_tcp_terminates_on_final() -> None:
    h = Harness()
    h.recv(uac_request("OPTIONS", transport="TCP"), PEER_TCP, flow="conn-7")
    [ev] = h.take_events(RequestReceived)
    assert ev.flow == "conn-7"
    h.run(h.core.respond(ev.tx, 200)[1])
    [(_, send)] = h.take_sent()
    assert send.flow == "conn-7"
    assert h.core.state(ev.tx) == "terminated"


def test_response_is_sent_to_the_stamped_via() -> None:
    h = Harness()
    # NATed client: Via says 10.0.0.5:5060 with rport, packet from 198.51.100.7:5070
    h.recv(uac_request("OPTIONS", host="10.0.0.5", port=5060, rport=True))
    [ev] = h.take_events(RequestReceived)
    via = ev.request.top_via
    assert via.received == "198.51.100.7" and via.rport == 5070
    h.run(h.core.respond(ev.tx, 200)[1])
    [(_, send)] = h.take_sent()
    assert (send.peer.host, send.peer.port) == ("198.51.100.7", 5070)
    resp = parse_message(send.data)
    assert resp.top_via.received == "198.51.100.7" and resp.top_via.rport == 5070
    # without rport: received IP, Via port (§18.2.2)
    h.recv(uac_request("OPTIONS", branch="z9hG4bK2", host="10.0.0.5", port=5062, rport=False))
    [ev] = h.take_events(RequestReceived)
    h.run(h.core.respond(ev.tx, 200)[1])
    [(_, send)] = h.take_sent()
    assert (send.peer.host, send.peer.port) == ("198.51.100.7", 5062)
    # same host, no rport: nothing added
    h.recv(uac_request("OPTIONS", branch="z9hG4bK3", rport=False))
    [ev] = h.take_events(RequestReceived)
    assert "received" not in ev.request.top_via.params


def test_rfc2543_matching_without_magic_cookie() -> None:
    h = Harness()
    inv = uac_request("INVITE", branch="oldstyle1")
    h.recv(inv)
    [ev] = h.take_events(RequestReceived)
    h.take_sent()
    h.recv(inv)
    assert statuses(h) == [100]
    resp, effects = h.core.respond(ev.tx, 480)
    h.run(effects)
    h.take_sent()
    ack = uac_request("ACK", branch="oldstyle1", to_tag=resp.to_tag)
    ack.set_header("CSeq", "1 ACK")
    h.recv(ack)
    assert h.core.state(ev.tx) == "confirmed"
