"""The one shared webhook HTTP client (implements ``engine.ports.HookCaller``).

Why not a general-purpose client: RegHook and CallHook calls are on the SIP
hot path (one per REGISTER, one per call). httpx's ``AsyncClient`` managed a
fraction of aiohttp's throughput here (``bench/bench_hooks.py``), and aiohttp
itself, profiled inside the registrar, cost ~300 µs of CPU per call — more than
half of a whole digest registration. The hooks therefore use the lean
keep-alive POST client of ``engine.hooks.http1`` (llhttp via ``httptools``);
httpx stays on the cold paths (config polling, media fetch).

Every request:

* reuses pooled HTTP/1.1 keep-alive connections (at most ``HTTP_POOLSIZE``,
  and never fewer than 100, per webhook URL — scheme, host, port and path;
  the query string does not count). One pool per URL, not per host: a slow
  hook can fill only its own pool, so requests to the other hook URLs of the
  same server do not queue behind it (issue 10, defect 9). Beyond
  ``MAX_URL_POOLS`` distinct URLs the rest share one pool per host;
* is bounded by the ``timeout`` the caller passes (waiting for a pooled
  connection, connect, send and the whole reply), so a slow-loris hook cannot
  stall a SIP transaction (S-11);
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

from engine.errors import HookError
from engine.hooks.http1 import Http1Pool, HttpTarget, parse_target
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
MAX_URL_POOLS = 1024  # webhook URLs come from config and RegHook grants: few in practice
_MAX_ROUTES = 4096  # url → (pool, parsed target) cache bound


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
        self._pools: dict[str, Http1Pool] = {}  # per log-safe URL (scheme://host:port/path)
        self._shared: Http1Pool | None = None  # per host, for URLs beyond MAX_URL_POOLS
        self._routes: dict[str, tuple[Http1Pool, HttpTarget]] = {}
        self._closed = False
        if any(c in user_agent for c in "\r\n\0"):
            raise ValueError("User-Agent must not contain CR, LF or NUL")
        self._fixed = (f"User-Agent: {user_agent}\r\n"
                       "Content-Type: application/json\r\n").encode("latin-1", "replace")

    @classmethod
    def from_settings(cls, settings: Settings) -> HookClient:
        """Client configured from ``HTTP_USER_AGENT_HEADER``, ``DRAGONPBX_WEBHOOK_SECRET``
        and ``HTTP_POOLSIZE`` (which never lowers the per-host cap below 100)."""
        return cls(user_agent=settings.http_user_agent, secret=settings.webhook_secret,
                   limit_per_host=settings.http_poolsize)

    def _route(self, url: str) -> tuple[Http1Pool, HttpTarget]:
        """The pool serving ``url`` and its parsed target (both cached per URL)."""
        if self._closed:
            raise HookError("webhook client is closed", kind="closed")
        route = self._routes.get(url)
        if route is not None:
            return route
        target = parse_target(url, safe_url(url))
        pool = self._pools.get(target.display)
        if pool is None:
            if len(self._pools) < MAX_URL_POOLS:
                pool = self._pools[target.display] = self._new_pool()
            else:
                if self._shared is None:
                    self._shared = self._new_pool()
                pool = self._shared
        if len(self._routes) >= _MAX_ROUTES:
            self._routes.clear()
        self._routes[url] = route = (pool, target)
        return route

    def _new_pool(self) -> Http1Pool:
        return Http1Pool(limit_per_host=self._limit_per_host, keepalive=self._keepalive)

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
        pool, target = self._route(url)
        tail = self._fixed
        if self._secret is not None:
            signed = signature_headers(self._secret, int(self._wall_clock()), body)
            tail += "".join(f"{k}: {v}\r\n" for k, v in signed.items()).encode("ascii")
        tail += b"Content-Length: %d\r\n\r\n%b" % (len(body), body)
        started = time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                status, raw = await pool.request(target, tail, self._max_reply)
        except HookError as exc:
            if exc.kind == "closed" or target.display in str(exc):
                raise
            raise HookError(f"{target.display}: {exc}", kind=exc.kind) from exc
        except TimeoutError as exc:
            raise HookError(f"{target.display} did not answer within {timeout:g}s",
                            kind="timeout") from exc
        except OSError as exc:
            raise HookError(f"connection to {target.display} failed: {type(exc).__name__}",
                            kind="connect") from exc
        parsed = _parse_json(raw)
        if log.is_enabled(10):  # logging.DEBUG; skip building fields on the hot path
            log.debug("webhook reply", url=target.display, status=status, bytes=len(raw),
                      ms=round((time.monotonic() - started) * 1000, 1))
        return HookReply(status=status, body=raw, json=parsed)

    async def close(self) -> None:
        """Close pooled connections; later ``post`` calls raise ``HookError(kind="closed")``."""
        self._closed = True
        pools = [*self._pools.values(), *([self._shared] if self._shared else [])]
        self._pools, self._shared, self._routes = {}, None, {}
        for pool in pools:
            await pool.close()


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


__all__ = ["MAX_REPLY_BYTES", "MAX_URL_POOLS", "HookClient", "dumps", "parse_json_strict",
           "safe_url"]
