"""Pure parts of the TCP bounds: the effective inbound cap, what a "source" is, the
log throttle, and the settings that feed them."""

from __future__ import annotations

import pytest

from engine.errors import ConfigError
from engine.settings import load_settings
from engine.transport.tcp_limits import (
    TcpLimits,
    ThrottledLog,
    inbound_cap,
    source_key,
)


def test_inbound_cap_keeps_the_descriptor_reserve() -> None:
    limits = TcpLimits(max_connections=10_000, fd_reserve=512)
    assert inbound_cap(limits, 1_048_576) == (10_000, True)
    assert inbound_cap(limits, 4096) == (3584, True)
    assert inbound_cap(limits, 1024) == (512, True)
    # too few descriptors for the whole reserve: inbound gets half, and says so
    assert inbound_cap(limits, 512) == (256, False)
    assert inbound_cap(TcpLimits(fd_reserve=0), 64) == (64, True)


def test_source_is_the_ipv4_address_or_the_ipv6_slash_64() -> None:
    assert source_key("192.0.2.7") == "192.0.2.7"
    assert source_key("2001:db8:1:2:aaaa::1") == source_key("2001:db8:1:2:ffff::9")
    assert source_key("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert source_key("2001:db8:1:3::1") != source_key("2001:db8:1:2::1")
    assert source_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert source_key("fe80::1%eth0") == "fe80::/64"


def test_throttled_log_says_once_per_interval_with_the_count_it_kept_quiet() -> None:
    throttle = ThrottledLog(interval=60)
    assert throttle.check(("refused", "a"), 0.0) == 0
    assert [throttle.check(("refused", "a"), t) for t in (1.0, 2.0, 59.0)] == [None] * 3
    assert throttle.check(("refused", "b"), 2.0) == 0  # another source has its own line
    assert throttle.check(("refused", "a"), 60.0) == 3
    assert throttle.check(("refused", "a"), 61.0) is None


def test_throttled_log_stays_bounded_under_many_sources() -> None:
    throttle = ThrottledLog(interval=60)
    for i in range(10_000):
        throttle.check(("refused", f"10.0.{i >> 8}.{i & 255}"), 1.0)
    assert len(throttle._seen) <= 4096


def test_settings_feed_the_limits() -> None:
    s = load_settings({"SIP_TCP_MAX_PER_SOURCE": "7", "SIP_TCP_IDLE_TIMEOUT": "120",
                       "SIP_TCP_MESSAGE_TIMEOUT": "4.5", "SIP_TCP_FD_RESERVE": "0"})
    limits = TcpLimits.from_settings(s)
    assert (limits.max_per_source, limits.idle_timeout, limits.message_timeout,
            limits.fd_reserve) == (7, 120.0, 4.5, 0)
    assert TcpLimits.from_settings(load_settings({})) == TcpLimits()  # one set of defaults
    with pytest.raises(ConfigError, match="SIP_TCP_IDLE_TIMEOUT"):
        load_settings({"SIP_TCP_IDLE_TIMEOUT": "0"})
    with pytest.raises(ConfigError, match="SIP_TCP_MAX_BUFFERED_BYTES"):
        load_settings({"SIP_TCP_MAX_BUFFERED_BYTES": "1000"})
