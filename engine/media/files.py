"""``file:`` media URLs → confined absolute paths; URL dispatch; the start-up check.

``file:`` URLs are always relative to MEDIA_PATH, whatever the slashes
(``file:/uk.wav``, ``file://uk.wav`` and ``file:uk.wav`` all mean
``MEDIA_PATH/uk.wav``), as in the original (spec §6b) — but unlike the
original the result is resolved (symlinks followed) and must stay inside
MEDIA_PATH (S-7): ``..`` segments are refused outright, a symlink leading
out is refused after resolution, and the file must exist and be a regular
file (the original handed any string to RTPEngine).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from engine.errors import ConfigError, MediaError
from engine.media.errors import MediaNotFound, MediaPathError, MediaUrlError

if TYPE_CHECKING:
    from engine.media.fetch import MediaFetcher


def is_file_url(url: str) -> bool:
    return url[:5].lower() == "file:"


def is_http_url(url: str) -> bool:
    low = url[:8].lower()
    return low.startswith(("http://", "https://"))


def file_url_relative(url: str) -> str:
    """The MEDIA_PATH-relative part of a ``file:`` URL (leading slashes dropped)."""
    if not is_file_url(url):
        raise MediaUrlError(f"not a file: URL: {url!r}")
    rel = url[5:].lstrip("/")
    if not rel:
        raise MediaUrlError(f"file: URL names no file: {url!r}")
    if "\x00" in rel:
        raise MediaPathError("file: URL contains a NUL byte")
    if any(part == ".." for part in PurePosixPath(rel).parts):
        raise MediaPathError(f"file: URL may not contain '..': {url!r}")
    return rel


def resolve_file_url(url: str, base: Path) -> Path:
    """Absolute, symlink-free path of ``url`` under ``base``; refuses escapes and misses."""
    rel = file_url_relative(url)
    root = base.resolve()
    try:
        real = (root / rel).resolve(strict=True)
    except FileNotFoundError:
        raise MediaNotFound(f"media file {rel!r} not found under {root}") from None
    except (OSError, RuntimeError) as exc:  # symlink loop, permission, name too long
        raise MediaPathError(f"media file {rel!r} cannot be resolved: {exc}") from None
    if not real.is_relative_to(root):
        raise MediaPathError(f"media file {rel!r} resolves outside {root}")
    if not real.is_file():
        raise MediaNotFound(f"media path {rel!r} is not a regular file")
    return real


#: ``file:`` URLs whose resolution the resolver remembers (bounded: URLs come from webhooks).
_MAX_REMEMBERED = 1024


class MediaResolver:
    """``resolve(url)`` for the MediaPort: ``file:`` locally, ``http(s):`` via the fetcher.

    A ``file:`` URL is resolved in full once; later requests for it (the ringtone, on
    every call) only re-check with three ``stat`` calls that MEDIA_PATH, the URL's
    path and the remembered result still name the same directory and regular file
    (the full resolution walks every path component twice, ~80 µs a call). Anything
    changed — a file replaced, removed, a symlink re-pointed — misses and resolves
    (and is confined) again.
    """

    def __init__(self, media_path: Path, fetcher: MediaFetcher | None = None):
        self.media_path = media_path
        self.fetcher = fetcher
        # url → (path as given, resolved path, (dev, ino) of MEDIA_PATH and of the file)
        self._files: dict[str, tuple[str, str, tuple[int, int], tuple[int, int]]] = {}

    async def resolve(self, url: str) -> str:
        text = url.strip()
        if is_file_url(text):
            return self._file(text)
        if is_http_url(text):
            if self.fetcher is None:
                raise MediaUrlError("http(s) media is not enabled")
            return str(await self.fetcher.fetch(text))
        raise MediaUrlError(f"unsupported media URL (want file: or http(s)://): {text!r}")

    def _file(self, url: str) -> str:
        known = self._files.get(url)
        if known is not None:
            given, real, root_id, file_id = known
            if (_identity(self.media_path, directory=True) == root_id
                    and _identity(given) == file_id and _identity(real) == file_id):
                return real
        resolved = str(resolve_file_url(url, self.media_path))
        root_now = _identity(self.media_path, directory=True)
        file_now = _identity(resolved)
        if root_now is not None and file_now is not None:
            if len(self._files) >= _MAX_REMEMBERED:
                self._files.clear()
            as_given = os.path.join(self.media_path, file_url_relative(url))
            self._files[url] = (as_given, resolved, root_now, file_now)
        return resolved

    async def close(self) -> None:
        if self.fetcher is not None:
            await self.fetcher.close()


def _identity(path: str | Path, *, directory: bool = False) -> tuple[int, int] | None:
    """(device, inode) of what ``path`` names (symlinks followed) when it is a regular
    file (or a directory with ``directory``); None when it is missing or something else."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    if not (stat.S_ISDIR(st.st_mode) if directory else stat.S_ISREG(st.st_mode)):
        return None
    return st.st_dev, st.st_ino


def check_default_ringtone(settings: Any) -> str:
    """Start-up check (D-18): DEFAULT_RINGTONE must name something playable.

    A ``file:`` ringtone must resolve to a file under MEDIA_PATH (returns its
    path); an ``http(s)`` one must be a well-formed URL (it is fetched on first
    use, not at start-up). Raises ``ConfigError`` naming the variable.
    """
    url = settings.default_ringtone.strip()
    try:
        if is_file_url(url):
            return str(resolve_file_url(url, settings.media_path))
        if is_http_url(url):
            from engine.media.fetch import validate_url

            return str(validate_url(url))
        raise MediaUrlError("want file:<path> or an http(s):// URL")
    except MediaError as exc:
        raise ConfigError(
            f"DEFAULT_RINGTONE={url!r} is invalid: {exc} (MEDIA_PATH={settings.media_path})"
        ) from None


__all__ = [
    "MediaResolver",
    "check_default_ringtone",
    "file_url_relative",
    "is_file_url",
    "is_http_url",
    "resolve_file_url",
]
