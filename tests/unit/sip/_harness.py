"""A fake driver for the endpoint core: executes effects against a virtual clock."""

from __future__ import annotations

import random
from typing import Any

from engine.ports import Peer
from engine.sip.builders import IdGenerator, make_request
from engine.sip.effects import CancelTimer, Send, StartTimer, TimerConfig, TimerQueue
from engine.sip.endpoint import EndpointCore
from engine.sip.message import SipRequest, SipResponse
from engine.sip.parser import parse_message

US_UDP = ("192.0.2.1", 5060)
PEER_UDP = Peer("198.51.100.7", 5070, "udp")
PEER_TCP = Peer("198.51.100.7", 40001, "tcp")


class Harness:
    def __init__(self, **kw: Any):
        self.core = EndpointCore(
            sent_by={"udp": US_UDP, "tcp": US_UDP}, ids=IdGenerator(random.Random(1)),
            timers=TimerConfig(t1=0.5, t2=4.0, t4=5.0), **kw)
        self.now = 0.0
        self.timers = TimerQueue()
        self.sent: list[tuple[float, Send]] = []
        self.events: list[Any] = []

    def run(self, effects: list[Any]) -> list[Any]:
        for e in effects:
            if isinstance(e, Send):
                self.sent.append((self.now, e))
            elif isinstance(e, StartTimer):
                self.timers.start(e.timer_id, self.now + e.delay)
            elif isinstance(e, CancelTimer):
                self.timers.cancel(e.timer_id)
            else:
                self.events.append(e)
        return effects

    def advance(self, dt: float) -> None:
        target = self.now + dt
        while True:
            deadline = self.timers.next_deadline()
            if deadline is None or deadline > target + 1e-9:
                break
            self.now = deadline
            for tid in self.timers.pop_due(deadline):
                self.run(self.core.timer_fired(tid, deadline))
        self.now = target

    def recv(self, data: bytes | SipRequest | SipResponse, peer: Peer = PEER_UDP,
             flow: str | None = None) -> None:
        if not isinstance(data, bytes):
            data = data.to_bytes()
        self.run(self.core.receive_bytes(data, peer, self.now, flow))

    # ---- inspection helpers

    def take_sent(self) -> list[tuple[float, Send]]:
        out, self.sent = self.sent, []
        return out

    def sent_messages(self) -> list[SipRequest | SipResponse]:
        return [parse_message(s.data) for _, s in self.take_sent()]

    def take_events(self, kind: type | None = None) -> list[Any]:
        out = [e for e in self.events if kind is None or isinstance(e, kind)]
        self.events = [e for e in self.events if not (kind is None or isinstance(e, kind))]
        return out


def uac_request(method: str = "INVITE", *, branch: str = "z9hG4bKuac1", cseq: int = 1,
                transport: str = "UDP", host: str = "198.51.100.7", port: int = 5070,
                rport: bool = True, to_tag: str | None = None, body: bytes = b"",
                call_id: str = "call-1@uac", from_tag: str = "uactag",
                extra: tuple[tuple[str, str], ...] = ()) -> SipRequest:
    """A request as a remote UAC would send it to us."""
    via = f"SIP/2.0/{transport} {host}:{port};branch={branch}" + (";rport" if rport else "")
    to = "<sip:bob@192.0.2.1>" + (f";tag={to_tag}" if to_tag else "")
    return make_request(method, "sip:bob@192.0.2.1", via=via, from_=f"<sip:alice@{host}>;tag="
                        f"{from_tag}", to=to, call_id=call_id, cseq=cseq,
                        contact=f"<sip:alice@{host}:{port}>", headers=list(extra), body=body)


def our_request(method: str = "INVITE", *, uri: str = "sip:bob@198.51.100.7:5070") -> SipRequest:
    """A request we send (the core adds the Via)."""
    return make_request(method, uri, from_="<sip:pbx@192.0.2.1>;tag=ourtag",
                        to="<sip:bob@198.51.100.7>", call_id="out-1@pbx", cseq=10,
                        contact="<sip:pbx@192.0.2.1:5060>")


def reply_to(request_bytes: bytes, status: int, *, to_tag: str | None = "remote1",
             reason: str | None = None) -> bytes:
    """The response a remote UAS would send to one of our requests."""
    from engine.sip.builders import make_response

    req = parse_message(request_bytes)
    assert isinstance(req, SipRequest)
    return make_response(req, status, reason, to_tag=to_tag).to_bytes()
