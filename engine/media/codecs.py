"""Codec policy for B-leg offers and the ``DIRECT`` media decision (pure).

Spec §7.3/§7.5 and defects D-3, D-6:

* A leg's codec list comes from a RegHook grant (stored as JSON in Redis), the
  trunk config or a ``sip`` destination. It may contain the pseudo-codec
  ``DIRECT`` — *anywhere* in the list (the original only looked at index ≥ 1
  and removed the wrong element of a shared list, D-3). We recognise it in any
  position and any letter case and always return **new tuples**; the caller's
  list (often shared configuration) is never touched.
* A leg without codecs uses ``DEFAULT_CODECS`` (D-6) — including a list that
  held nothing but ``DIRECT``.
* Direct media (RTPEngine left out) only when **both** legs allow it.
* The RTPEngine ``codec`` options of a B-leg offer: ``mask`` = the caller's
  (source) codecs, ``transcode`` = the destination's codecs; when the
  caller's SDP carries ``telephone-event`` (case-insensitive substring, as
  the original tests it) ``accept: ["telephone-event"]`` is added, otherwise
  ``telephone-event`` is appended to ``transcode`` so the callee is still
  offered RFC 4733 events (RTPEngine then translates DTMF).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

DIRECT = "DIRECT"
TELEPHONE_EVENT = "telephone-event"


@dataclass(frozen=True, slots=True)
class LegCodecs:
    """A leg's codecs with ``DIRECT`` taken out, and whether ``DIRECT`` was there."""

    codecs: tuple[str, ...]
    direct: bool = False


def parse_codec_list(value: Any) -> tuple[str, ...]:
    """Accept what a codec list arrives as: ``None``, a JSON text (Redis), a comma
    list, or a sequence of names. Returns a new tuple of stripped, non-empty names.

    Raises ``ValueError`` for anything else (a number, a dict, non-text items), so
    a malformed grant is reported instead of being spread character by
    character as the original did with ``DEFAULT_CODECS`` (D-6).
    """
    if value is None:
        return ()
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return ()
        if text[0] in "[{\"" or text == "null":
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"codec list is not valid JSON: {exc.msg}") from None
            if isinstance(value, str):
                value = [value]
        else:
            value = text.split(",")
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"codec list must be a list of names, not {type(value).__name__}")
    out: list[str] = []
    for item in value:
        if not isinstance(item, str):
            raise ValueError(f"codec names must be text, not {type(item).__name__}")
        name = item.strip()
        if name:
            out.append(name)
    return tuple(out)


def split_direct(codecs: Sequence[str]) -> LegCodecs:
    """Remove every ``DIRECT`` entry (any position, any case); report whether one was there."""
    kept = tuple(c for c in codecs if c.upper() != DIRECT)
    return LegCodecs(kept, direct=len(kept) != len(codecs))


def leg_codecs(value: Any, default: Sequence[str]) -> LegCodecs:
    """A leg's effective codecs: parsed, ``DIRECT`` split off, ``default`` when empty."""
    leg = split_direct(parse_codec_list(value))
    if leg.codecs:
        return leg
    fallback = split_direct(parse_codec_list(default)).codecs
    return LegCodecs(fallback, leg.direct)


def direct_media(caller: LegCodecs, callee: LegCodecs) -> bool:
    """True when RTPEngine is left out for this pair: both legs allow direct media."""
    return caller.direct and callee.direct


def has_telephone_event(sdp: bytes | str) -> bool:
    if isinstance(sdp, bytes):
        return b"telephone-event" in sdp.lower()
    return TELEPHONE_EVENT in sdp.lower()


def _unique(names: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for name in names:
        key = name.lower()
        if key not in seen:
            seen.add(key)
            out.append(name)
    return out


def codec_options(source: Any, dest: Any, *, offer_sdp: bytes | str,
                  default: Sequence[str]) -> dict[str, list[str]]:
    """The ``codec`` dictionary of a B-leg ``offer`` (spec §7.3).

    ``source``/``dest`` are the caller's and the destination's codec lists in any
    form :func:`parse_codec_list` accepts; ``DIRECT`` is ignored here (deciding
    direct media is :func:`direct_media`'s job) and empty lists fall back to
    ``default``.
    """
    mask = _unique(leg_codecs(source, default).codecs)
    transcode = _unique(leg_codecs(dest, default).codecs)
    options: dict[str, list[str]] = {"mask": mask, "transcode": transcode}
    if has_telephone_event(offer_sdp):
        options["accept"] = [TELEPHONE_EVENT]
    elif TELEPHONE_EVENT not in (c.lower() for c in transcode):
        transcode.append(TELEPHONE_EVENT)
    return options


__all__ = [
    "DIRECT",
    "TELEPHONE_EVENT",
    "LegCodecs",
    "codec_options",
    "direct_media",
    "has_telephone_event",
    "leg_codecs",
    "parse_codec_list",
    "split_direct",
]
