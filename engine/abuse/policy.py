"""Pure rules of the abuse protection: limits, Redis key names, ban records, exemptions
and the per-source request-rate limiter.

No I/O and no asyncio here (design.md import rule): ``engine.abuse.redis`` keeps the
counters in Redis, ``engine.abuse.guard`` joins the two for the actions and the
dispatcher.
"""

from __future__ import annotations

import ipaddress
import json
import math
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from engine.config.matching import IPNetwork, NetworkTable, parse_address, parse_network

KEY_PREFIX = "abuse:"


@dataclass(frozen=True)
class AbusePolicy:
    """The limits (settings ``ABUSE_*``). ``enabled=False`` turns every check off."""

    enabled: bool = True
    nonce_max_failures: int = 3
    window_secs: int = 60
    source_max_failures: int = 10
    aor_max_failures: int = 20
    ban_secs: int = 900
    rate_limit: float = 50.0
    rate_burst: int = 100
    allow: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_settings(cls, settings: Any) -> AbusePolicy:
        return cls(
            enabled=settings.abuse_protection,
            nonce_max_failures=settings.abuse_nonce_max_failures,
            window_secs=settings.abuse_window_secs,
            source_max_failures=settings.abuse_source_max_failures,
            aor_max_failures=settings.abuse_aor_max_failures,
            ban_secs=settings.abuse_ban_secs,
            rate_limit=settings.abuse_rate_limit,
            rate_burst=settings.abuse_rate_burst,
            allow=settings.abuse_allow,
        )


def parse_cidr_list(raw: str) -> tuple[IPNetwork, ...]:
    """``"127.0.0.0/8, ::1"`` → networks (empty text = none). Raises ValueError."""
    try:
        return tuple(parse_network(part) for part in raw.replace(" ", ",").split(",") if part)
    except ValueError:
        raise ValueError("a comma list of IPv4/IPv6 addresses or CIDRs "
                         "(e.g. 10.0.0.0/8,::1)") from None


def canonical_source(host: str) -> str:
    """One spelling per address (``::ffff:1.2.3.4`` → ``1.2.3.4``, IPv6 compressed), so a
    source cannot dodge its counters by writing its address differently."""
    addr = parse_address(host)
    return str(addr) if addr is not None else host


# --------------------------------------------------------------------------- Redis keys
# "/" never occurs in an IP address, so ``SCAN MATCH abuse:ban:pair:<ip>/*`` finds
# exactly one source's bans (IPv6 addresses are full of ":").


@dataclass(frozen=True)
class FailureKeys:
    """Every key one authentication failure touches."""

    nonce: str        # failed responses on this nonce (TTL: the nonce's life)
    source: str       # failures from the source in the current window
    aor: str          # failures on the AOR (user@domain) from any source in the window
    aor_guard: str    # set while the AOR is under attack (TTL: ban duration)
    source_ban: str   # the source is banned (all users)
    pair_ban: str     # the source is banned for this AOR only

    def as_list(self) -> list[str]:
        return [self.nonce, self.source, self.aor, self.aor_guard, self.source_ban,
                self.pair_ban]


def failure_keys(*, source: str, domain: str, user: str, nonce: str) -> FailureKeys:
    aor = f"{domain}/{user}"
    return FailureKeys(
        nonce=f"{KEY_PREFIX}nonce:{nonce}",
        source=source_failures_key(source),
        aor=f"{KEY_PREFIX}fail:aor:{aor}",
        aor_guard=f"{KEY_PREFIX}guard:aor:{aor}",
        source_ban=source_ban_key(source),
        pair_ban=f"{KEY_PREFIX}ban:pair:{source}/{aor}",
    )


def source_failures_key(source: str) -> str:
    return f"{KEY_PREFIX}fail:src:{source}"


def source_ban_key(source: str) -> str:
    return f"{KEY_PREFIX}ban:src:{source}"


def pair_ban_pattern(source: str) -> str:
    """SCAN pattern of every (source, AOR) ban of ``source`` (addresses hold no glob
    characters, so no escaping is needed)."""
    return f"{KEY_PREFIX}ban:pair:{source}/*"


BAN_PATTERN = f"{KEY_PREFIX}ban:*"


# --------------------------------------------------------------------------- outcomes


@dataclass(frozen=True)
class Ban:
    """What a ban key holds (JSON written by the Redis script)."""

    scope: str  # "source" (every user) or "pair" (one AOR)
    source: str
    domain: str
    user: str
    failures: int
    since: float  # epoch seconds
    ttl: int = -2  # seconds left (-2 = unknown)

    @classmethod
    def from_json(cls, text: str, ttl: int = -2) -> Ban | None:
        try:
            data = json.loads(text)
            return cls(str(data["scope"]), str(data["source"]), str(data["domain"]),
                       str(data["user"]), int(data["failures"]), float(data["since"]), ttl)
        except (ValueError, KeyError, TypeError):
            return None


@dataclass(frozen=True)
class FailureResult:
    """Counts after one recorded failure, and which bans this failure created."""

    nonce_failures: int
    source_failures: int
    aor_failures: int
    banned_source: bool  # this failure created the source ban
    banned_pair: bool    # this failure created a (source, AOR) ban
    guarded_aor: bool    # this failure put the AOR under attack

    @classmethod
    def from_reply(cls, reply: list[Any]) -> FailureResult:
        n, s, a, src, pair, guard = (int(v) for v in reply)
        return cls(n, s, a, bool(src), bool(pair), bool(guard))


def verdict(*, source_ban: Any, pair_ban: Any, nonce_failures: Any,
            policy: AbusePolicy) -> str:
    """``banned``, ``nonce_spent`` or ``clear`` from the three values the check reads."""
    if source_ban is not None or pair_ban is not None:
        return "banned"
    if nonce_failures is not None and int(nonce_failures) >= policy.nonce_max_failures:
        return "nonce_spent"
    return "clear"


# --------------------------------------------------------------------------- exemptions


class ExemptSources:
    """ABUSE_ALLOW plus every configured trunk's inbound CIDRs (any domain): never
    banned, counted or rate-limited. Rebuilt when the configuration snapshot changes."""

    def __init__(self, allow: Iterable[IPNetwork]):
        self._allow = tuple(allow)
        self._snapshot: Any = None
        self._table: NetworkTable[bool] = NetworkTable([(self._allow, True)])

    def _current(self, config: Any) -> NetworkTable[bool]:
        snapshot = getattr(config, "snapshot", config) if config is not None else None
        if snapshot is not self._snapshot:
            networks: list[IPNetwork] = list(self._allow)
            domains = getattr(snapshot, "domains", None) or {}
            for dom in domains.values():
                for trunk in dom.trunks:
                    networks.extend(trunk.networks)
            self._table = NetworkTable([(networks, True)])
            self._snapshot = snapshot
        return self._table

    def contains(self, host: str, config: Any = None) -> bool:
        return self._current(config).find(host) is not None


# --------------------------------------------------------------------------- rate limit


class RateLimiter:
    """Token bucket per source: ``rate`` requests/s sustained, ``burst`` at once.

    In-process on purpose (Kamailio's pike does the same): a flood is stopped where it
    arrives, at no Redis cost per packet. With N instances behind a balancer a source
    may send N times the rate in total. Memory is bounded: the least recently seen
    sources are forgotten beyond ``max_sources`` (a forgotten source starts full).
    """

    def __init__(self, rate: float, burst: int, *, max_sources: int = 65_536):
        self.rate = rate
        self.burst = max(1, burst)
        self._max = max_sources
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()  # [tokens, stamp]

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, source: str, now: float) -> float:
        """0.0 = admitted; otherwise the seconds until the next request would be."""
        if self.rate <= 0:
            return 0.0
        bucket = self._buckets.get(source)
        if bucket is None:
            bucket = self._buckets[source] = [float(self.burst), now]
            if len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(source)
            elapsed = max(0.0, now - bucket[1])
            bucket[0] = min(float(self.burst), bucket[0] + elapsed * self.rate)
            bucket[1] = now
        if bucket[0] >= 1.0:
            bucket[0] -= 1.0
            return 0.0
        return (1.0 - bucket[0]) / self.rate


def retry_after_header(wait: float) -> str:
    """Whole seconds for ``Retry-After`` (at least 1)."""
    return str(max(1, math.ceil(wait)))


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


__all__ = [
    "BAN_PATTERN", "KEY_PREFIX", "AbusePolicy", "Ban", "ExemptSources", "FailureKeys",
    "FailureResult", "RateLimiter", "canonical_source", "failure_keys", "is_ip",
    "pair_ban_pattern", "parse_cidr_list", "retry_after_header", "source_ban_key",
    "source_failures_key", "verdict",
]
