"""http(s) media fetch against a local aiohttp server (D-19, S-7, S-8)."""

from __future__ import annotations

import asyncio
import shutil
import wave
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

import engine.media.fetch as fetch_module
from engine.media.cache import MediaCache
from engine.media.errors import (
    MediaConvertError,
    MediaFetchError,
    MediaFetchRefused,
    MediaNotFound,
    MediaPathError,
    MediaTooLarge,
    MediaTooManyRedirects,
)
from engine.media.fetch import MediaFetcher
from engine.media.files import MediaResolver
from engine.settings import load_settings
from tests.fixtures.http_media import MediaServer

pytestmark = pytest.mark.integration


class Now:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
async def make_fetcher(tmp_path: Path) -> AsyncIterator[Callable[..., MediaFetcher]]:
    made: list[MediaFetcher] = []

    def make(*, allow_private: bool = True, max_bytes: int = 1024 * 1024,
             timeout: float = 5.0, ttl: float = 600, now: Any = None) -> MediaFetcher:
        cache = MediaCache(tmp_path / "cache", ttl=ttl, max_bytes=50 * 1024 * 1024,
                           **({"now": now} if now else {}))
        fetcher = MediaFetcher(cache, max_bytes=max_bytes, timeout=timeout,
                               user_agent="dragonpbx-test", allow_private=allow_private)
        made.append(fetcher)
        return fetcher

    yield make
    for fetcher in made:
        await fetcher.close()


def wav_params(path: Path) -> tuple[int, int, int, float]:
    with wave.open(str(path), "rb") as w:
        return w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes() / 8000


def leftovers(fetcher: MediaFetcher) -> list[str]:
    return [p.name for p in fetcher.cache.directory.iterdir() if p.name.startswith(".part-")]


@pytest.mark.parametrize("path", ["/tone.wav", "/tone.mp3"])
async def test_normalises_to_8k_mono_16bit(media_http: MediaServer,
                                           make_fetcher: Callable[..., MediaFetcher],
                                           path: str) -> None:
    fetcher = make_fetcher()
    result = await fetcher.fetch(media_http.url(path))
    channels, width, rate, seconds = wav_params(result)
    assert (channels, width, rate) == (1, 2, 8000)  # the source was 44.1 kHz stereo
    assert seconds == pytest.approx(1.0, abs=0.08)
    assert result.parent == fetcher.cache.directory and result.suffix == ".wav"
    assert result.stat().st_mode & 0o777 == 0o644
    assert leftovers(fetcher) == []
    assert media_http.requests[-1][2] == "dragonpbx-test"


async def test_follows_five_relative_redirects(media_http: MediaServer,
                                               make_fetcher: Callable[..., MediaFetcher]
                                               ) -> None:
    result = await make_fetcher().fetch(media_http.url("/redirect/5"))
    assert wav_params(result)[2] == 8000
    assert [media_http.hits[f"/redirect/{n}"] for n in range(1, 6)] == [1] * 5
    assert media_http.hits["/tone.wav"] == 1


async def test_sixth_redirect_is_refused(media_http: MediaServer,
                                         make_fetcher: Callable[..., MediaFetcher]) -> None:
    fetcher = make_fetcher()
    with pytest.raises(MediaTooManyRedirects):
        await fetcher.fetch(media_http.url("/redirect/6"))
    assert media_http.hits["/tone.wav"] == 0
    assert leftovers(fetcher) == []


async def test_size_cap_while_streaming(media_http: MediaServer,
                                        make_fetcher: Callable[..., MediaFetcher]) -> None:
    fetcher = make_fetcher(max_bytes=512 * 1024)
    with pytest.raises(MediaTooLarge):
        await fetcher.fetch(media_http.url("/big"))
    assert leftovers(fetcher) == []


async def test_size_cap_from_content_length(media_http: MediaServer,
                                            make_fetcher: Callable[..., MediaFetcher]) -> None:
    fetcher = make_fetcher(max_bytes=512 * 1024)
    with pytest.raises(MediaTooLarge, match="2097152 bytes"):
        await fetcher.fetch(media_http.url("/big-declared"))


async def test_time_bound(media_http: MediaServer,
                          make_fetcher: Callable[..., MediaFetcher]) -> None:
    fetcher = make_fetcher(timeout=0.5)
    started = asyncio.get_running_loop().time()
    with pytest.raises(MediaFetchError, match=r"longer than 0\.5 s"):
        await fetcher.fetch(media_http.url("/hang"))
    assert asyncio.get_running_loop().time() - started < 2.0
    assert leftovers(fetcher) == []


async def test_http_error_status(media_http: MediaServer,
                                 make_fetcher: Callable[..., MediaFetcher]) -> None:
    with pytest.raises(MediaFetchError) as info:
        await make_fetcher().fetch(media_http.url("/missing"))
    assert info.value.status == 404


async def test_playlist_is_never_given_to_ffmpeg(media_http: MediaServer,
                                                 make_fetcher: Callable[..., MediaFetcher]
                                                 ) -> None:
    fetcher = make_fetcher()
    with pytest.raises(MediaConvertError, match="not a supported audio format"):
        await fetcher.fetch(media_http.url("/playlist.m3u8"))
    assert leftovers(fetcher) == []
    assert list(fetcher.cache.directory.glob("*.wav")) == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_private_addresses_refused_by_default(media_http: MediaServer,
                                                    make_fetcher: Callable[..., MediaFetcher],
                                                    host: str) -> None:
    fetcher = make_fetcher(allow_private=False)
    with pytest.raises(MediaFetchRefused, match="MEDIA_ALLOW_PRIVATE"):
        await fetcher.fetch(media_http.url("/tone.wav", host=host))
    assert media_http.hits["/tone.wav"] == 0  # refused before connecting


async def test_private_addresses_allowed_with_the_flag(
        media_http: MediaServer, make_fetcher: Callable[..., MediaFetcher]) -> None:
    result = await make_fetcher(allow_private=True).fetch(
        media_http.url("/tone.wav", host="localhost"))
    assert result.is_file()
    # connected to the vetted address, but the server still saw the name
    assert media_http.requests[-1][1] == f"localhost:{media_http.port}"


async def test_every_redirect_hop_is_checked(media_http: MediaServer,
                                             make_fetcher: Callable[..., MediaFetcher],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # pretend only 127.0.0.1 is public: /away redirects to 127.0.0.2
    monkeypatch.setattr(fetch_module, "address_allowed",
                        lambda address, allow_private: str(address) == "127.0.0.1")
    fetcher = make_fetcher(allow_private=False)
    with pytest.raises(MediaFetchRefused, match=r"127\.0\.0\.2"):
        await fetcher.fetch(media_http.url("/away"))
    assert media_http.hits["/away"] == 1 and media_http.hits["/tone.wav"] == 0


async def test_concurrent_requests_fetch_once(media_http: MediaServer,
                                              make_fetcher: Callable[..., MediaFetcher]) -> None:
    fetcher = make_fetcher()
    url = media_http.url("/slow.wav")
    results = await asyncio.gather(*(fetcher.fetch(url) for _ in range(6)))
    assert len(set(results)) == 1
    assert media_http.hits["/slow.wav"] == 1
    assert fetcher.downloads == 1


async def test_one_waiter_giving_up_does_not_cancel_the_fetch(
        media_http: MediaServer, make_fetcher: Callable[..., MediaFetcher]) -> None:
    fetcher = make_fetcher()
    url = media_http.url("/slow.wav")
    impatient = asyncio.create_task(fetcher.fetch(url))
    patient = asyncio.create_task(fetcher.fetch(url))
    await asyncio.sleep(0.05)
    impatient.cancel()
    with pytest.raises(asyncio.CancelledError):
        await impatient
    assert (await patient).is_file()
    assert media_http.hits["/slow.wav"] == 1


async def test_cache_ttl(media_http: MediaServer,
                         make_fetcher: Callable[..., MediaFetcher]) -> None:
    now = Now()
    fetcher = make_fetcher(ttl=60, now=now)
    url = media_http.url("/tone.wav")
    first = await fetcher.fetch(url)
    now.t += 30
    assert await fetcher.fetch(url) == first
    assert media_http.hits["/tone.wav"] == 1
    now.t += 31  # past the TTL: fetched again
    assert await fetcher.fetch(url) == first
    assert media_http.hits["/tone.wav"] == 2


async def test_resolver_via_settings(media_http: MediaServer, tmp_path: Path) -> None:
    settings = load_settings({"MEDIA_CACHE_DIR": str(tmp_path / "c"),
                              "MEDIA_ALLOW_PRIVATE": "true", "HTTP_TIMEOUT": "5"})
    resolver = MediaResolver(settings.media_path, MediaFetcher.from_settings(settings))
    try:
        fetched = await resolver.resolve(media_http.url("/tone.mp3"))
        assert Path(fetched).parent == tmp_path / "c"
        assert (await resolver.resolve("file:/uk.wav")).endswith("/media/uk.wav")
        for url in ("file:/../pyproject.toml", "file:/../../etc/passwd",
                    "file:/sub/../../etc/passwd", "file:..//../etc/passwd"):
            with pytest.raises(MediaPathError):
                await resolver.resolve(url)
        # percent-encoding is not decoded: this is one (missing) file name, not a path
        with pytest.raises(MediaNotFound):
            await resolver.resolve("file:..%2f..%2fetc%2fpasswd")
    finally:
        await resolver.close()


async def test_cache_folder_removed_while_running(media_http: MediaServer,
                                                  make_fetcher: Callable[..., MediaFetcher]
                                                  ) -> None:
    fetcher = make_fetcher()
    first = await fetcher.fetch(media_http.url("/tone.wav"))
    shutil.rmtree(fetcher.cache.directory)  # e.g. a tmp cleaner
    again = await fetcher.fetch(media_http.url("/tone.wav"))
    assert again == first and again.is_file()
    assert media_http.hits["/tone.wav"] == 2
