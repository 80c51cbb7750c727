"""The pure rules of the abuse protection: rate limiter, verdicts, keys, exemptions."""

from __future__ import annotations

import json

import pytest

from engine.abuse.guard import AbuseGuard
from engine.abuse.policy import (
    AbusePolicy,
    Ban,
    ExemptSources,
    FailureResult,
    RateLimiter,
    canonical_source,
    failure_keys,
    pair_ban_pattern,
    parse_cidr_list,
    retry_after_header,
    verdict,
)
from engine.config.validate import snapshot_from_json_text
from engine.errors import ConfigError
from engine.settings import load_settings


def test_rate_limiter_allows_the_burst_then_the_rate() -> None:
    limiter = RateLimiter(rate=10, burst=5)
    assert [limiter.take("a", 0.0) for _ in range(5)] == [0.0] * 5
    wait = limiter.take("a", 0.0)
    assert wait == pytest.approx(0.1)
    assert limiter.take("b", 0.0) == 0.0  # per source
    assert limiter.take("a", 0.1) == 0.0  # one token refilled after 1/rate s
    assert limiter.take("a", 0.1) > 0
    assert [limiter.take("a", 100.0) for _ in range(6)].count(0.0) == 5  # capped at burst


def test_rate_limiter_off_and_bounded() -> None:
    assert all(RateLimiter(0, 1).take("a", 0.0) == 0.0 for _ in range(100))
    limiter = RateLimiter(rate=1, burst=1, max_sources=3)
    for i in range(10):
        limiter.take(f"s{i}", 0.0)
    assert len(limiter) == 3


def test_retry_after_is_whole_seconds_at_least_one() -> None:
    assert [retry_after_header(w) for w in (0.01, 1.0, 1.2)] == ["1", "1", "2"]


def test_verdict() -> None:
    policy = AbusePolicy(nonce_max_failures=3)
    assert verdict(source_ban=None, pair_ban=None, nonce_failures=None, policy=policy) == "clear"
    assert verdict(source_ban=None, pair_ban=None, nonce_failures="2", policy=policy) == "clear"
    assert verdict(source_ban=None, pair_ban=None, nonce_failures="3",
                   policy=policy) == "nonce_spent"
    assert verdict(source_ban="{}", pair_ban=None, nonce_failures="9", policy=policy) == "banned"
    assert verdict(source_ban=None, pair_ban="{}", nonce_failures=None, policy=policy) == "banned"


def test_keys_separate_sources_even_for_ipv6() -> None:
    keys = failure_keys(source="::1", domain="pbx.test", user="alice", nonce="N")
    assert keys.pair_ban == "abuse:ban:pair:::1/pbx.test/alice"
    assert keys.source_ban == "abuse:ban:src:::1" and keys.nonce == "abuse:nonce:N"
    other = failure_keys(source="::1:2", domain="pbx.test", user="alice", nonce="N")
    import fnmatch
    assert fnmatch.fnmatchcase(keys.pair_ban, pair_ban_pattern("::1"))
    assert not fnmatch.fnmatchcase(other.pair_ban, pair_ban_pattern("::1"))


def test_canonical_source() -> None:
    assert canonical_source("::ffff:192.0.2.1") == "192.0.2.1"
    assert canonical_source("2001:DB8:0::1") == "2001:db8::1"
    assert canonical_source("not-an-ip") == "not-an-ip"


def test_ban_record_and_failure_reply() -> None:
    text = json.dumps({"scope": "source", "source": "192.0.2.1", "domain": "d", "user": "u",
                       "failures": 10, "since": 5.5})
    assert Ban.from_json(text, 30) == Ban("source", "192.0.2.1", "d", "u", 10, 5.5, 30)
    assert Ban.from_json("garbage") is None and Ban.from_json("{}") is None
    assert FailureResult.from_reply([3, 10, 4, 1, 0, 0]) == FailureResult(3, 10, 4, True,
                                                                          False, False)


CONFIG = {"domains": {"a.test": {"domain_id": 1, "clients": [], "trunks": [
    {"id": 1, "inbound": ["203.0.113.0/24"]}]},
    "b.test": {"domain_id": 2, "clients": [], "trunks": [{"id": 2, "inbound": ["2001:db8::/32"]}]},
}}


def test_exempt_sources_are_the_allow_list_and_every_trunk() -> None:
    snapshot = snapshot_from_json_text(json.dumps(CONFIG), file="t.json")
    exempt = ExemptSources(parse_cidr_list("10.0.0.0/8, 192.0.2.7"))
    assert exempt.contains("10.1.2.3", snapshot) and exempt.contains("192.0.2.7", snapshot)
    assert exempt.contains("203.0.113.9", snapshot) and exempt.contains("2001:db8::5", snapshot)
    assert exempt.contains("::ffff:203.0.113.9", snapshot)
    assert not exempt.contains("192.0.2.8", snapshot) and not exempt.contains("junk", snapshot)
    changed = snapshot_from_json_text(json.dumps({"domains": {}}), file="t.json")
    assert not exempt.contains("203.0.113.9", changed)  # a removed trunk is no longer exempt
    assert exempt.contains("10.0.0.1", None)


def test_settings_defaults_and_bad_allow_list() -> None:
    settings = load_settings({})
    policy = AbusePolicy.from_settings(settings)
    assert (policy.nonce_max_failures, policy.source_max_failures, policy.aor_max_failures,
            policy.window_secs, policy.ban_secs) == (3, 10, 20, 60, 900)
    assert ExemptSources(policy.allow).contains("127.0.0.5")
    assert ExemptSources(policy.allow).contains("::1")
    assert load_settings({"ABUSE_ALLOW": ""}).abuse_allow == ()
    with pytest.raises(ConfigError, match="ABUSE_ALLOW"):
        load_settings({"ABUSE_ALLOW": "10.0.0.0/33"})


class _NoCounters:
    """The guard's rate limit and exemptions need no counters."""


def test_guard_admit_limits_sources_but_never_exempt_ones() -> None:
    now = [0.0]
    guard = AbuseGuard(AbusePolicy(rate_limit=1, rate_burst=2, allow=parse_cidr_list("10.0.0.1")),
                       _NoCounters(), config=None, nonce_ttl=300,  # type: ignore[arg-type]
                       monotonic=lambda: now[0])
    assert [guard.admit("192.0.2.1") for _ in range(3)][:2] == [0.0, 0.0]
    assert guard.admit("192.0.2.1") > 0 and guard.rate_limited == 2
    assert all(guard.admit("10.0.0.1") == 0.0 for _ in range(10))
    off = AbuseGuard(AbusePolicy(enabled=False, rate_limit=1, rate_burst=1), _NoCounters(),
                     config=None, nonce_ttl=300)  # type: ignore[arg-type]
    assert all(off.admit("192.0.2.1") == 0.0 for _ in range(5))
    assert off.exempt("192.0.2.1")
