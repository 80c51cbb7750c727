"""The SIP text inside drachtio frames: a lazy read-only view and a builder (pure).

drachtio passes SIP messages as text after a frame's header line (spec §4.3, §6): the
start line, CRLF-separated ``Name: value`` headers, an empty line, the body. The text
is kept as given (header order, names, compact forms) and parsed only when read.
"""

from __future__ import annotations

from collections.abc import Iterable

from engine.errors import EngineError, ProtocolError

CRLF = "\r\n"


class DrachtioProtocolError(ProtocolError):
    """The peer sent bytes that are not a valid drachtio frame; the stream is unusable."""


class SipTextError(DrachtioProtocolError):
    """A frame's SIP text has no valid start line."""


class InvalidToken(EngineError, ValueError):
    """A value for a ``|``-separated field or a header contains ``|``, CR or LF
    (drachtio has no escaping), so it cannot be sent."""



_COMPACT = {
    "i": "call-id", "m": "contact", "e": "content-encoding", "l": "content-length",
    "c": "content-type", "f": "from", "s": "subject", "k": "supported", "t": "to",
    "v": "via", "o": "event", "r": "refer-to", "b": "referred-by", "u": "allow-events",
    "x": "session-expires", "a": "accept-contact", "j": "reject-contact",
    "d": "request-disposition", "y": "identity",
}


def is_decimal(text: str) -> bool:
    """ASCII digits only (``str.isdigit`` also accepts "²" and "٣", which ``int`` refuses)."""
    return text.isascii() and text.isdigit()


def _canonical(name: str) -> str:
    low = name.strip().lower()
    return _COMPACT.get(low, low)


class SipText:
    """The SIP text carried after a frame's header line, kept raw and parsed lazily.

    drachtio hands over the message exactly as sent or received (§6.1); the header
    block ends at the first empty line and everything after it is the body.
    """

    __slots__ = ("_headers", "text")

    def __init__(self, text: str):
        self.text = text
        self._headers: tuple[tuple[str, str], ...] | None = None

    def __repr__(self) -> str:
        return f"SipText({self.start_line!r})"

    @property
    def start_line(self) -> str:
        return self.text.partition(CRLF)[0]

    @property
    def is_request(self) -> bool:
        return not self.start_line.startswith("SIP/2.0 ")

    @property
    def method(self) -> str | None:
        """Request method, or ``None`` for a response (see :meth:`cseq_method`)."""
        return self.start_line.split(" ", 1)[0] if self.is_request else None

    @property
    def request_uri(self) -> str | None:
        parts = self.start_line.split(" ")
        return parts[1] if self.is_request and len(parts) > 1 else None

    @property
    def status(self) -> int | None:
        parts = self.start_line.split(" ", 2)
        if self.is_request or len(parts) < 2 or not is_decimal(parts[1]):
            return None
        return int(parts[1])

    @property
    def reason(self) -> str:
        parts = self.start_line.split(" ", 2)
        return parts[2] if not self.is_request and len(parts) == 3 else ""

    @property
    def headers(self) -> tuple[tuple[str, str], ...]:
        """``(name, value)`` pairs in wire order; lines without ``:`` are skipped."""
        if self._headers is None:
            block = self.text.partition(CRLF)[2].partition(CRLF + CRLF)[0]
            pairs = []
            for line in block.split(CRLF):
                name, colon, value = line.partition(":")
                if colon and name.strip():
                    pairs.append((name.strip(), value.strip()))
            self._headers = tuple(pairs)
        return self._headers

    def header(self, name: str) -> str | None:
        """First value of ``name`` (case-insensitive, compact forms understood)."""
        values = self.header_values(name)
        return values[0] if values else None

    def header_values(self, name: str) -> list[str]:
        want = _canonical(name)
        return [value for key, value in self.headers if _canonical(key) == want]

    @property
    def cseq_method(self) -> str | None:
        cseq = self.header("CSeq")
        parts = cseq.split() if cseq else []
        return parts[1].upper() if len(parts) == 2 else None

    @property
    def body(self) -> str:
        rest = self.text.partition(CRLF)[2]
        if rest.startswith(CRLF):  # no headers at all: the body follows the start line
            return rest[2:]
        return rest.partition(CRLF + CRLF)[2]

    @property
    def body_bytes(self) -> bytes:
        return self.body.encode("utf-8", "surrogateescape")


def check_start_line(message: SipText) -> None:
    line = message.start_line
    parts = line.split(" ", 2)
    if line.startswith("SIP/2.0 "):
        if len(parts) < 2 or len(parts[1]) != 3 or not is_decimal(parts[1]):
            raise SipTextError(f"bad SIP status line {line[:80]!r}")
    elif len(parts) < 2 or not parts[0].isalpha() or not parts[1]:
        # lenient on the rest (the SIP stack already parsed it): method and something
        raise SipTextError(f"bad SIP start line {line[:80]!r}")


def build_sip_message(start_line: str, headers: Iterable[tuple[str, str]] = (),
                      body: str | bytes = "") -> str:
    """SIP text for a ``sip`` frame: start line, headers, ``Content-Length``, body.

    The server splits at the first empty line and drops folded or ``:``-less header
    lines (§4.3), so CR/LF inside a name or value is refused here.
    """
    text_body = body.decode("utf-8", "surrogateescape") if isinstance(body, bytes) else body
    lines = [start_line]
    for name, value in headers:
        if name.lower() == "content-length":
            continue
        if any(c in name or c in value for c in "\r\n") or ":" in name or not name:
            raise InvalidToken(f"header {name!r} cannot be sent (CR/LF or ':' in it)")
        lines.append(f"{name}: {value}")
    if any(c in start_line for c in "\r\n"):
        raise InvalidToken("SIP start line contains CR/LF")
    lines.append(f"Content-Length: {len(text_body.encode('utf-8', 'surrogateescape'))}")
    return CRLF.join(lines) + CRLF + CRLF + text_body
