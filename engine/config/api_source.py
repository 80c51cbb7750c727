"""``DATA_SOURCE=api``: the configuration fetched from ``CONFIG_URL`` (spec §11.2, D-22).

``GET CONFIG_URL`` with ``Authorization: Bearer CONFIG_TOKEN`` and the
``User-Agent``; the whole request is bounded by ``HTTP_TIMEOUT`` seconds (the
original had no timeout, so one hung request stopped polling forever) and
the body by ``max_bytes``. The body ``{"domains": [{"id", "domain", "trunks",
"clients"}, …]}`` is validated before it may replace anything: a 200 without
``domains``, invalid content, an error status or a timeout are logged and
the last good configuration keeps serving; failures are retried with
backoff (capped at ``CONFIG_TTL``), successes every ``CONFIG_TTL`` seconds.

``start()`` waits for the first good configuration (``start_attempts``
tries with backoff) and otherwise raises ``ConfigError``, so the daemon
refuses to start instead of serving with an empty configuration.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit, urlunsplit

import httpx

from engine.config.model import ConfigSnapshot
from engine.config.source import ConfigSource, sleep_backoff
from engine.config.validate import snapshot_from_api_text
from engine.errors import ConfigError
from engine.settings import Settings


def redact_url(url: str) -> str:
    """The URL without user info and query (either may carry credentials)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class ApiSource(ConfigSource):
    """Configuration polled from the configuration API."""

    kind = "api"

    def __init__(self, settings: Settings, *, precedence: str | None = None,
                 interval: float | None = None, start_attempts: int = 5,
                 retry_delay: float = 1.0, max_bytes: int = 32 * 1024 * 1024):
        super().__init__(settings, precedence=precedence)
        self.url = settings.config_url
        self.interval = interval if interval is not None else settings.config_ttl
        self.timeout = settings.http_timeout
        self.start_attempts = max(1, start_attempts)
        self.retry_delay = retry_delay
        self.max_bytes = max_bytes
        self._client: httpx.AsyncClient | None = None

    @property
    def description(self) -> str:
        return f"api:{redact_url(self.url)}"

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout),
                follow_redirects=False,  # never replay the bearer token elsewhere
                headers={
                    "Authorization": f"Bearer {self.settings.config_token}",
                    "User-Agent": self.settings.http_user_agent,
                    "Accept": "application/json",
                },
            )
        return self._client

    async def _fetch(self) -> str:
        try:
            async with asyncio.timeout(self.timeout):  # bounds the whole exchange, not each read
                async with self._http().stream("GET", self.url) as resp:
                    if resp.status_code != 200:
                        status = f"{resp.status_code} {resp.reason_phrase}".strip()
                        raise ConfigError(f"{self.description}: HTTP {status}")
                    chunks: list[bytes] = []
                    size = 0
                    async for chunk in resp.aiter_bytes():
                        size += len(chunk)
                        if size > self.max_bytes:
                            raise ConfigError(f"{self.description}: response larger than "
                                              f"{self.max_bytes} bytes")
                        chunks.append(chunk)
                    encoding = resp.charset_encoding or "utf-8"
        except (TimeoutError, httpx.TimeoutException):
            raise ConfigError(f"{self.description}: no answer within {self.timeout:g} s"
                              ) from None
        except httpx.HTTPError as exc:
            raise ConfigError(f"{self.description}: request failed: {type(exc).__name__}: "
                              f"{exc}") from None
        try:
            return b"".join(chunks).decode(encoding)
        except (UnicodeDecodeError, LookupError):
            raise ConfigError(f"{self.description}: response is not {encoding} text") from None

    async def load(self) -> ConfigSnapshot:
        text = await self._fetch()
        return await asyncio.to_thread(snapshot_from_api_text, text, url=redact_url(self.url),
                                       precedence=self.precedence, source=self.description)

    async def _initial_load(self) -> ConfigSnapshot:
        last: ConfigError | None = None
        for attempt in range(1, self.start_attempts + 1):
            try:
                return await self.load()
            except ConfigError as exc:
                last = exc
                self.log.warning("config not available yet", source=self.description,
                                 attempt=attempt, of=self.start_attempts, error=str(exc),
                                 diagnostics=[str(d) for d in exc.diagnostics[:20]])
            if attempt < self.start_attempts:
                await sleep_backoff(attempt, self.retry_delay, max(self.retry_delay,
                                                                   self.interval))
        assert last is not None
        raise ConfigError(f"no valid configuration from {self.description} after "
                          f"{self.start_attempts} attempts: {last}", last.diagnostics)

    async def _watch(self) -> None:
        failures = 0
        while True:
            if failures:
                await sleep_backoff(failures, self.retry_delay,
                                    max(self.retry_delay, self.interval))
            else:
                await asyncio.sleep(self.interval)
            await self.refresh("poll")
            failures = failures + 1 if self.last_error is not None else 0

    async def _close_resources(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


__all__ = ["ApiSource", "redact_url"]
