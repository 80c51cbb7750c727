"""The one shared webhook HTTP client (implements ``engine.ports.HookCaller``).

Why aiohttp: RegHook and CallHook calls are on the SIP hot path (one per
REGISTER, one per call). ``bench/bench_hooks.py`` measures aiohttp's
``ClientSession`` at several times httpx's throughput from one process, and
far better at 50 concurrent requests, so the hooks use aiohttp; httpx stays on
the cold paths (config polling, media fetch).

Every request:

* reuses pooled HTTP/1.1 keep-alive connections (one ``TCPConnector`` per
  client, created lazily on the running loop);
* is bounded by the ``timeout`` the caller passes (connect + send + whole
  reply), so a slow-loris hook cannot stall a SIP transaction (S-11);
* carries ``User-Agent`` (``HTTP_USER_AGENT_HEADER``), ``Content-Type:
  application/json`` and, when ``DRAGONPBX_WEBHOOK_SECRET`` is set, the
  ``X-DragonPBX-Timestamp``/``X-DragonPBX-Signature`` pair (S-6, see
  ``engine.hooks.signing``);
* serialises the JSON once, compactly and without ASCII escaping — the
  JSON.stringify form the original sent;
* never follows redirects (the original treated 3xx as a failure).

Transport failures become ``HookError`` with a ``kind``: ``timeout``,
``connect`` (refused, reset, DNS, TLS), ``url`` (not an http(s) URL),
``too_large`` (reply over the size cap) or ``error``. Any HTTP status is
returned: the RegHook/CallHook/StatusHook callers decide what it means. Bodies
are never logged (they carry digest responses and call data, S-5), and URLs
are logged without their query string or user-info.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp

from engine.errors import HookError
from engine.hooks.signing import signature_headers
from engine.log import get_logger
from engine.ports import HookReply

if TYPE_CHECKING:
    from engine.settings import Settings

log = get_logger(__name__)

# Keep-alive idle time below the 5 s default of Node's http server (a common
# webhook host): a connection the server is about to close is not reused, which
# avoids the race where a POST meets a closing socket (POST is not retried).
KEEPALIVE_SECS = 4.0
MAX_REPLY_BYTES = 1 << 20  # hook replies are small JSON; cap what a hook can make us buffer
_MAX_TOTAL_CONNECTIONS = 1000


def dumps(payload: Any) -> bytes:
    """JSON text as JavaScript's ``JSON.stringify`` writes it (compact, UTF-8, no escaping).

    A lone surrogate cannot be UTF-8 encoded; that rare text falls back to
    ``\\uXXXX`` escapes, which is also what JSON.stringify emits for it.
    """
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode("ascii")


def safe_url(url: str) -> str:
    """``url`` without user-info and query string (both may hold tokens) for logs/errors."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid url>"
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}" if parts.scheme else "<invalid url>"


class HookClient:
    """Pooled, bounded, signed JSON POSTer shared by every webhook caller.

    One instance per process (built by the composition root with
    ``HookClient.from_settings``); ``close()`` releases the pool.
    """

    def __init__(
        self, *, user_agent: str, secret: str | None = None,
        limit_per_host: int = 100, max_reply_bytes: int = MAX_REPLY_BYTES,
        keepalive_timeout: float = KEEPALIVE_SECS,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._user_agent = user_agent
        self._secret = secret or None
        self._limit_per_host = max(100, limit_per_host)
        self._max_reply = max_reply_bytes
        self._keepalive = keepalive_timeout
        self._wall_clock = wall_clock
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self._base_headers = {"User-Agent": user_agent, "Content-Type": "application/json"}

    @classmethod
    def from_settings(cls, settings: Settings) -> HookClient:
        """Client configured from ``HTTP_USER_AGENT_HEADER``, ``DRAGONPBX_WEBHOOK_SECRET``
        and ``HTTP_POOLSIZE`` (which never lowers the per-host cap below 100)."""
        return cls(user_agent=settings.http_user_agent, secret=settings.webhook_secret,
                   limit_per_host=settings.http_poolsize)

    @property
    def signing(self) -> bool:
        return self._secret is not None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise HookError("webhook client is closed", kind="closed")
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=_MAX_TOTAL_CONNECTIONS, limit_per_host=self._limit_per_host,
                keepalive_timeout=self._keepalive, ttl_dns_cache=60,
            )
            # No session-level timeout: each call brings its own bound (asyncio.timeout).
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=None),
                auto_decompress=True, trust_env=False, skip_auto_headers=("User-Agent",),
            )
        return self._session

    def headers_for(self, body: bytes) -> dict[str, str]:
        """Request headers for ``body``: fixed ones plus the signature when a secret is set."""
        if self._secret is None:
            return self._base_headers
        return {**self._base_headers,
                **signature_headers(self._secret, int(self._wall_clock()), body)}

    async def post(self, url: str, payload: Mapping[str, Any] | Sequence[Any], *,
                   timeout: float) -> HookReply:
        """POST ``payload`` as JSON; return the reply of any HTTP status.

        Raises ``HookError(kind=…)`` for transport failures; the whole exchange
        (connect, send, read) is bounded by ``timeout`` seconds.
        """
        try:
            body = dumps(payload)
        except (TypeError, ValueError) as exc:
            # A programming error upstream, but never let it escape as a foreign type.
            raise HookError(f"payload is not JSON-serialisable: {exc}", kind="payload") from exc
        return await self.post_bytes(url, body, timeout=timeout)

    async def post_bytes(self, url: str, body: bytes, *, timeout: float) -> HookReply:
        """As ``post`` for an already serialised JSON body."""
        if not url.startswith(("http://", "https://")):
            raise HookError(f"not an http(s) URL: {safe_url(url)}", kind="url")
        session = self._get_session()
        headers = self.headers_for(body)
        started = time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                async with session.post(url, data=body, headers=headers,
                                        allow_redirects=False) as resp:
                    status = resp.status
                    raw = await self._read(resp, url)
        except HookError:
            raise
        except TimeoutError as exc:
            raise HookError(f"{safe_url(url)} did not answer within {timeout:g}s",
                            kind="timeout") from exc
        except (aiohttp.InvalidURL, ValueError) as exc:
            raise HookError(f"invalid webhook URL {safe_url(url)}", kind="url") from exc
        except aiohttp.ClientConnectorError as exc:
            raise HookError(f"cannot connect to {safe_url(url)}: {exc.os_error}",
                            kind="connect") from exc
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
            raise HookError(f"connection to {safe_url(url)} failed: {type(exc).__name__}",
                            kind="connect") from exc
        except aiohttp.ClientPayloadError as exc:
            raise HookError(f"broken reply from {safe_url(url)}", kind="error") from exc
        except aiohttp.ClientError as exc:
            raise HookError(f"HTTP error from {safe_url(url)}: {type(exc).__name__}",
                            kind="error") from exc
        parsed = _parse_json(raw)
        if log.is_enabled(10):  # logging.DEBUG; skip building fields on the hot path
            log.debug("webhook reply", url=safe_url(url), status=status, bytes=len(raw),
                      ms=round((time.monotonic() - started) * 1000, 1))
        return HookReply(status=status, body=raw, json=parsed)

    async def _read(self, resp: aiohttp.ClientResponse, url: str) -> bytes:
        length = resp.content_length
        if length is not None and length > self._max_reply:
            raise HookError(f"reply from {safe_url(url)} is {length} bytes "
                            f"(cap {self._max_reply})", kind="too_large")
        if length is not None:
            return await resp.read()
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(65536):
            size += len(chunk)
            if size > self._max_reply:
                raise HookError(f"reply from {safe_url(url)} exceeds {self._max_reply} bytes",
                                kind="too_large")
            chunks.append(chunk)
        return b"".join(chunks)

    async def close(self) -> None:
        """Close pooled connections; later ``post`` calls raise ``HookError(kind="closed")``."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()


def _parse_json(raw: bytes) -> Any:
    """Parsed JSON of ``raw`` or None when it is not JSON (whatever its Content-Type)."""
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None


def parse_json_strict(raw: bytes) -> tuple[bool, Any]:
    """``(True, value)`` when ``raw`` is JSON, else ``(False, None)``.

    ``HookReply.json`` cannot tell a JSON ``null`` from a non-JSON body; callers
    for which that matters (CallHook: null → 500, not JSON → 480) use this.
    """
    if not raw:
        return False, None
    try:
        return True, json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return False, None


__all__ = ["MAX_REPLY_BYTES", "HookClient", "dumps", "parse_json_strict", "safe_url"]
