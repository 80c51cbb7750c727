"""NgCorrelator, resend policy and error mapping driven by a fake clock (no sockets)."""

from __future__ import annotations

from typing import Any

import pytest

from engine.clock import FakeClock
from engine.errors import MediaError
from engine.rtpengine.errors import (
    MediaTimeout,
    MediaUnavailable,
    NgError,
    NgLoadLimit,
    NgPlaybackError,
    NgProtocolError,
    NgSdpError,
    NgUnknownCall,
)
from engine.rtpengine.ng import (
    CookieFactory,
    NgCorrelator,
    NgTransaction,
    ResendPolicy,
    bencode,
    check_reply,
    error_for,
)

# --------------------------------------------------------------------------- error mapping

ERRORS = [
    ({"result": "ok"}, None),
    ({"result": "pong"}, None),
    ({"result": "ok", "warning": "Call-ID not found or tags didn't match"}, None),
    ({"result": "error", "error-reason": "Unknown call-id"}, NgUnknownCall),
    ({"result": "error", "error-reason": "Unknown call-ID"}, NgUnknownCall),
    ({"result": "error", "error-reason": "Call-ID not found or tags didn't match"},
     NgUnknownCall),
    ({"result": "error", "error-reason": "No SDP body in message"}, NgSdpError),
    ({"result": "error", "error-reason": "Incomplete SDP specification"}, NgSdpError),
    ({"result": "error", "error-reason": "Failed to parse SDP"}, NgSdpError),
    ({"result": "error", "error-reason": "Failed to start media playback from file"},
     NgPlaybackError),
    ({"result": "error", "error-reason": "No participant party specified"}, NgError),
    ({"result": "error", "error-reason": "Unrecognized command"}, NgError),
    ({"result": "error"}, NgError),
    ({"result": "load limit", "message": "Parallel session limit reached"}, NgLoadLimit),
    ({"result": "surprise"}, NgError),
    ({}, NgError),
]


@pytest.mark.parametrize(("reply", "expected"), ERRORS)
def test_error_mapping(reply: dict[str, Any], expected: type[Exception] | None) -> None:
    error = error_for("offer", reply)
    if expected is None:
        assert error is None
        assert check_reply("offer", reply) is reply
        return
    assert type(error) is expected
    assert isinstance(error, MediaError)
    assert error.command == "offer"
    assert error.reply is reply
    with pytest.raises(expected):
        check_reply("offer", reply)


def test_error_text_names_command_and_reason() -> None:
    error = error_for("query", {"result": "error", "error-reason": "Unknown call-id"})
    assert str(error) == "rtpengine query: Unknown call-id"
    assert error.reason == "Unknown call-id"


# --------------------------------------------------------------------------- resend policy


def test_default_policy() -> None:
    policy = ResendPolicy()
    assert policy.attempts == 3
    assert policy.budget == pytest.approx(3.5)
    assert [policy.timeout_for(n) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]


@pytest.mark.parametrize("timeouts", [(), (0.0,), (1.0, -1.0), (float("nan"),)])
def test_policy_validation(timeouts: tuple[float, ...]) -> None:
    with pytest.raises(ValueError):
        ResendPolicy(timeouts)


def test_exponential_policy_with_cap() -> None:
    assert ResendPolicy.exponential(0.25, 5, cap=1.0).attempt_timeouts == \
        (0.25, 0.5, 1.0, 1.0, 1.0)
    assert ResendPolicy.exponential(1, 3, factor=3).attempt_timeouts == (1, 3, 9)


# --------------------------------------------------------------------------- correlator


POLICY = ResendPolicy((0.5, 1.0, 2.0))


class Harness:
    def __init__(self, policy: ResendPolicy = POLICY):
        self.clock = FakeClock()
        self.sent: list[bytes] = []
        self.results: list[tuple[str, Any, Exception | None]] = []
        self.corr = NgCorrelator(self.clock, cookie_factory=CookieFactory("t"))
        self.policy = policy

    def send(self, datagram: bytes) -> None:
        self.sent.append(datagram)

    def done(self, tx: NgTransaction, reply: Any, error: Exception | None) -> None:
        self.results.append((tx.cookie, reply, error))

    def start(self, body: dict[str, Any] | None = None) -> NgTransaction:
        return self.corr.start(body or {"command": "ping"}, send=self.send, on_done=self.done,
                               policy=self.policy)

    def reply(self, cookie: str, body: dict[str, Any]) -> NgTransaction | None:
        return self.corr.feed(cookie.encode() + b" " + bencode(body))


def test_reply_completes_and_disarms_the_timer() -> None:
    h = Harness()
    tx = h.start({"command": "offer", "call-id": "c1"})
    assert h.sent == [b"t_1 d7:call-id2:c17:command5:offere"]
    assert h.clock.pending() == 1
    assert h.reply(tx.cookie, {"result": "ok", "sdp": "v=0"}) is tx
    assert h.results == [("t_1", {"result": "ok", "sdp": "v=0"}, None)]
    assert h.clock.pending() == 0
    assert len(h.corr) == 0
    h.clock.advance(10)
    assert len(h.sent) == 1 and len(h.results) == 1


def test_resends_the_same_datagram_then_times_out() -> None:
    h = Harness()
    tx = h.start()
    h.clock.advance(0.49)
    assert len(h.sent) == 1
    h.clock.advance(0.01)  # first attempt's 0.5 s are over
    assert h.sent == [tx.datagram, tx.datagram]
    h.clock.advance(0.99)
    assert len(h.sent) == 2
    h.clock.advance(0.01)
    assert h.sent == [tx.datagram] * 3
    assert tx.attempt == 3
    h.clock.advance(1.99)
    assert h.results == []
    h.clock.advance(0.01)  # 3.5 s budget spent
    [(cookie, reply, error)] = h.results
    assert cookie == tx.cookie and reply is None
    assert isinstance(error, MediaTimeout)
    assert "3 attempts" in str(error) and "3.5 s" in str(error)
    assert len(h.corr) == 0
    # a reply arriving after we gave up is counted, not delivered
    assert h.reply(tx.cookie, {"result": "pong"}) is None
    assert h.corr.late_replies == 1
    assert len(h.results) == 1


def test_reply_to_a_resend_completes_once() -> None:
    h = Harness()
    tx = h.start()
    h.clock.advance(0.5)
    assert len(h.sent) == 2
    h.reply(tx.cookie, {"result": "pong"})
    h.reply(tx.cookie, {"result": "pong"})  # the answer to the first copy, late
    assert len(h.results) == 1
    assert h.corr.late_replies == 1


def test_single_attempt_policy() -> None:
    h = Harness(ResendPolicy((1.0,)))
    h.start()
    h.clock.advance(1.0)
    assert len(h.sent) == 1
    assert isinstance(h.results[0][2], MediaTimeout)


def test_replies_are_matched_by_cookie_not_order() -> None:
    h = Harness()
    first, second = h.start({"command": "ping"}), h.start({"command": "query", "call-id": "x"})
    h.reply(second.cookie, {"result": "error", "error-reason": "Unknown call-id"})
    h.reply(first.cookie, {"result": "pong"})
    assert [c for c, _, _ in h.results] == [second.cookie, first.cookie]
    assert isinstance(h.results[0][2], NgUnknownCall)
    assert h.results[0][2].command == "query"
    assert h.results[1][1] == {"result": "pong"}


def test_unknown_cookie_is_ignored() -> None:
    h = Harness()
    h.start()
    assert h.reply("other_1", {"result": "pong"}) is None
    assert h.results == [] and h.corr.late_replies == 1


def test_malformed_body_fails_its_transaction() -> None:
    h = Harness()
    tx = h.start()
    assert h.corr.feed(tx.cookie.encode() + b" d6:result") is tx
    assert isinstance(h.results[0][2], NgProtocolError)
    assert h.clock.pending() == 0


def test_datagram_without_cookie_raises() -> None:
    h = Harness()
    with pytest.raises(NgProtocolError):
        h.corr.feed(b"garbage")


def test_cancel_forgets_without_completing() -> None:
    h = Harness()
    tx = h.start()
    assert h.corr.cancel(tx.cookie)
    assert not h.corr.cancel(tx.cookie)
    h.clock.advance(10)
    assert h.results == [] and len(h.sent) == 1


def test_fail_all() -> None:
    h = Harness()
    h.start()
    h.start()
    assert h.corr.fail_all(lambda tx: MediaUnavailable(f"gone {tx.command}")) == 2
    assert [str(e) for _, _, e in h.results] == ["gone ping", "gone ping"]
    assert h.clock.pending() == 0


def test_send_error_fails_at_once() -> None:
    h = Harness()

    def broken(datagram: bytes) -> None:
        raise ConnectionRefusedError("refused")

    h.corr.start({"command": "ping"}, send=broken, on_done=h.done, policy=h.policy)
    [(_, _, error)] = h.results
    assert isinstance(error, MediaUnavailable) and "refused" in str(error)
    assert h.clock.pending() == 0


def test_completion_during_send_is_safe() -> None:
    """A socket may report an error synchronously while sending (asyncio calls
    error_received inside sendto); the transaction must complete exactly once."""
    h = Harness()

    def send_and_fail(datagram: bytes) -> None:
        h.corr.fail_all(lambda tx: MediaUnavailable("refused"))

    h.corr.start({"command": "ping"}, send=send_and_fail, on_done=h.done, policy=h.policy)
    assert len(h.results) == 1
    h.clock.advance(10)
    assert len(h.results) == 1


def test_explicit_cookie_must_not_be_in_flight() -> None:
    h = Harness()
    h.corr.start({"command": "ping"}, send=h.send, on_done=h.done, policy=h.policy, cookie="x_1")
    with pytest.raises(ValueError, match="in flight"):
        h.corr.start({"command": "ping"}, send=h.send, on_done=h.done, policy=h.policy,
                     cookie="x_1")
