"""Media cache: TTL, atomic commit, size bound with oldest-first eviction (D-19)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from engine.media.cache import MediaCache


class Now:
    def __init__(self, t: float = 1_800_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def put(cache: MediaCache, url: str, size: int) -> Path:
    temp = cache.temp_path(".wav")
    temp.write_bytes(b"x" * size)
    return cache.commit(temp, url)


def test_commit_is_atomic_and_readable(tmp_path: Path) -> None:
    now = Now()
    cache = MediaCache(tmp_path / "c", ttl=60, max_bytes=10_000, now=now)
    temp = cache.temp_path(".wav")
    assert temp.parent == cache.directory and temp.name.startswith(".part-")
    assert cache.lookup("http://a/x") is None
    temp.write_bytes(b"data")
    final = cache.commit(temp, "http://a/x")
    assert not temp.exists()
    assert final == cache.path_for("http://a/x") and final.read_bytes() == b"data"
    assert final.stat().st_mode & 0o777 == 0o644  # RTPEngine may run as another user
    assert final.name == f"{MediaCache.key('http://a/x')}.wav"
    assert cache.lookup("http://a/x") == final


def test_ttl(tmp_path: Path) -> None:
    now = Now()
    cache = MediaCache(tmp_path, ttl=60, max_bytes=10_000, now=now)
    path = put(cache, "http://a/x", 10)
    now.t += 59.9
    assert cache.lookup("http://a/x") == path
    now.t += 0.1
    assert cache.lookup("http://a/x") is None
    # an expired entry is replaced by a new commit and is fresh again
    put(cache, "http://a/x", 12)
    assert cache.lookup("http://a/x") == path and path.stat().st_size == 12


def test_size_bound_evicts_oldest_first(tmp_path: Path) -> None:
    now = Now()
    cache = MediaCache(tmp_path, ttl=1000, max_bytes=250, now=now)
    paths = []
    for n in range(3):
        paths.append(put(cache, f"http://a/{n}", 100))
        now.t += 1
    # 300 bytes > 250: the oldest went when the third arrived
    assert [p.exists() for p in paths] == [False, True, True]
    assert sum(size for _, size, _ in cache.entries()) == 200


def test_new_entry_is_kept_even_if_alone_too_big(tmp_path: Path) -> None:
    now = Now()
    cache = MediaCache(tmp_path, ttl=1000, max_bytes=50, now=now)
    old = put(cache, "http://a/old", 10)
    now.t += 1
    big = put(cache, "http://a/big", 100)
    assert big.exists() and not old.exists()


def test_expired_entries_are_removed_on_commit(tmp_path: Path) -> None:
    now = Now()
    cache = MediaCache(tmp_path, ttl=10, max_bytes=10_000, now=now)
    stale = put(cache, "http://a/stale", 10)
    now.t += 11
    fresh = put(cache, "http://a/fresh", 10)
    assert not stale.exists() and fresh.exists()


def test_leftover_temp_files_are_swept(tmp_path: Path) -> None:
    old = tmp_path / ".part-crashed.wav"
    old.write_bytes(b"x")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    recent = tmp_path / ".part-busy.wav"
    recent.write_bytes(b"x")
    MediaCache(tmp_path, ttl=10, max_bytes=100)
    assert not old.exists() and recent.exists()


def test_other_files_are_left_alone(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_bytes(b"x" * 1000)
    cache = MediaCache(tmp_path, ttl=10, max_bytes=100, now=Now())
    put(cache, "http://a/x", 10)
    assert (tmp_path / "notes.txt").exists()
