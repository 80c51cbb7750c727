"""Failures of media files and fetches (all are ``engine.errors.MediaError``).

A call flow treats any of them as "this announcement/ringtone cannot be
played" (``playback:failed``); the subclasses say why for logs and tests.
"""

from __future__ import annotations

from engine.errors import MediaError


class MediaUrlError(MediaError, ValueError):
    """The media URL is malformed or uses a scheme we do not serve."""


class MediaPathError(MediaUrlError):
    """A ``file:`` URL points outside MEDIA_PATH (``..``, absolute escape, symlink) — S-7."""


class MediaNotFound(MediaError):
    """A ``file:`` URL names no regular file under MEDIA_PATH."""


class MediaFetchError(MediaError):
    """An ``http(s):`` media download failed (status, network, timeout)."""

    def __init__(self, message: str, *, url: str, status: int | None = None):
        self.url = url
        self.status = status
        super().__init__(message)


class MediaFetchRefused(MediaFetchError):
    """The URL resolves to an address we must not contact (private ranges, S-8)."""


class MediaTooLarge(MediaFetchError):
    """The download exceeds MEDIA_FETCH_MAX_BYTES."""


class MediaTooManyRedirects(MediaFetchError):
    """More than five redirects (D-19)."""


class MediaConvertError(MediaError):
    """The downloaded file is not audio we can normalise (unknown format, decoder error)."""


__all__ = [
    "MediaConvertError",
    "MediaFetchError",
    "MediaFetchRefused",
    "MediaNotFound",
    "MediaPathError",
    "MediaTooLarge",
    "MediaTooManyRedirects",
    "MediaUrlError",
]
