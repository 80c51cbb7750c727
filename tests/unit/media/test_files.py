"""file: URL resolution and confinement to MEDIA_PATH (spec §6b, S-7, D-18)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.errors import ConfigError
from engine.media.errors import MediaNotFound, MediaPathError, MediaUrlError
from engine.media.files import (
    MediaResolver,
    check_default_ringtone,
    file_url_relative,
    resolve_file_url,
)
from engine.paths import media_dir
from engine.settings import load_settings


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """MEDIA_PATH with a few files, a sub-folder and symlinks in and out."""
    base = tmp_path / "media"
    (base / "sub").mkdir(parents=True)
    (base / "uk.wav").write_bytes(b"RIFF")
    (base / "sub" / "tone.wav").write_bytes(b"RIFF")
    (base / "odd name.wav").write_bytes(b"RIFF")
    (tmp_path / "secret.txt").write_text("secret")
    os.symlink(base / "uk.wav", base / "inside-link.wav")
    os.symlink(tmp_path / "secret.txt", base / "outside-link.wav")
    os.symlink(tmp_path, base / "up")
    os.symlink(base / "loop-b", base / "loop-a")
    os.symlink(base / "loop-a", base / "loop-b")
    return base


RELATIVE = [
    ("file:/uk.wav", "uk.wav"),
    ("file://uk.wav", "uk.wav"),  # spec: file://a.wav is MEDIA_PATH/a.wav too
    ("file:///uk.wav", "uk.wav"),
    ("file:uk.wav", "uk.wav"),
    ("FILE:/uk.wav", "uk.wav"),
    ("file:/sub/tone.wav", "sub/tone.wav"),
    ("file:/odd name.wav", "odd name.wav"),
]


@pytest.mark.parametrize(("url", "expected"), RELATIVE)
def test_relative_part(url: str, expected: str) -> None:
    assert file_url_relative(url) == expected


RESOLVES = [
    ("file:/uk.wav", "uk.wav"),
    ("file://uk.wav", "uk.wav"),
    ("file:/sub/tone.wav", "sub/tone.wav"),
    ("file:/sub//tone.wav", "sub/tone.wav"),
    ("file:/./sub/./tone.wav", "sub/tone.wav"),
    ("file:/odd name.wav", "odd name.wav"),
    ("file:/inside-link.wav", "uk.wav"),  # a symlink that stays inside is fine
]


@pytest.mark.parametrize(("url", "expected"), RESOLVES)
def test_resolves_inside_media_path(tree: Path, url: str, expected: str) -> None:
    path = resolve_file_url(url, tree)
    assert path == (tree / expected).resolve()
    assert path.is_absolute()


ESCAPES = [
    ("file:/../secret.txt", MediaPathError),
    ("file:../secret.txt", MediaPathError),
    ("file:/sub/../../secret.txt", MediaPathError),
    ("file:/sub/../uk.wav", MediaPathError),  # '..' refused outright, even if harmless
    ("file:/..", MediaPathError),
    ("file:/outside-link.wav", MediaPathError),  # symlink leading out
    ("file:/up/secret.txt", MediaPathError),  # symlinked folder leading out
    ("file:/loop-a", MediaPathError),
    ("file:/uk.wav\x00.txt", MediaPathError),
    ("file:/missing.wav", MediaNotFound),
    ("file:/sub", MediaNotFound),  # a folder is not playable
    ("file:/", MediaUrlError),
    ("file:", MediaUrlError),
    ("http://x/uk.wav", MediaUrlError),
]


@pytest.mark.parametrize(("url", "error"), ESCAPES)
def test_refuses(tree: Path, url: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        resolve_file_url(url, tree)


def test_absolute_looking_paths_stay_relative(tree: Path, tmp_path: Path) -> None:
    # "file:/etc/passwd" means MEDIA_PATH/etc/passwd, never the system file
    with pytest.raises(MediaNotFound):
        resolve_file_url("file:/etc/passwd", tree)
    with pytest.raises(MediaNotFound):
        resolve_file_url(f"file:{tmp_path}/secret.txt", tree)


async def test_resolver_dispatch(tree: Path) -> None:
    resolver = MediaResolver(tree)
    assert await resolver.resolve(" file:/uk.wav ") == str((tree / "uk.wav").resolve())
    with pytest.raises(MediaUrlError, match="not enabled"):
        await resolver.resolve("https://example.com/a.wav")
    for url in ("ftp://example.com/a.wav", "/abs/path.wav", "uk.wav", "data:audio/wav,x"):
        with pytest.raises(MediaUrlError):
            await resolver.resolve(url)


# --------------------------------------------------------------------------- start-up check


def test_default_ringtone_resolves_with_default_settings(tmp_path: Path) -> None:
    settings = load_settings({"MEDIA_CACHE_DIR": str(tmp_path)})
    assert settings.default_ringtone == "file:/uk.wav"
    path = Path(check_default_ringtone(settings))
    assert path == (media_dir() / "uk.wav").resolve()
    assert path.is_file()


def test_missing_default_ringtone_is_a_config_error(tmp_path: Path) -> None:
    settings = load_settings({"MEDIA_PATH": str(tmp_path), "MEDIA_CACHE_DIR": str(tmp_path)})
    with pytest.raises(ConfigError, match=r"DEFAULT_RINGTONE='file:/uk.wav' is invalid"):
        check_default_ringtone(settings)


def test_escaping_default_ringtone_is_a_config_error(tmp_path: Path) -> None:
    settings = load_settings({"DEFAULT_RINGTONE": "file:/../README.md",
                              "MEDIA_CACHE_DIR": str(tmp_path)})
    with pytest.raises(ConfigError, match=r"'\.\.'"):
        check_default_ringtone(settings)


def test_http_default_ringtone_is_checked_for_form_only(tmp_path: Path) -> None:
    settings = load_settings({"DEFAULT_RINGTONE": "https://tones.example.com/uk.wav",
                              "MEDIA_CACHE_DIR": str(tmp_path)})
    assert check_default_ringtone(settings) == "https://tones.example.com/uk.wav"


# --------------------------------------------------------------------------- remembered resolutions


async def test_resolver_remembers_but_sees_every_change(tree: Path, tmp_path: Path) -> None:
    resolver = MediaResolver(tree)
    first = await resolver.resolve("file:/uk.wav")
    assert await resolver.resolve("file:/uk.wav") == first  # remembered, same answer
    # replaced by a symlink leading out of MEDIA_PATH: refused again, not the old answer
    (tree / "uk.wav").unlink()
    os.symlink(tmp_path / "secret.txt", tree / "uk.wav")
    with pytest.raises(MediaPathError):
        await resolver.resolve("file:/uk.wav")
    # removed: not found, whatever was remembered before
    (tree / "uk.wav").unlink()
    with pytest.raises(MediaNotFound):
        await resolver.resolve("file:/uk.wav")
    # back as a regular file: resolves again
    (tree / "uk.wav").write_bytes(b"RIFF")
    assert await resolver.resolve("file:/uk.wav") == first


async def test_resolver_follows_a_repointed_symlink(tree: Path) -> None:
    resolver = MediaResolver(tree)
    assert await resolver.resolve("file:/inside-link.wav") == str((tree / "uk.wav").resolve())
    (tree / "inside-link.wav").unlink()
    os.symlink(tree / "sub" / "tone.wav", tree / "inside-link.wav")
    assert await resolver.resolve("file:/inside-link.wav") == str(
        (tree / "sub" / "tone.wav").resolve())


async def test_resolver_sees_media_path_repointed(tmp_path: Path, tree: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "uk.wav").write_bytes(b"RIFF")
    link = tmp_path / "media-link"
    os.symlink(tree, link)
    resolver = MediaResolver(link)
    assert await resolver.resolve("file:/uk.wav") == str((tree / "uk.wav").resolve())
    link.unlink()
    os.symlink(other, link)
    assert await resolver.resolve("file:/uk.wav") == str((other / "uk.wav").resolve())
