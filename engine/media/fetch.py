"""Fetch ``http(s):`` announcement/ringtone media safely, normalise and cache it.

What the original got wrong (D-19, S-8) and what this does instead:

* **Redirects**: at most ``MAX_REDIRECTS`` (5), followed by us, not by httpx,
  so every hop is checked like the first; relative ``Location`` values are
  joined onto the current URL; only ``http``/``https`` targets.
* **SSRF**: the host is resolved first and *every* address it resolves to must
  be public (not private, loopback, link-local, CGNAT, ULA, multicast,
  unspecified — IPv4-mapped/NAT64 IPv6 forms are unwrapped) unless
  MEDIA_ALLOW_PRIVATE; the connection then goes to the vetted address itself
  (Host header and TLS SNI keep the name, so virtual hosts and certificate
  checks still work), which closes the DNS-rebinding gap between check and
  connect. Proxy variables from the environment are ignored (``trust_env``
  off) so a proxy cannot bypass the check.
* **Bounds**: the whole fetch (all hops) must finish within HTTP_TIMEOUT; the
  body may not exceed MEDIA_FETCH_MAX_BYTES (checked against Content-Length
  up front and while streaming, after content decoding so a gzip bomb is
  counted at its real size).
* **Normalisation** always (WAV bodies too) via :mod:`engine.media.convert`.
* **Cache** with TTL and size bound, atomic entries (:mod:`engine.media.cache`).
* **One fetch per URL at a time**: concurrent callers for the same URL await
  the same task (shielded, so one caller giving up does not cancel the fetch
  for the others).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from engine.log import get_logger
from engine.media.cache import MediaCache
from engine.media.convert import normalise
from engine.media.errors import (
    MediaFetchError,
    MediaFetchRefused,
    MediaTooLarge,
    MediaTooManyRedirects,
    MediaUrlError,
)

log = get_logger(__name__)

MAX_REDIRECTS = 5
ALLOWED_SCHEMES = ("http", "https")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]


def validate_url(url: str | httpx.URL) -> httpx.URL:
    """Parse ``url`` and require an http(s) scheme and a host."""
    try:
        parsed = httpx.URL(url) if not isinstance(url, httpx.URL) else url
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise MediaUrlError(f"bad media URL: {exc}") from None
    if parsed.scheme not in ALLOWED_SCHEMES:
        raise MediaUrlError(f"media URL scheme {parsed.scheme!r} is not http or https")
    if not parsed.host:
        raise MediaUrlError("media URL has no host")
    return parsed


def safe_url(url: str | httpx.URL) -> str:
    """The URL without user:password, for logs and error messages."""
    try:
        parsed = httpx.URL(url) if not isinstance(url, httpx.URL) else url
    except (httpx.InvalidURL, TypeError, ValueError):
        return "<invalid url>"
    return str(parsed.copy_with(username=None, password=None)) if parsed.userinfo else str(
        parsed)


def effective_address(address: IPAddress) -> IPAddress:
    """The IPv4 address hidden in an IPv4-mapped or NAT64 IPv6 address, else itself."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def address_allowed(address: IPAddress, *, allow_private: bool) -> bool:
    """Public unicast always; private/loopback/link-local/CGNAT only with the flag."""
    addr = effective_address(address)
    if addr.is_multicast or addr.is_unspecified:
        return False
    return addr.is_global or allow_private


async def resolve_host(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (an IP literal resolves to itself)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise MediaFetchError(f"cannot resolve {host}: {exc.strerror}", url=host) from None
    out: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        addr = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if addr not in out:
            out.append(addr)
    return out


class MediaFetcher:
    """Downloads, normalises and caches http(s) media; see the module docstring."""

    def __init__(self, cache: MediaCache, *, max_bytes: int, timeout: float,
                 user_agent: str = "dragonpbx", allow_private: bool = False,
                 resolver: Resolver = resolve_host,
                 convert: Callable[..., Awaitable[None]] = normalise):
        self.cache = cache
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.user_agent = user_agent
        self.allow_private = allow_private
        self._resolve = resolver
        self._convert = convert
        self._client: httpx.AsyncClient | None = None
        self._inflight: dict[str, asyncio.Task[Path]] = {}
        self.downloads = 0  # completed network fetches (tests and metrics)

    @classmethod
    def from_settings(cls, settings: Any, **kwargs: Any) -> MediaFetcher:
        cache = MediaCache(settings.media_cache_dir, ttl=settings.media_cache_ttl,
                           max_bytes=settings.media_cache_max_bytes)
        return cls(cache, max_bytes=settings.media_fetch_max_bytes,
                   timeout=settings.http_timeout, user_agent=settings.http_user_agent,
                   allow_private=settings.media_allow_private, **kwargs)

    async def close(self) -> None:
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                follow_redirects=False, trust_env=False, timeout=self.timeout,
                headers={"User-Agent": self.user_agent, "Accept": "audio/*, */*;q=0.5"})
        return self._client

    async def fetch(self, url: str) -> Path:
        """Local path of the normalised WAV for ``url`` (from cache, or fetched now)."""
        validate_url(url)
        hit = self.cache.lookup(url)
        if hit is not None:
            return hit
        task = self._inflight.get(url)
        if task is None:
            task = asyncio.create_task(self._fetch(url), name=f"media-fetch {safe_url(url)}")
            self._inflight[url] = task
            task.add_done_callback(lambda t: self._settled(url, t))
        return await asyncio.shield(task)

    def _settled(self, url: str, task: asyncio.Task[Path]) -> None:
        if self._inflight.get(url) is task:
            del self._inflight[url]
        if not task.cancelled():
            task.exception()  # retrieved here: every waiter may have gone away

    async def _fetch(self, url: str) -> Path:
        try:
            return await self._fetch_into_cache(url)
        except OSError as exc:  # the cache folder: full disk, permissions, removed
            raise MediaFetchError(f"media cache {self.cache.directory}: {exc}",
                                  url=safe_url(url)) from exc

    async def _fetch_into_cache(self, url: str) -> Path:
        started = time.monotonic()
        raw = self.cache.temp_path(".download")
        wav = self.cache.temp_path(".wav")
        try:
            try:
                async with asyncio.timeout(self.timeout):
                    size = await self._download(url, raw)
            except TimeoutError:
                raise MediaFetchError(
                    f"fetching {safe_url(url)} took longer than {self.timeout:g} s",
                    url=safe_url(url)) from None
            await self._convert(raw, wav, timeout=max(self.timeout, 10.0))
            path = self.cache.commit(wav, url)
        finally:
            for leftover in (raw, wav):
                with contextlib.suppress(FileNotFoundError):
                    leftover.unlink()
        self.downloads += 1
        log.info("media fetched", url=safe_url(url), bytes=size,
                 wav_bytes=path.stat().st_size, ms=round((time.monotonic() - started) * 1000))
        return path

    async def _download(self, url: str, dest: Path) -> int:
        current = validate_url(url)
        for _hop in range(MAX_REDIRECTS + 1):
            response = await self._request(current)
            try:
                if response.status_code in _REDIRECTS:
                    location = response.headers.get("location")
                    if not location:
                        raise MediaFetchError(
                            f"{safe_url(current)} answered {response.status_code} "
                            "without Location", url=safe_url(url),
                            status=response.status_code)
                    try:
                        current = validate_url(current.join(location))
                    except httpx.InvalidURL as exc:
                        raise MediaUrlError(f"bad redirect Location: {exc}") from None
                    continue
                if response.status_code != 200:
                    raise MediaFetchError(
                        f"{safe_url(current)} answered HTTP {response.status_code}",
                        url=safe_url(url), status=response.status_code)
                return await self._save(response, dest, url)
            finally:
                await response.aclose()
        raise MediaTooManyRedirects(f"more than {MAX_REDIRECTS} redirects from {safe_url(url)}",
                                    url=safe_url(url))

    async def _request(self, url: httpx.URL) -> httpx.Response:
        """GET ``url`` connecting only to vetted addresses of its host."""
        host = url.host
        port = url.port or (443 if url.scheme == "https" else 80)
        addresses = await self._resolve(host, port)
        if not addresses:
            raise MediaFetchError(f"{host} has no address", url=safe_url(url))
        refused = [a for a in addresses
                   if not address_allowed(a, allow_private=self.allow_private)]
        if refused:
            raise MediaFetchRefused(
                f"{host} resolves to {refused[0]}, a non-public address "
                "(set MEDIA_ALLOW_PRIVATE=true to allow)", url=safe_url(url))
        last: Exception | None = None
        for address in addresses:
            request = self._http().build_request(
                "GET", url.copy_with(host=str(address)),
                headers={"Host": url.netloc.decode("ascii")},
                extensions={"sni_hostname": host} if url.scheme == "https" else None)
            try:
                return await self._http().send(request, stream=True)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                last = exc
                continue
            except httpx.HTTPError as exc:
                raise MediaFetchError(f"fetching {safe_url(url)} failed: {exc}",
                                      url=safe_url(url)) from exc
        raise MediaFetchError(f"cannot connect to {host}: {last}", url=safe_url(url)) from last

    async def _save(self, response: httpx.Response, dest: Path, url: str) -> int:
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            raise MediaTooLarge(f"{safe_url(url)} is {declared} bytes, over the "
                                f"{self.max_bytes}-byte limit", url=safe_url(url))
        size = 0
        # file I/O in a worker thread: the cache may sit on a slow or network disk
        out = await asyncio.to_thread(open, dest, "wb")
        try:
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > self.max_bytes:
                    raise MediaTooLarge(f"{safe_url(url)} exceeds the {self.max_bytes}-byte "
                                        "limit", url=safe_url(url))
                await asyncio.to_thread(out.write, chunk)
        except httpx.HTTPError as exc:
            raise MediaFetchError(f"reading {safe_url(url)} failed: {exc}",
                                  url=safe_url(url)) from exc
        finally:
            await asyncio.to_thread(out.close)
        if size == 0:
            raise MediaFetchError(f"{safe_url(url)} returned an empty body", url=safe_url(url))
        return size


__all__ = [
    "ALLOWED_SCHEMES",
    "MAX_REDIRECTS",
    "MediaFetcher",
    "address_allowed",
    "effective_address",
    "resolve_host",
    "safe_url",
    "validate_url",
]
