"""Minimal, lenient SDP (RFC 4566/8866, RFC 3264) helpers for call flows.

Enough to read media lines, codecs and direction attributes, detect
``telephone-event`` (RFC 4733) and rewrite the direction for hold/unhold.
Unknown or malformed lines are kept verbatim and never raise: SDP comes from
arbitrary phones and RTPEngine does the real media work. Bytes in, bytes out;
line order is preserved.
"""

from __future__ import annotations

from dataclasses import dataclass

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")

# RFC 3551 static payload types we may meet without an rtpmap.
STATIC_PAYLOADS: dict[int, tuple[str, int, int | None]] = {
    0: ("PCMU", 8000, 1), 3: ("GSM", 8000, 1), 4: ("G723", 8000, 1), 5: ("DVI4", 8000, 1),
    6: ("DVI4", 16000, 1), 7: ("LPC", 8000, 1), 8: ("PCMA", 8000, 1), 9: ("G722", 8000, 1),
    10: ("L16", 44100, 2), 11: ("L16", 44100, 1), 12: ("QCELP", 8000, 1), 13: ("CN", 8000, 1),
    14: ("MPA", 90000, None), 15: ("G728", 8000, 1), 18: ("G729", 8000, 1),
    26: ("JPEG", 90000, None), 31: ("H261", 90000, None), 34: ("H263", 90000, None),
}


@dataclass(frozen=True, slots=True)
class Codec:
    payload: int
    name: str  # encoding name as written (compare case-insensitively)
    clock_rate: int | None
    channels: int | None = None
    fmtp: str | None = None


class MediaSection:
    """One ``m=`` section: its m-line fields and every following line up to the next."""

    __slots__ = ("formats", "kind", "lines", "port", "port_count", "proto")

    def __init__(self, mline: str, lines: list[str]):
        parts = mline[2:].split()
        self.kind = parts[0] if parts else ""
        port = parts[1] if len(parts) > 1 else "0"
        p, _, count = port.partition("/")
        self.port = int(p) if p.isdigit() else 0
        self.port_count = int(count) if count.isdigit() else 1
        self.proto = parts[2] if len(parts) > 2 else ""
        self.formats = parts[3:]
        self.lines = lines  # lines after the m-line (c=, b=, a=…)

    def mline(self) -> str:
        port = f"{self.port}/{self.port_count}" if self.port_count != 1 else str(self.port)
        return " ".join(["m=" + self.kind, port, self.proto, *self.formats])

    def attributes(self, name: str) -> list[str]:
        """Values of ``a=name:value`` (``""`` for a flag ``a=name``)."""
        out = []
        for line in self.lines:
            if line.startswith("a="):
                key, _, value = line[2:].partition(":")
                if key == name:
                    out.append(value)
        return out

    @property
    def direction(self) -> str | None:
        """The media-level direction attribute, if any."""
        for line in self.lines:
            if line.startswith("a=") and line[2:] in DIRECTIONS:
                return line[2:]
        return None

    @property
    def connection(self) -> str | None:
        for line in self.lines:
            if line.startswith("c="):
                parts = line[2:].split()
                return parts[2] if len(parts) > 2 else None
        return None

    @property
    def codecs(self) -> list[Codec]:
        rtpmap: dict[str, str] = {}
        fmtp: dict[str, str] = {}
        for value in self.attributes("rtpmap"):
            key, _, encoding = value.partition(" ")
            rtpmap[key] = encoding.strip()
        for value in self.attributes("fmtp"):
            key, _, params = value.partition(" ")
            fmtp[key] = params.strip()
        out = []
        for fmt in self.formats:
            if not fmt.isdigit():
                continue
            pt = int(fmt)
            enc = rtpmap.get(fmt)
            if enc:
                bits = enc.split("/")
                rate = int(bits[1]) if len(bits) > 1 and bits[1].isdigit() else None
                chans = int(bits[2]) if len(bits) > 2 and bits[2].isdigit() else None
                out.append(Codec(pt, bits[0], rate, chans, fmtp.get(fmt)))
            elif pt in STATIC_PAYLOADS:
                name, rate, chans = STATIC_PAYLOADS[pt]
                out.append(Codec(pt, name, rate, chans, fmtp.get(fmt)))
        return out

    @property
    def telephone_event(self) -> int | None:
        """Payload type of RFC 4733 ``telephone-event``, if offered."""
        for c in self.codecs:
            if c.name.lower() == "telephone-event":
                return c.payload
        return None

    def set_direction(self, direction: str) -> None:
        self.lines = [ln for ln in self.lines if not (ln.startswith("a=") and ln[2:] in DIRECTIONS)]
        self.lines.append("a=" + direction)


class SessionDescription:
    __slots__ = ("media", "session")

    def __init__(self, session: list[str], media: list[MediaSection]):
        self.session = session  # lines before the first m= (v=, o=, s=, c=, t=, a=…)
        self.media = media

    @classmethod
    def parse(cls, data: bytes | str) -> SessionDescription:
        text = data.decode("utf-8", "surrogateescape") if isinstance(data, bytes) else data
        session: list[str] = []
        media: list[MediaSection] = []
        current: list[str] = session
        for raw in text.splitlines():
            line = raw.strip()
            if not line:
                continue
            if line.startswith("m="):
                section = MediaSection(line, [])
                media.append(section)
                current = section.lines
            else:
                current.append(line)
        return cls(session, media)

    def to_bytes(self) -> bytes:
        lines = list(self.session)
        for m in self.media:
            lines.append(m.mline())
            lines.extend(m.lines)
        return ("\r\n".join(lines) + "\r\n").encode("utf-8", "surrogateescape")

    @property
    def direction(self) -> str | None:
        """The session-level direction attribute, if any."""
        for line in self.session:
            if line.startswith("a=") and line[2:] in DIRECTIONS:
                return line[2:]
        return None

    @property
    def connection(self) -> str | None:
        for line in self.session:
            if line.startswith("c="):
                parts = line[2:].split()
                return parts[2] if len(parts) > 2 else None
        return None

    def media_direction(self, section: MediaSection) -> str:
        """Effective direction of a section (media level, else session, else sendrecv)."""
        return section.direction or self.direction or "sendrecv"

    def bump_version(self) -> None:
        """Increment the o= session version (RFC 3264 §8: a changed offer needs it)."""
        for i, line in enumerate(self.session):
            if line.startswith("o="):
                parts = line[2:].split(" ")
                if len(parts) >= 6 and parts[2].isdigit():
                    parts[2] = str(int(parts[2]) + 1)
                    self.session[i] = "o=" + " ".join(parts)
                return


# --------------------------------------------------------------------------- helpers on bytes


def parse_sdp(data: bytes | str) -> SessionDescription:
    return SessionDescription.parse(data)


def set_direction(data: bytes, direction: str, *, kinds: tuple[str, ...] = ("audio", "video"),
                  bump_version: bool = True) -> bytes:
    """Put ``a=<direction>`` on every ``kinds`` media section (and drop a
    session-level one, which would otherwise be ambiguous)."""
    if direction not in DIRECTIONS:
        raise ValueError(f"not an SDP direction: {direction!r}")
    sdp = SessionDescription.parse(data)
    session_dir = sdp.direction
    sdp.session = [ln for ln in sdp.session if not (ln.startswith("a=") and ln[2:] in DIRECTIONS)]
    for m in sdp.media:
        if m.kind in kinds:
            m.set_direction(direction)
        elif session_dir and m.direction is None:
            m.set_direction(session_dir)  # keep other sections' effective direction
    if bump_version:
        sdp.bump_version()
    return sdp.to_bytes()


def hold_direction(current: str) -> str:
    """RFC 3264 §8.4 / RFC 6337: putting a stream on hold."""
    return {"sendrecv": "sendonly", "recvonly": "inactive"}.get(current, current)


def unhold_direction(current: str) -> str:
    return {"sendonly": "sendrecv", "inactive": "recvonly"}.get(current, current)


def is_on_hold(data: bytes) -> bool:
    """True when every audio stream is sendonly/inactive or uses the RFC 2543
    ``c=0.0.0.0`` convention."""
    sdp = SessionDescription.parse(data)
    audio = [m for m in sdp.media if m.kind == "audio" and m.port != 0]
    if not audio:
        return False
    for m in audio:
        if (m.connection or sdp.connection) == "0.0.0.0":
            continue
        if sdp.media_direction(m) not in ("sendonly", "inactive"):
            return False
    return True


def has_telephone_event(data: bytes) -> bool:
    return any(m.telephone_event is not None for m in SessionDescription.parse(data).media)


def audio_codecs(data: bytes) -> list[Codec]:
    """Codecs of the first active audio section, in preference order."""
    for m in SessionDescription.parse(data).media:
        if m.kind == "audio" and m.port != 0:
            return m.codecs
    return []


def looks_like_sdp(body: bytes) -> bool:
    """drachtio's rule for a body without Content-Type: SDP starts with ``v=0``."""
    return body.lstrip()[:3] == b"v=0"
