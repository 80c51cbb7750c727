"""URL, address and converter rules of the media fetcher (no network)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from engine.media.convert import ffmpeg_argv, sniff_format, sox_argv
from engine.media.errors import MediaUrlError
from engine.media.fetch import address_allowed, effective_address, safe_url, validate_url


@pytest.mark.parametrize("url", ["http://example.com/a.wav", "https://example.com:8443/a",
                                 "HTTP://EXAMPLE.COM/x", "http://[2001:db8::1]/x"])
def test_valid_urls(url: str) -> None:
    assert validate_url(url).scheme in ("http", "https")


@pytest.mark.parametrize("url", ["ftp://example.com/a.wav", "file:///etc/passwd",
                                 "gopher://x/", "http:///nohost", "javascript:alert(1)",
                                 "data:audio/wav;base64,AAAA"])
def test_invalid_urls(url: str) -> None:
    with pytest.raises(MediaUrlError):
        validate_url(url)


def test_safe_url_hides_credentials() -> None:
    assert safe_url("https://user:pw@example.com/a.wav") == "https://example.com/a.wav"
    assert safe_url("https://example.com/a.wav") == "https://example.com/a.wav"


ADDRESSES = [
    # address, allowed by default, allowed with MEDIA_ALLOW_PRIVATE
    ("93.184.216.34", True, True),
    ("2606:2800:220:1:248:1893:25c8:1946", True, True),
    ("127.0.0.1", False, True),
    ("10.1.2.3", False, True),
    ("172.16.0.1", False, True),
    ("192.168.0.1", False, True),
    ("169.254.169.254", False, True),  # cloud metadata endpoint
    ("100.64.0.1", False, True),  # CGNAT
    ("::1", False, True),
    ("fe80::1", False, True),
    ("fd00::1", False, True),
    ("::ffff:127.0.0.1", False, True),  # IPv4-mapped loopback
    ("::ffff:93.184.216.34", True, True),
    ("64:ff9b::a00:1", False, True),  # NAT64 of 10.0.0.1
    ("0.0.0.0", False, False),
    ("::", False, False),
    ("224.0.0.1", False, False),
    ("ff02::1", False, False),
]


@pytest.mark.parametrize(("address", "public", "private_ok"), ADDRESSES)
def test_address_policy(address: str, public: bool, private_ok: bool) -> None:
    ip = ipaddress.ip_address(address)
    assert address_allowed(ip, allow_private=False) is public
    assert address_allowed(ip, allow_private=True) is private_ok


def test_effective_address_unwraps() -> None:
    assert str(effective_address(ipaddress.ip_address("::ffff:10.0.0.1"))) == "10.0.0.1"
    assert str(effective_address(ipaddress.ip_address("64:ff9b::7f00:1"))) == "127.0.0.1"
    assert str(effective_address(ipaddress.ip_address("2001:db8::1"))) == "2001:db8::1"


SNIFF = [
    (b"RIFF\x24\x08\x00\x00WAVEfmt ", "wav"),
    (b"ID3\x04\x00\x00\x00\x00\x00\x00", "mp3"),
    (b"\xff\xfb\x90\x64\x00", "mp3"),
    (b"\xff\xf3\x64\xc4", "mp3"),
    (b"OggS\x00\x02", "ogg"),
    (b"fLaC\x00\x00", "flac"),
    (b"FORM\x00\x00\x00\x00AIFF", "aiff"),
    (b".snd\x00\x00\x00\x18", "au"),
    (b"#EXTM3U\n#EXT-X-", None),  # HLS playlist: never handed to ffmpeg
    (b"ffconcat version", None),
    (b"<html><body>", None),
    (b"RIFF\x00\x00\x00\x00AVI ", None),
    (b"\xff\xe0\x00", None),  # frame sync but reserved layer
    (b"", None),
]


@pytest.mark.parametrize(("head", "expected"), SNIFF)
def test_sniff_format(head: bytes, expected: str | None) -> None:
    assert sniff_format(head) == expected


def test_ffmpeg_is_locked_down() -> None:
    argv = ffmpeg_argv("/usr/bin/ffmpeg", Path("/c/in.download"), Path("/c/out.wav"), "mp3")
    joined = " ".join(argv)
    assert "-protocol_whitelist file" in joined
    assert argv[argv.index("-i") - 2:argv.index("-i") + 2] == [
        "-f", "mp3", "-i", "file:/c/in.download"]
    assert argv[-1] == "file:/c/out.wav"
    for expected in ("-ar 8000", "-ac 1", "-c:a pcm_s16le", "-f wav", "-map 0:a:0", "-vn",
                     "-nostdin"):
        assert expected in joined


def test_sox_fallback_forces_the_type() -> None:
    argv = sox_argv("/usr/bin/sox", Path("/c/in"), Path("/c/out.wav"), "ogg")
    assert argv[1:5] == ["-V1", "-t", "vorbis", "/c/in"]
    assert argv[argv.index("-r") + 1] == "8000" and argv[argv.index("-c") + 1] == "1"
