"""Overload control (pure logic): the lag/shedding hysteresis, what the transaction layer
sheds (only new out-of-dialog REGISTER/INVITE, statelessly) and what it never sheds
(retransmissions, in-dialog requests, CANCEL, ACK, OPTIONS), and the pending bound."""

from __future__ import annotations

import asyncio
import random
from types import SimpleNamespace

from engine.clock import LoopClock
from engine.health import Health
from engine.overload import (
    AGE,
    LAG,
    PENDING,
    TICK_SECS,
    Overload,
    OverloadLimits,
    OverloadState,
)
from engine.ports import Peer
from engine.sip.effects import RequestReceived, Send
from engine.sip.endpoint import EndpointCore
from engine.transport.driver import Driver

LIMITS = OverloadLimits(lag=0.1, recover=1.0, max_pending=2, retry_after=5)
SRC = Peer("127.0.0.1", 5070, "udp")


def _request(method: str, branch: str, *, to_tag: str = "", cseq: int = 1,
             cseq_method: str | None = None) -> bytes:
    to = "<sip:u1@pbx.test>" + (f";tag={to_tag}" if to_tag else "")
    return (f"{method} sip:pbx.test SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK{branch};rport\r\n"
            f"From: <sip:u1@pbx.test>;tag=f1\r\nTo: {to}\r\nCall-ID: c-{branch}\r\n"
            f"CSeq: {cseq} {cseq_method or method}\r\nMax-Forwards: 70\r\n"
            "Content-Length: 0\r\n\r\n").encode()


def _status(effects: list) -> int | None:
    sends = [e for e in effects if isinstance(e, Send)]
    return int(sends[-1].data.split(b" ", 2)[1]) if sends else None


# --------------------------------------------------------------------------- hysteresis


def test_lag_starts_shedding_and_only_a_calm_period_ends_it() -> None:
    state = OverloadState(LIMITS)
    assert state.update(0.0, lag=0.01, age=0.0, shed=0, pending=50) is None and not state.lagging
    # one late tick is a stall (a reload, a collection), not overload
    assert state.update(0.05, lag=0.5, age=0.5, shed=0, pending=50) is None and not state.overloaded
    assert state.update(0.1, lag=0.01, age=0.0, shed=0, pending=50) is None
    assert state.update(0.15, lag=0.15, age=0.0, shed=0, pending=50) is None
    assert state.update(0.2, lag=0.15, age=0.0, shed=0, pending=50) == "overloaded"
    assert state.lagging and state.overloaded
    # below the threshold but above half of it: not calm, still shedding
    state.update(0.5, lag=0.07, age=0.0, shed=10, pending=50)
    state.update(2.0, lag=0.07, age=0.0, shed=10, pending=50)
    assert state.lagging
    # calm (< half) for `recover` seconds ends lagging; overloaded ends `recover` later
    state.update(2.1, lag=0.01, age=0.0, shed=5, pending=50)
    state.update(3.0, lag=0.01, age=0.0, shed=5, pending=50)
    assert state.lagging
    state.update(3.2, lag=0.01, age=0.0, shed=0, pending=50)
    assert not state.lagging and state.overloaded
    assert state.update(3.8, lag=0.01, age=0.0, shed=0, pending=50) is None
    assert state.update(4.1, lag=0.01, age=0.0, shed=0, pending=50) == "recovered"
    assert not state.overloaded


def test_shedding_or_stale_datagrams_keep_the_node_overloaded() -> None:
    state = OverloadState(LIMITS)
    assert state.update(0.0, lag=0.0, age=0.0, shed=3, pending=50) == "overloaded"
    assert not state.lagging  # shedding by age/pending does not shed everything
    state.update(0.85, lag=0.0, age=0.2, shed=0, pending=50)  # datagrams waited past the threshold
    state.update(0.9, lag=0.0, age=0.2, shed=0, pending=50)  # ... in two ticks in a row
    assert state.update(1.5, lag=0.0, age=0.0, shed=0, pending=50) is None
    assert state.update(2.0, lag=0.0, age=0.0, shed=0, pending=50) == "recovered"


def test_lag_without_sip_work_in_flight_is_not_overload() -> None:
    state = OverloadState(LIMITS)  # e.g. a reload blocking the loop, no traffic
    for tick in range(10):
        assert state.update(tick * 0.05, lag=0.5, age=0.5, shed=0, pending=0) is None
    assert not state.lagging and not state.overloaded


def test_zero_lag_threshold_disables_lag_and_age() -> None:
    state = OverloadState(OverloadLimits(lag=0.0, recover=1.0))
    assert state.update(0.0, lag=5.0, age=5.0, shed=0, pending=50) is None
    assert not state.lagging and not state.overloaded


# --------------------------------------------------------------------------- admission


def _port(core: EndpointCore, age: float = 0.0) -> SimpleNamespace:
    udp = SimpleNamespace(age=age, max_age=age, discarded=0, stale_age=float("inf"))
    return SimpleNamespace(core=core, driver=SimpleNamespace(udp=udp))


def test_new_register_and_invite_are_shed_statelessly_with_retry_after() -> None:
    core = EndpointCore(sent_by={"udp": ("127.0.0.1", 5060)})
    health = Health()
    overload = Overload(LIMITS, health, rng=random.Random(1))
    port = _port(core, age=0.25)
    overload.attach(port)
    # not overloaded: an old datagram alone (a stall) is served
    effects = core.receive_bytes(_request("REGISTER", "stall"), SRC, 1.0)
    assert [e for e in effects if isinstance(e, RequestReceived)]
    core._pending.update(range(1000, 1010))  # SIP work in flight
    overload.observe(0.95, lag=0.0)
    port.driver.udp.max_age = 0.25
    overload.observe(1.0, lag=0.0)  # old datagrams in two ticks: overloaded
    assert overload.state.overloaded and port.driver.udp.stale_age == 0.1 * 2.5
    for method in ("REGISTER", "INVITE"):
        effects = core.receive_bytes(_request(method, f"new{method}"), SRC, 1.0)
        assert _status(effects) == 503
        assert not [e for e in effects if isinstance(e, RequestReceived)]
        data = next(e for e in effects if isinstance(e, Send)).data
        retry = int(data.split(b"Retry-After: ")[1].split(b"\r\n")[0])
        assert 5 <= retry <= 10 and b"X-Reason: overloaded" in data
    assert core.counts["server"] == 1 and core.shed == 2 and overload.shed[AGE] == 2
    core._pending.clear()
    assert health.problems() == ["overloaded"]


def test_what_is_never_shed() -> None:
    core = EndpointCore(sent_by={"udp": ("127.0.0.1", 5060)})
    overload = Overload(LIMITS)
    port = _port(core)
    overload.attach(port)
    effects = core.receive_bytes(_request("INVITE", "inv1"), SRC, 1.0)  # admitted
    assert [e for e in effects if isinstance(e, RequestReceived)] and core.pending == 1
    overload.state.lagging = True  # from now on every new REGISTER/INVITE is shed
    # its retransmission is absorbed by its transaction (100 again), not refused
    assert _status(core.receive_bytes(_request("INVITE", "inv1"), SRC, 1.1)) == 100
    # CANCEL of it, OPTIONS, an in-dialog re-INVITE and BYE reach the transaction user
    assert _status(core.receive_bytes(_request("CANCEL", "inv1"), SRC, 1.2)) == 487
    for method, branch in (("OPTIONS", "o1"), ("INVITE", "re1"), ("BYE", "bye1")):
        effects = core.receive_bytes(
            _request(method, branch, to_tag="" if method == "OPTIONS" else "t9", cseq=3),
            SRC, 1.3)
        assert [e for e in effects if isinstance(e, RequestReceived)], method
    assert _status(core.receive_bytes(_request("REGISTER", "r1"), SRC, 1.4)) == 503
    assert overload.shed[LAG] == 1


def test_pending_bound_counts_requests_until_their_first_real_answer() -> None:
    core = EndpointCore(sent_by={"udp": ("127.0.0.1", 5060)})
    overload = Overload(LIMITS)
    overload.attach(_port(core))
    txs = []
    for i in range(2):
        effects = core.receive_bytes(_request("REGISTER", f"p{i}"), SRC, 1.0)
        txs += [e.tx for e in effects if isinstance(e, RequestReceived)]
    assert core.pending == 2
    assert _status(core.receive_bytes(_request("REGISTER", "p2"), SRC, 1.0)) == 503
    assert overload.shed[PENDING] == 1
    core.respond(txs[0], 401)
    assert core.pending == 1
    effects = core.receive_bytes(_request("REGISTER", "p3"), SRC, 1.0)
    assert [e for e in effects if isinstance(e, RequestReceived)]


# --------------------------------------------------------------------------- the tick


async def test_a_calm_node_ticks_rarely_and_sip_input_brings_the_fast_tick_back() -> None:
    """Idle CPU: 20 ticks a second were half of an idle node's CPU. While calm the tick
    waits a second; the next datagram (or TCP message) re-arms the 50 ms tick before it
    is handled, and work in flight keeps the fast tick."""
    loop = asyncio.get_running_loop()
    core = EndpointCore(sent_by={"udp": ("127.0.0.1", 5060)})
    events: list = []
    sent: list[bytes] = []
    driver = Driver(core, LoopClock(loop), events.append)
    driver.udp = SimpleNamespace(  # type: ignore[assignment]
        age=0.0, max_age=0.0, discarded=0, stale_age=float("inf"),
        send=lambda data, host, port: sent.append(data))
    overload = Overload(LIMITS)
    overload.attach(SimpleNamespace(core=core, driver=driver))
    ticks: list[float] = []
    observe = overload.observe
    overload.observe = lambda now, lag: (ticks.append(now), observe(now, lag))[1]  # type: ignore[method-assign]

    async def ticks_within(seconds: float) -> int:
        before = len(ticks)
        await asyncio.sleep(seconds)
        return len(ticks) - before

    overload.start()
    try:
        await asyncio.sleep(TICK_SECS * 3)  # the first tick found the node calm
        assert overload.idle and driver.on_input is not None
        assert await ticks_within(0.3) == 0

        driver.on_datagram(_request("OPTIONS", "o1"), ("127.0.0.1", 5070))
        assert not overload.idle and driver.on_input is None
        assert [e for e in events if isinstance(e, RequestReceived)]  # handled as ever
        assert await ticks_within(TICK_SECS * 4) >= 1
        assert overload.idle  # calm again after that tick

        core._pending.update(range(1000, 1000 + OverloadState.MIN_PENDING))  # work in flight
        driver.on_datagram(_request("OPTIONS", "o2"), ("127.0.0.1", 5070))
        assert await ticks_within(0.3) >= 2 and not overload.idle
        core._pending.clear()
        await asyncio.sleep(TICK_SECS * 3)
        assert overload.idle

        driver.on_stream(SimpleNamespace(), [])  # type: ignore[arg-type]  # TCP input too
        assert not overload.idle and driver.on_input is None
    finally:
        overload.stop()
    assert driver.on_input is None
