"""Client transactions (RFC 3261 §17.1, RFC 6026): every timer path on a virtual
clock, no sleeping."""

from __future__ import annotations

import pytest

from engine.sip.effects import (
    ResponseReceived,
    TransactionTerminated,
    TransactionTimeout,
    TransportFailure,
)
from engine.sip.errors import TransactionStateError
from engine.sip.message import SipRequest
from tests.unit.sip._harness import PEER_TCP, PEER_UDP, Harness, our_request, reply_to


def start(h: Harness, method: str = "INVITE", peer=PEER_UDP) -> tuple[int, bytes]:
    tx, effects = h.core.send_request(our_request(method), peer)
    h.run(effects)
    sent = h.take_sent()
    assert len(sent) == 1 and sent[0][0] == 0.0
    return tx, sent[0][1].data


# ------------------------------------------------------------------ INVITE client


def test_invite_timer_a_doubles_until_timer_b() -> None:
    h = Harness()
    tx, _data = start(h)
    h.advance(40)
    times = [t for t, _ in h.take_sent()]
    assert times == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]  # A = T1, 2T1, 4T1 …
    [timeout] = h.take_events(TransactionTimeout)
    assert (timeout.tx, timeout.timer) == (tx, "B")
    assert h.take_events(TransactionTerminated)[0].tx == tx
    assert h.core.state(tx) == "terminated"
    assert h.core.counts == {"server": 0, "client": 0, "timers": 0, "awaiting_ack": 0}


def test_invite_request_gets_our_via_with_rport() -> None:
    h = Harness()
    _, data = start(h)
    sent = SipRequest  # for type narrowing below
    from engine.sip.parser import parse_message

    req = parse_message(data)
    assert isinstance(req, sent)
    via = req.top_via
    assert (via.transport, via.host, via.port) == ("UDP", "192.0.2.1", 5060)
    assert via.branch and via.branch.startswith("z9hG4bK") and via.has_rport


def test_provisional_stops_retransmission_and_timer_b() -> None:
    h = Harness()
    tx, data = start(h)
    h.advance(0.6)
    h.take_sent()
    h.recv(reply_to(data, 180))
    [ev] = h.take_events(ResponseReceived)
    assert ev.tx == tx and ev.response.status == 180
    h.advance(100)
    assert h.take_sent() == []
    assert h.take_events() == []
    assert h.core.state(tx) == "proceeding"


def test_non2xx_final_is_acked_absorbed_and_timer_d() -> None:
    h = Harness()
    tx, data = start(h)
    h.recv(reply_to(data, 486))
    [ev] = h.take_events(ResponseReceived)
    assert ev.response.status == 486
    [(_, ack_send)] = h.take_sent()
    from engine.sip.parser import parse_message

    inv, ack = parse_message(data), parse_message(ack_send.data)
    assert isinstance(ack, SipRequest) and isinstance(inv, SipRequest)
    assert ack.method == "ACK" and ack.uri == inv.uri
    assert ack.top_via.branch == inv.top_via.branch  # same transaction (§17.1.1.3)
    assert ack.to_tag == "remote1" and ack.from_tag == "ourtag"
    assert (ack.cseq.seq, ack.cseq.method) == (10, "ACK")
    assert len(ack.vias) == 1
    # the 486 again: re-ACK, no second delivery
    h.advance(1)
    h.recv(reply_to(data, 486))
    assert [s.data for _, s in h.take_sent()] == [ack_send.data]
    assert h.take_events(ResponseReceived) == []
    h.advance(30.9)  # timer D = 32 s after the first 486 (now t=31.9)
    assert h.core.state(tx) == "completed"
    h.advance(0.2)
    assert h.core.state(tx) == "terminated"


def test_2xx_accepted_retransmissions_forks_and_timer_m() -> None:
    h = Harness()
    tx, data = start(h)
    ok = reply_to(data, 200)
    h.recv(ok)
    [ev] = h.take_events(ResponseReceived)
    assert ev.response.status == 200 and not ev.retransmission
    assert h.core.state(tx) == "accepted"
    assert h.take_sent() == []  # the ACK for a 2xx is the TU's (dialog's) job
    # retransmitted before the TU sent its ACK: delivered, flagged
    h.recv(ok)
    assert h.take_events(ResponseReceived)[0].retransmission
    # the TU ACKs; a further retransmission makes the core re-send that ACK
    ack = our_request("ACK")
    ack.set_header("To", "<sip:bob@198.51.100.7>;tag=remote1")
    ack.set_header("CSeq", "10 ACK")
    h.run(h.core.send_ack(ack, PEER_UDP, invite_tx=tx))
    [(_, first_ack)] = h.take_sent()
    h.recv(ok)
    assert [s.data for _, s in h.take_sent()] == [first_ack.data]
    assert h.take_events(ResponseReceived) == []
    # another fork answers: new To tag, delivered as new
    h.recv(reply_to(data, 200, to_tag="fork2"))
    [fork] = h.take_events(ResponseReceived)
    assert fork.response.to_tag == "fork2" and not fork.retransmission
    h.advance(32.1)  # timer M
    assert h.core.state(tx) == "terminated"
    # a 2xx after the transaction is gone still reaches the TU (to ACK + BYE)
    h.recv(reply_to(data, 200, to_tag="late"))
    [late] = h.take_events(ResponseReceived)
    assert late.tx is None and late.response.to_tag == "late"


def test_invite_over_tcp_no_retransmission_and_no_timer_d() -> None:
    h = Harness()
    tx, data = start(h, peer=PEER_TCP)
    h.advance(10)
    assert h.take_sent() == []
    h.recv(reply_to(data, 603), PEER_TCP)
    assert len(h.take_sent()) == 1  # the ACK
    assert h.core.state(tx) == "terminated"
    h2 = Harness()
    _tx2, _ = start(h2, peer=PEER_TCP)
    h2.advance(32.0)
    assert h2.take_events(TransactionTimeout)[0].timer == "B"


# ------------------------------------------------------------------ CANCEL


def test_cancel_waits_for_a_provisional() -> None:
    h = Harness()
    tx, data = start(h)
    assert h.core.cancel(tx, headers=[("Reason", "SIP;cause=200;text=\"Call completed\"")]) == []
    h.advance(0.6)  # timer A still runs
    assert len(h.take_sent()) == 1
    h.recv(reply_to(data, 180))
    from engine.sip.parser import parse_message

    [cancel] = [parse_message(s.data) for _, s in h.take_sent()]
    inv = parse_message(data)
    assert isinstance(cancel, SipRequest) and isinstance(inv, SipRequest)
    assert cancel.method == "CANCEL" and cancel.uri == inv.uri
    assert cancel.top_via.branch == inv.top_via.branch
    assert (cancel.cseq.seq, cancel.cseq.method) == (10, "CANCEL")
    assert cancel.to_tag is None
    assert cancel.header("reason") == 'SIP;cause=200;text="Call completed"'
    # CANCEL is retransmitted like any non-INVITE (timer E)
    h.advance(0.5)
    assert [parse_message(s.data).method for _, s in h.take_sent()] == ["CANCEL"]
    # its 200 is absorbed; the INVITE's 487 is delivered and ACKed
    h.recv(reply_to(cancel.to_bytes(), 200, to_tag=None))
    assert h.take_events(ResponseReceived)[0].response.status == 180
    assert h.take_events() == []
    h.recv(reply_to(data, 487))
    assert h.take_events(ResponseReceived)[0].response.status == 487
    assert [parse_message(s.data).method for _, s in h.take_sent()] == ["ACK"]
    h.advance(1)
    assert h.take_sent() == []  # the CANCEL transaction completed: no more retransmission


def test_cancel_without_final_response_times_out() -> None:
    h = Harness()
    tx, data = start(h)
    h.recv(reply_to(data, 183))
    h.run(h.core.cancel(tx))
    assert len(h.take_sent()) == 1
    assert h.core.cancel(tx) == []  # only once
    h.advance(31.9)
    assert h.take_events(TransactionTimeout) == []
    h.advance(0.2)
    [t] = h.take_events(TransactionTimeout)
    assert (t.tx, t.timer) == (tx, "cancel")
    assert h.core.state(tx) == "terminated"


def test_cancel_after_final_sends_nothing_and_pending_cancel_dropped() -> None:
    h = Harness()
    tx, data = start(h)
    h.recv(reply_to(data, 200))
    assert h.core.cancel(tx) == []
    h2 = Harness()
    tx2, data2 = start(h2)
    h2.core.cancel(tx2)
    h2.recv(reply_to(data2, 486))
    sent = h2.sent_messages()
    assert [m.method for m in sent] == ["ACK"]  # type: ignore[union-attr]
    with pytest.raises(TransactionStateError):
        h2.core.cancel(12345)


# ------------------------------------------------------------------ non-INVITE client


def test_non_invite_timer_e_caps_at_t2_until_timer_f() -> None:
    h = Harness()
    tx, _ = start(h, "OPTIONS")
    h.advance(33)
    times = [t for t, _ in h.take_sent()]
    assert times == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    [t] = h.take_events(TransactionTimeout)
    assert (t.tx, t.timer) == (tx, "F")


def test_non_invite_proceeding_retransmits_every_t2() -> None:
    h = Harness()
    _tx, data = start(h, "REGISTER")
    h.advance(0.6)  # one retransmission at 0.5, next due at 1.5
    h.take_sent()
    h.recv(reply_to(data, 100, to_tag=None))
    assert h.take_events(ResponseReceived)[0].response.status == 100
    h.advance(10)
    assert [t for t, _ in h.take_sent()] == [1.5, 5.5, 9.5]


def test_non_invite_final_then_timer_k() -> None:
    h = Harness()
    tx, data = start(h, "BYE")
    h.recv(reply_to(data, 200))
    assert h.take_events(ResponseReceived)[0].tx == tx
    h.recv(reply_to(data, 200))  # retransmission absorbed in Completed
    assert h.take_events(ResponseReceived) == []
    h.advance(4.9)
    assert h.core.state(tx) == "completed"
    assert h.take_sent() == []  # no more retransmission after the final
    h.advance(0.2)
    assert h.core.state(tx) == "terminated"


def test_non_invite_tcp_terminates_on_final() -> None:
    h = Harness()
    tx, data = start(h, "MESSAGE", PEER_TCP)
    h.advance(3)
    assert h.take_sent() == []
    h.recv(reply_to(data, 202), PEER_TCP)
    assert h.core.state(tx) == "terminated"


def test_transport_error_reports_and_terminates() -> None:
    h = Harness()
    tx, _ = start(h, "OPTIONS", PEER_TCP)
    h.run(h.core.transport_error(tx, 0.1, "connection refused"))
    [f] = h.take_events(TransportFailure)
    assert (f.tx, f.reason) == (tx, "connection refused")
    assert h.core.state(tx) == "terminated"
    assert h.core.transport_error(tx, 0.2, "again") == []


def test_send_request_rejects_misuse() -> None:
    h = Harness()
    with pytest.raises(TransactionStateError):
        h.core.send_request(our_request("ACK"), PEER_UDP)
    req = our_request()
    req.add_header("Via", "SIP/2.0/UDP 192.0.2.1;branch=nocookie", first=True)
    with pytest.raises(TransactionStateError):
        h.core.send_request(req, PEER_UDP)
    from engine.ports import Peer

    with pytest.raises(TransactionStateError):
        h.core.send_request(our_request(), Peer("h", 1, "tls"))


def test_stray_responses_are_dropped() -> None:
    h = Harness()
    _, data = start(h, "OPTIONS")
    other = data.replace(b"branch=z9hG4bK", b"branch=z9hG4bKother")
    h.recv(reply_to(other, 200))
    h.recv(reply_to(data.replace(b"10 OPTIONS", b"10 INFO").replace(
        b"OPTIONS sip", b"INFO sip"), 200))  # right branch, wrong method
    assert h.take_events(ResponseReceived) == []
