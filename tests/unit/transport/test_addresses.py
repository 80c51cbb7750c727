"""Which address goes into Via/Contact: external, specific listen address, or probed."""

from __future__ import annotations

import socket

import pytest

from engine.transport.addresses import (
    LocalAddresses,
    format_host,
    ip_family,
    probe_source_address,
)


class FakeProbe:
    def __init__(self, answers: dict[str, str | None]):
        self.answers = answers
        self.calls: list[str] = []

    def __call__(self, dest: str) -> str | None:
        self.calls.append(dest)
        return self.answers.get(dest)


def test_external_address_wins_everywhere() -> None:
    probe = FakeProbe({})
    a = LocalAddresses("0.0.0.0", 5060, "203.0.113.9", probe=probe)
    assert a.host_for("10.0.0.7") == "203.0.113.9"
    assert a.contact("tcp", "bob", "10.0.0.7") == "sip:bob@203.0.113.9:5060;transport=tcp"
    assert a.sent_by("udp", "10.0.0.7") == "SIP/2.0/UDP 203.0.113.9:5060"
    assert probe.calls == []


def test_specific_listen_address_is_used_as_is() -> None:
    a = LocalAddresses("192.0.2.4", 5080, None, probe=FakeProbe({}))
    assert a.host_for("198.51.100.1") == "192.0.2.4"
    assert a.contact() == "sip:192.0.2.4:5080"


def test_ipv6_hosts_are_bracketed() -> None:
    a = LocalAddresses("[2001:db8::5]", 5060, None, probe=FakeProbe({}))
    assert a.listen_host == "2001:db8::5"
    assert a.contact("udp", "u") == "sip:u@[2001:db8::5]:5060"
    assert a.sent_by("tcp") == "SIP/2.0/TCP [2001:db8::5]:5060"
    assert format_host("::1") == "[::1]" and format_host("[::1]") == "[::1]"


def test_wildcard_probes_per_destination_and_caches() -> None:
    probe = FakeProbe({"10.1.1.1": "10.1.1.2", "127.0.0.1": "127.0.0.1",
                       "198.51.100.1": "192.0.2.50"})
    a = LocalAddresses("0.0.0.0", 5060, None, probe=probe)
    assert a.host_for("10.1.1.1") == "10.1.1.2"
    assert a.host_for("10.1.1.1") == "10.1.1.2"
    assert a.host_for("127.0.0.1") == "127.0.0.1"
    assert probe.calls == ["10.1.1.1", "127.0.0.1"]
    # no destination (contact_uri()) or a name: the default-route interface
    assert a.host_for(None) == "192.0.2.50"
    assert a.host_for("pbx.example.com") == "192.0.2.50"


def test_ipv4_wildcard_never_advertises_an_ipv6_address() -> None:
    probe = FakeProbe({"2001:db8::9": "2001:db8::1", "198.51.100.1": "192.0.2.50"})
    a = LocalAddresses("0.0.0.0", 5060, None, probe=probe)
    assert a.host_for("2001:db8::9") == "192.0.2.50"


def test_unroutable_wildcard_falls_back_to_loopback() -> None:
    a = LocalAddresses("0.0.0.0", 5060, None, probe=FakeProbe({}))
    assert a.host_for("10.9.9.9") == "127.0.0.1"


@pytest.mark.parametrize(("host", "family"), [
    ("127.0.0.1", socket.AF_INET), ("::1", socket.AF_INET6), ("[::1]", socket.AF_INET6),
    ("fe80::1%eth0", socket.AF_INET6), ("example.com", None), ("", None), ("1.2.3", None),
])
def test_ip_family(host: str, family: int | None) -> None:
    assert ip_family(host) == family


def test_real_probe_on_loopback() -> None:
    assert probe_source_address("127.0.0.1") == "127.0.0.1"
    assert probe_source_address("not-an-ip") is None
