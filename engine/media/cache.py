"""The on-disk cache of normalised media: atomic entries, TTL, total-size bound (D-19).

An entry is ``<sha256(url)>.wav`` whose mtime is the time it was fetched.
Entries are written under a temporary name in the same directory and
``os.replace``d into place, so a reader (RTPEngine, another engine process
sharing the folder) never sees a partial file. Lookups ignore entries older
than the TTL; each commit removes expired entries and then the oldest ones
until the folder fits ``max_bytes`` (never the entry just written, which
RTPEngine is about to play).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from engine.log import get_logger

log = get_logger(__name__)

_TEMP_PREFIX = ".part-"
_SUFFIX = ".wav"


class MediaCache:
    def __init__(self, directory: Path, *, ttl: float, max_bytes: int,
                 now: Callable[[], float] = time.time):
        self.directory = directory
        self.ttl = ttl
        self.max_bytes = max_bytes
        self._now = now
        # world-readable: RTPEngine often runs as its own user and must open the files
        directory.mkdir(parents=True, exist_ok=True, mode=0o755)
        self._sweep_temp()

    @staticmethod
    def key(url: str) -> str:
        return hashlib.sha256(url.encode("utf-8", "surrogateescape")).hexdigest()

    def path_for(self, url: str) -> Path:
        return self.directory / f"{self.key(url)}{_SUFFIX}"

    def lookup(self, url: str) -> Path | None:
        """The cached file for ``url`` if present and younger than the TTL."""
        path = self.path_for(url)
        try:
            age = self._now() - path.stat().st_mtime
        except FileNotFoundError:
            return None
        return path if age < self.ttl else None

    def temp_path(self, suffix: str = "") -> Path:
        """A fresh, empty file in the cache folder (same filesystem: rename is atomic)."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o755)  # may have been cleaned
        fd, name = tempfile.mkstemp(prefix=_TEMP_PREFIX, suffix=suffix, dir=self.directory)
        os.close(fd)
        return Path(name)

    def commit(self, temp: Path, url: str) -> Path:
        """Move a finished temp file into place as ``url``'s entry and enforce the bounds."""
        final = self.path_for(url)
        os.chmod(temp, 0o644)
        now = self._now()
        os.utime(temp, (now, now))
        os.replace(temp, final)
        self.evict(keep=final)
        return final

    def entries(self) -> list[tuple[float, int, Path]]:
        """(mtime, size, path) of every committed entry, oldest first."""
        out: list[tuple[float, int, Path]] = []
        with os.scandir(self.directory) as it:
            for entry in it:
                if not entry.name.endswith(_SUFFIX) or entry.name.startswith("."):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    st = entry.stat()
                    out.append((st.st_mtime, st.st_size, Path(entry.path)))
        out.sort()
        return out

    def evict(self, keep: Path | None = None) -> int:
        """Remove expired entries, then the oldest until the total fits; returns removals."""
        now = self._now()
        removed = 0
        live: list[tuple[float, int, Path]] = []
        for mtime, size, path in self.entries():
            if path != keep and now - mtime >= self.ttl:
                removed += self._remove(path)
            else:
                live.append((mtime, size, path))
        total = sum(size for _, size, _ in live)
        for _mtime, size, path in live:
            if total <= self.max_bytes:
                break
            if path == keep:
                continue
            removed += self._remove(path)
            total -= size
        if removed:
            log.info("media cache evicted", removed=removed, total_bytes=total)
        return removed

    @staticmethod
    def _remove(path: Path) -> int:
        try:
            path.unlink()
        except FileNotFoundError:
            return 0
        return 1

    def _sweep_temp(self, older_than: float = 3600.0) -> None:
        """Delete temp files a crashed process left behind."""
        now = time.time()
        with os.scandir(self.directory) as it:
            for entry in it:
                if entry.name.startswith(_TEMP_PREFIX):
                    with contextlib.suppress(FileNotFoundError):
                        if now - entry.stat().st_mtime > older_than:
                            os.unlink(entry.path)


__all__ = ["MediaCache"]
