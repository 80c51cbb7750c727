"""The media shipped in media/: format, size, cadence (D-18)."""

from __future__ import annotations

import array
import wave
from pathlib import Path

import pytest

from engine.paths import media_dir

# name → (duration s, [(start, end) of tone bursts in s])
SHIPPED = {
    "uk.wav": (3.0, [(0.0, 0.4), (0.6, 1.0)]),
    "us.wav": (6.0, [(0.0, 2.0)]),
    "eu.wav": (5.0, [(0.0, 1.0)]),
    "announcement.wav": (1.5, [(0.0, 0.25), (0.35, 0.6), (0.7, 1.2)]),
}


def samples(path: Path) -> tuple[wave._wave_params, array.array]:
    with wave.open(str(path), "rb") as w:
        params = w.getparams()
        data = array.array("h", w.readframes(w.getnframes()))
    return params, data


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_format_and_size(name: str) -> None:
    path = media_dir() / name
    assert path.stat().st_size < 100 * 1024
    params, data = samples(path)
    assert (params.nchannels, params.sampwidth, params.framerate) == (1, 2, 8000)
    assert params.nframes / 8000 == pytest.approx(SHIPPED[name][0], abs=0.01)
    assert max(abs(s) for s in data) > 8000  # audible, not silence


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_cadence(name: str) -> None:
    """Energy inside each burst, silence between bursts (10 ms windows, edges skipped)."""
    _, data = samples(media_dir() / name)
    duration, bursts = SHIPPED[name]
    window = 80
    for n in range(int(duration * 100)):
        t = n / 100
        chunk = data[n * window:(n + 1) * window]
        peak = max(abs(s) for s in chunk)
        inside = any(start + 0.02 <= t <= end - 0.03 for start, end in bursts)
        outside = all(t < start - 0.03 or t > end + 0.02 for start, end in bursts)
        if inside:
            assert peak > 3000, f"{name}: no tone at {t:.2f} s"
        elif outside:
            assert peak < 200, f"{name}: sound at {t:.2f} s"


def test_readme_documents_the_commands() -> None:
    text = (media_dir() / "README.md").read_text()
    for name in SHIPPED:
        assert f"{name} synth" in text or f" {name} gain" in text
