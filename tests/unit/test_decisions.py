"""Every decision id cited in the repository is explained in docs/decisions.md.

Code, machines, tests and docs cite the original system's known-defect numbers
(a ``D`` or ``S``, a hyphen and a number) as short tags. The explanation lives
in docs/decisions.md, one ``###`` heading per id; a tag without an entry there
points nowhere, and an id with two entries is ambiguous. This file cites no id
itself (the patterns below are built so that they do not match themselves).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DECISIONS = ROOT / "docs" / "decisions.md"

# Where ids may be cited: the folders and top-level files of the repository that
# hold code, machines, tests, schemas or documentation.
SCANNED = ("engine", "machines", "tests", "docs", "schemas", "bench", "tools", "scripts",
           "examples", "media", "README.md", "pyproject.toml")
SKIPPED_DIRS = frozenset({"__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache"})
BINARY_SUFFIXES = frozenset({".wav", ".pcap", ".png", ".jpg", ".gz", ".pyc", ".so"})

ID = re.compile(r"\b[DS]-[0-9]+\b")
HEADING = re.compile(r"^#{2,6}[ \t]+([DS]-[0-9]+)\b", re.MULTILINE)


def cited_ids(text: str) -> set[str]:
    return set(ID.findall(text))


def defined_ids(markdown: str) -> list[str]:
    """The ids of the entry headings, in document order (repeats kept)."""
    return HEADING.findall(markdown)


def scanned_files(root: Path) -> Iterator[Path]:
    for name in SCANNED:
        top = root / name
        if top.is_file():
            yield top
        elif top.is_dir():
            for path in sorted(top.rglob("*")):
                if (path.is_file() and path.suffix.lower() not in BINARY_SUFFIXES
                        and not SKIPPED_DIRS.intersection(path.relative_to(root).parts)):
                    yield path


def undefined_citations(files: Iterable[Path], defined: set[str], root: Path
                        ) -> dict[str, list[str]]:
    """id → files (relative to ``root``) that cite it without an entry."""
    missing: dict[str, list[str]] = {}
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for found in sorted(cited_ids(text) - defined):
            missing.setdefault(found, []).append(str(path.relative_to(root)))
    return missing


def duplicates(ids: Iterable[str]) -> list[str]:
    return sorted(i for i, n in Counter(ids).items() if n > 1)


# --------------------------------------------------------------------------- the repository


def test_every_cited_id_has_an_entry() -> None:
    defined = set(defined_ids(DECISIONS.read_text(encoding="utf-8")))
    missing = undefined_citations(scanned_files(ROOT), defined, ROOT)
    assert not missing, (
        "decision ids cited but not explained in docs/decisions.md (add a '### <id> — <title>' "
        f"entry in our own words): {missing}")


def test_no_id_is_defined_twice() -> None:
    assert duplicates(defined_ids(DECISIONS.read_text(encoding="utf-8"))) == []


def test_the_scan_sees_the_places_that_cite_ids() -> None:
    """Guards the scan itself: if it stopped reading a folder, the test above would pass
    vacuously. Machines, Python and the README all cite ids today."""
    citing = {p.relative_to(ROOT).parts[0] for p in scanned_files(ROOT)
              if cited_ids(p.read_text(encoding="utf-8", errors="replace"))}
    assert {"engine", "machines", "tests", "README.md", "docs"} <= citing


# --------------------------------------------------------------------------- the checks themselves

_D, _S = "D", "S"  # built up below so that this file cites no id


def test_a_citation_without_an_entry_is_reported(tmp_path: Path) -> None:
    (tmp_path / "engine").mkdir()
    (tmp_path / "engine" / "x.py").write_text(f"# fixed per {_D}-7 and {_S}-99\n")
    (tmp_path / "README.md").write_text(f"see {_D}-7\n")
    missing = undefined_citations(scanned_files(tmp_path), {f"{_D}-7"}, tmp_path)
    assert missing == {f"{_S}-99": ["engine/x.py"]}


def test_headings_define_ids_and_repeats_are_found() -> None:
    text = (f"# Decisions\n\n## Behaviour\n\n### {_D}-3 — DIRECT anywhere\n\nbody cites {_D}-4\n\n"
            f"### {_D}-3 — again\n\n#### {_S}-1 — no empty passwords\n")
    assert defined_ids(text) == [f"{_D}-3", f"{_D}-3", f"{_S}-1"]
    assert duplicates(defined_ids(text)) == [f"{_D}-3"]


def test_id_pattern_is_exact() -> None:
    assert cited_ids(f"({_D}-34) {_S}-10, x{_D}-1 UTF-8 SHA-256 MD5-sess {_D}-") == {
        f"{_D}-34", f"{_S}-10"}
