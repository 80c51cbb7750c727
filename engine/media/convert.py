"""Normalise downloaded audio to 8 kHz mono 16-bit WAV with ffmpeg (or sox).

Downloads are untrusted (the URL comes from a webhook), so (S-8):

* the input format is **sniffed from magic bytes and forced** (``-f wav``,
  ``-f mp3`` …); anything we do not recognise is refused. ffmpeg therefore
  never probes the file, and a playlist (HLS ``#EXTM3U``, ``ffconcat``) that
  would make it open other local files or URLs is never parsed as one;
* ``-protocol_whitelist file`` and ``file:`` input/output URLs: only plain
  files can be opened;
* only the first audio stream is mapped (no cover-art video, subtitles,
  metadata), output is capped at ``MAX_SECONDS`` and the process at a time
  budget; a cancelled caller kills the process.

Everything is re-encoded, WAV included (the original stored ``audio/wav``
bodies unchanged, D-19), so RTPEngine always gets the same simple input.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from pathlib import Path

from engine.log import get_logger
from engine.media.errors import MediaConvertError

log = get_logger(__name__)

#: Longest normalised media kept (one hour ≈ 58 MB at 8 kHz/16 bit).
MAX_SECONDS = 3600


def sniff_format(head: bytes) -> str | None:
    """ffmpeg demuxer name for the first bytes of a file, or None if not audio we take."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[:3] == b"ID3" or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0
                              and head[1] & 0x06 != 0):  # MPEG audio frame sync, layer set
        return "mp3"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if head[:4] == b".snd":
        return "au"
    return None


_SOX_TYPES = {"wav": "wav", "mp3": "mp3", "ogg": "vorbis", "flac": "flac", "aiff": "aiff",
              "au": "au"}


def ffmpeg_argv(ffmpeg: str, src: Path, dst: Path, fmt: str,
                max_seconds: int = MAX_SECONDS) -> list[str]:
    return [
        ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error",
        "-protocol_whitelist", "file", "-f", fmt, "-i", f"file:{src}",
        "-map", "0:a:0", "-vn", "-sn", "-dn", "-map_metadata", "-1",
        "-t", str(max_seconds), "-ar", "8000", "-ac", "1", "-c:a", "pcm_s16le",
        "-f", "wav", "-y", f"file:{dst}",
    ]


def sox_argv(sox: str, src: Path, dst: Path, fmt: str,
             max_seconds: int = MAX_SECONDS) -> list[str]:
    return [sox, "-V1", "-t", _SOX_TYPES[fmt], str(src), "-t", "wav", "-r", "8000", "-c", "1",
            "-b", "16", "-e", "signed-integer", str(dst), "trim", "0", str(max_seconds)]


def converter_argv(src: Path, dst: Path, fmt: str) -> list[str]:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg:
        return ffmpeg_argv(ffmpeg, src, dst, fmt)
    sox = shutil.which("sox")
    if sox:
        return sox_argv(sox, src, dst, fmt)
    raise MediaConvertError("neither ffmpeg nor sox is installed: cannot normalise media")


async def normalise(src: Path, dst: Path, *, timeout: float) -> None:
    """Convert ``src`` (any supported audio) into ``dst`` (8 kHz mono s16 WAV)."""
    head = await asyncio.to_thread(_read_head, src)
    fmt = sniff_format(head)
    if fmt is None:
        raise MediaConvertError(f"not a supported audio format (starts with {head[:8]!r})")
    argv = converter_argv(src, dst, fmt)
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE)
    except OSError as exc:
        raise MediaConvertError(f"cannot run {argv[0]}: {exc}") from exc
    try:
        async with asyncio.timeout(timeout):
            _, stderr = await proc.communicate()
    except BaseException as exc:  # timeout or cancellation: do not leave the converter running
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        if isinstance(exc, TimeoutError):
            raise MediaConvertError(f"{Path(argv[0]).name} took longer than {timeout:g} s") \
                from None
        raise
    if proc.returncode != 0:
        detail = stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        raise MediaConvertError(
            f"{Path(argv[0]).name} could not decode the {fmt} input: {' | '.join(detail)}")
    log.debug("media normalised", tool=Path(argv[0]).name, format=fmt)


def _read_head(path: Path) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(16)


__all__ = ["MAX_SECONDS", "converter_argv", "ffmpeg_argv", "normalise", "sniff_format",
           "sox_argv"]
