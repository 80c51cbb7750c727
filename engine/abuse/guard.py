"""``AbuseGuard``: the abuse protection as one service for the actions and the dispatcher.

It joins the pure rules (``engine.abuse.policy``) with the shared counters
(``engine.abuse.redis``): exemptions (ABUSE_ALLOW and every trunk's CIDRs), the
in-process request-rate limit, the ban/nonce check before any password or RegHook
check, and failure counting that logs each new ban once (never a password or
digest response).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from engine.abuse.policy import (
    AbusePolicy,
    ExemptSources,
    FailureResult,
    RateLimiter,
    canonical_source,
    failure_keys,
    verdict,
)
from engine.abuse.redis import RedisAbuseCounters
from engine.log import get_logger

log = get_logger("engine.abuse")

# a source that stays over its rate limit is logged again after this many seconds
_RATE_LOG_INTERVAL = 60.0


class AbuseGuard:
    def __init__(self, policy: AbusePolicy, counters: RedisAbuseCounters, *, config: Any,
                 nonce_ttl: int, wall_clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic):
        self.policy = policy
        self.counters = counters
        self._config = config
        self._nonce_ttl = nonce_ttl + 60  # the nonce's life plus the clock skew we accept
        self._exempt = ExemptSources(policy.allow)
        self._limiter = RateLimiter(policy.rate_limit, policy.rate_burst)
        self._wall = wall_clock
        self._monotonic = monotonic
        self._rate_logged: dict[str, float] = {}
        self.rate_limited = 0

    @classmethod
    def from_settings(cls, settings: Any, store: Any, config: Any) -> AbuseGuard:
        return cls(AbusePolicy.from_settings(settings), RedisAbuseCounters(store.client),
                   config=config, nonce_ttl=settings.nonce_ttl)

    # ------------------------------------------------------------------ exemptions

    def exempt(self, host: str) -> bool:
        """Never banned, counted or limited: protection off, ABUSE_ALLOW, a trunk's CIDR."""
        return not self.policy.enabled or self._exempt.contains(host, self._config)

    # ------------------------------------------------------------------ rate limit

    def admit(self, host: str) -> float:
        """0.0 = the request may proceed; otherwise seconds the source should wait."""
        if not self.policy.enabled:
            return 0.0
        now = self._monotonic()
        wait = self._limiter.take(host, now)
        if not wait or self.exempt(host):
            return 0.0
        self.rate_limited += 1
        last = self._rate_logged.get(host)
        if last is None or now - last >= _RATE_LOG_INTERVAL:
            if len(self._rate_logged) > 10_000:
                self._rate_logged.clear()
            self._rate_logged[host] = now
            log.warning("source over its request rate: answering 503", source=host,
                        rate_limit=self.policy.rate_limit, burst=self.policy.rate_burst)
        return wait

    # ------------------------------------------------------------------ bans and failures

    async def check(self, *, source: str, domain: str, user: str, nonce: str) -> str:
        """``banned``, ``nonce_spent`` or ``clear`` (raises ``StoreError``)."""
        keys = failure_keys(source=canonical_source(source), domain=domain, user=user,
                            nonce=nonce)
        source_ban, pair_ban, nonce_failures = await self.counters.read(keys)
        return verdict(source_ban=source_ban, pair_ban=pair_ban,
                       nonce_failures=nonce_failures, policy=self.policy)

    async def record_failure(self, *, source: str, domain: str, user: str, nonce: str,
                             method: str) -> FailureResult:
        """Count one failed authentication; log the bans it creates (raises ``StoreError``)."""
        src = canonical_source(source)
        keys = failure_keys(source=src, domain=domain, user=user, nonce=nonce)
        result = await self.counters.record_failure(
            keys, self.policy, source=src, domain=domain, user=user,
            nonce_ttl=self._nonce_ttl, now=self._wall())
        if result.banned_source:
            log.warning("source banned after failed authentications", source=src, user=user,
                        domain=domain, method=method, failures=result.source_failures,
                        window_secs=self.policy.window_secs, ban_secs=self.policy.ban_secs)
        if result.guarded_aor:
            log.warning("user under attack: each further failing source is banned for it",
                        user=user, domain=domain, source=src, failures=result.aor_failures,
                        window_secs=self.policy.window_secs, ban_secs=self.policy.ban_secs)
        if result.banned_pair:
            log.warning("source banned for one user after failed authentications",
                        source=src, user=user, domain=domain, method=method,
                        ban_secs=self.policy.ban_secs)
        return result


__all__ = ["AbuseGuard"]
