"""Next-hop choice and resolution (no network: getaddrinfo is faked)."""

from __future__ import annotations

import socket

import pytest

from engine.clock import FakeClock
from engine.errors import SipTransportError
from engine.ports import Peer
from engine.sip.uri import parse_uri
from engine.transport.resolve import Resolver, Target, parse_target, target_of


@pytest.mark.parametrize(("text", "default", "expected"), [
    ("sip:1.2.3.4", "udp", Target("1.2.3.4", None, "udp")),
    ("sip:alice@1.2.3.4:5070", "udp", Target("1.2.3.4", 5070, "udp")),
    ("sip:1.2.3.4;transport=TCP", "udp", Target("1.2.3.4", None, "tcp")),
    ("sip:1.2.3.4:5080", "tcp", Target("1.2.3.4", 5080, "tcp")),
    ("sips:pbx.example.com", "udp", Target("pbx.example.com", None, "tls")),
    ("sip:[2001:db8::1]:5062", "udp", Target("2001:db8::1", 5062, "udp")),
    ("<sip:10.0.0.1;lr>", "udp", Target("10.0.0.1", None, "udp")),
    ('"Proxy" <sip:10.0.0.1:5090;transport=tcp;lr>', "udp", Target("10.0.0.1", 5090, "tcp")),
    ("10.0.0.2:5066", "udp", Target("10.0.0.2", 5066, "udp")),
    ("pbx.example.com:5066;transport=tcp", "udp", Target("pbx.example.com", 5066, "tcp")),
    ("pbx.example.com", "udp", Target("pbx.example.com", None, "udp")),
    ("sip:bob@example.com;maddr=10.0.0.3", "udp", Target("10.0.0.3", None, "udp")),
])
def test_parse_target(text: str, default: str, expected: Target) -> None:
    assert parse_target(text, default) == expected


@pytest.mark.parametrize("text", ["tel:+4930123", "mailto:x@y", "sip:", "<sip:a@b"])
def test_parse_target_rejects_non_sip(text: str) -> None:
    with pytest.raises(ValueError):
        parse_target(text)


def test_numeric_targets_need_no_lookup() -> None:
    assert Target("1.2.3.4", None, "udp").peer() == Peer("1.2.3.4", 5060, "udp")
    assert Target("1.2.3.4", None, "tls").peer() == Peer("1.2.3.4", 5061, "tls")
    assert target_of(parse_uri("sip:x@[::1]:7000")).peer() == Peer("::1", 7000, "udp")


class FakeLoop:
    def __init__(self, answers: dict[str, list[tuple[str, int]]]):
        self.answers = answers
        self.calls: list[tuple[str, int, int]] = []

    async def getaddrinfo(self, host: str, port: int, *, type: int) -> list[tuple]:
        self.calls.append((host, port, type))
        if host.lower() not in self.answers:
            raise socket.gaierror(-2, "Name or service not known")
        return [(socket.AF_INET, type, 0, "", (ip, port)) for ip, _ in self.answers[host.lower()]]


async def test_names_are_resolved_and_cached() -> None:
    clock = FakeClock()
    loop = FakeLoop({"pbx.example.com": [("192.0.2.7", 0), ("192.0.2.8", 0)]})
    r = Resolver(loop, clock, ttl=30)  # type: ignore[arg-type]
    t = Target("pbx.example.com", None, "tcp")
    assert r.resolve_now(t) is None
    assert await r.resolve(t) == Peer("192.0.2.7", 5060, "tcp")
    assert r.resolve_now(t) == Peer("192.0.2.7", 5060, "tcp")
    assert await r.resolve(t) == Peer("192.0.2.7", 5060, "tcp")
    assert loop.calls == [("pbx.example.com", 5060, socket.SOCK_STREAM)]
    clock.advance(31)
    assert r.resolve_now(t) is None
    assert await r.resolve(Target("PBX.example.com", 5080, "udp")) == Peer(
        "192.0.2.7", 5080, "udp")
    assert loop.calls[-1] == ("PBX.example.com", 5080, socket.SOCK_DGRAM)


async def test_unknown_name_is_a_transport_error() -> None:
    r = Resolver(FakeLoop({}), FakeClock())  # type: ignore[arg-type]
    with pytest.raises(SipTransportError, match=r"cannot resolve nowhere\.invalid"):
        await r.resolve(Target("nowhere.invalid", None, "udp"))
