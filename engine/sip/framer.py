"""Message framing on stream transports (TCP/TLS), RFC 3261 §18.3 + RFC 5626 §3.5.1.

Pure: ``feed(bytes) -> list[event]``. Handles partial reads, pipelined
messages, CRLF keep-alives and size caps. A message that frames correctly but
does not parse is a *non-fatal* error (answer 400, keep the connection); a
stream that cannot be framed any more (no/invalid Content-Length with garbage
after it, oversize header section) is *fatal*: the driver should send the 400
if it can and close the connection, as every later byte is ambiguous.

Memory per connection is bounded by ``max_message`` (65,535 octets): a header
section without its blank line beyond it, or a Content-Length that makes the
message larger, is fatal (513) before the body is buffered. Bounds across
connections and in time are the TCP transport's (engine/transport/tcp.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.sip.errors import SipParseError
from engine.sip.message import SipRequest, SipResponse
from engine.sip.parser import MAX_MESSAGE_SIZE, parse_message, salvage_context

_CL_RE = re.compile(rb"\n(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*?)[ \t]*\r?(?=\n)",
                    re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class FramedMessage:
    message: SipRequest | SipResponse


@dataclass(frozen=True, slots=True)
class KeepAlive:
    """``ping=True``: a CRLFCRLF ping, answer with a single CRLF (pong).
    ``ping=False``: a lone CRLF (a pong to our ping)."""

    ping: bool


@dataclass(frozen=True, slots=True)
class FramingError:
    error: SipParseError
    fatal: bool


FramerEvent = FramedMessage | KeepAlive | FramingError


class _Skip:
    """Marks bytes consumed without an event (a keep-alive fragment)."""


_SKIP = _Skip()


class StreamFramer:
    """One per connection."""

    __slots__ = ("_buf", "_closed", "_half_ping", "_max", "_scan")

    def __init__(self, max_message: int = MAX_MESSAGE_SIZE):
        self._buf = bytearray()
        self._max = max_message
        self._scan = 0  # where to resume looking for the end of the header section
        self._closed = False
        self._half_ping = False  # last segment ended with a lone CRLF

    @property
    def closed(self) -> bool:
        """True after a fatal error: feed() ignores further data."""
        return self._closed

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[FramerEvent]:
        if self._closed:
            return []
        self._buf += data
        events: list[FramerEvent] = []
        while self._buf:
            ev = self._next()
            if ev is None:
                break
            if isinstance(ev, _Skip):
                continue
            events.append(ev)
            if isinstance(ev, FramingError) and ev.fatal:
                self._closed = True
                self._buf.clear()
                break
        if not self._buf:
            # A bytearray keeps its largest size: drop it so an idle connection does not
            # hold the memory of its biggest message (up to max_message) for its lifetime.
            self._buf = bytearray()
        return events

    def discard(self) -> None:
        """Drop buffered input and ignore any more (the connection is being closed)."""
        self._closed = True
        self._buf = bytearray()
        self._scan = 0

    def _next(self) -> FramerEvent | _Skip | None:
        buf = self._buf
        if buf[0] in (13, 10):
            return self._keepalive()
        self._half_ping = False
        end = buf.find(b"\r\n\r\n", self._scan)
        if end < 0:
            if len(buf) > self._max:
                return FramingError(SipParseError("Header section too large", status=513), True)
            self._scan = max(0, len(buf) - 3)
            return None
        self._scan = 0
        m = _CL_RE.search(buf, 0, end + 2)
        length = 0
        if m is not None:
            raw = m.group(1)
            if not raw.isdigit() or len(raw) > 10:
                return self._fatal(end, "Malformed Content-Length header")
            length = int(raw)
            m2 = _CL_RE.search(buf, m.end(), end + 2)
            if m2 is not None and m2.group(1) != raw:
                return self._fatal(end, "Multiple Content-Length headers")
        total = end + 4 + length
        if total > self._max:
            return self._fatal(end, "Message Too Large", 513)
        if len(buf) < total:
            return None
        raw_msg = bytes(buf[:total])
        del buf[:total]
        try:
            return FramedMessage(parse_message(raw_msg, max_size=self._max))
        except SipParseError as err:
            return FramingError(err, False)

    def _keepalive(self) -> FramerEvent | _Skip | None:
        buf = self._buf
        if buf[:4] == b"\r\n\r\n":
            del buf[:4]
            self._half_ping = False
            return KeepAlive(True)
        if buf[:2] == b"\r\n":
            if len(buf) == 2 or buf[2] != 13:
                del buf[:2]
                if self._half_ping:  # the second half of a ping split across reads
                    self._half_ping = False
                    return KeepAlive(True)
                self._half_ping = len(buf) == 0
                return KeepAlive(False)
            if len(buf) < 4:
                return None  # "\r\n\r": wait for the last octet
        elif len(buf) == 1 and buf[0] == 13:
            return None  # a lone CR: its LF may follow
        # A stray CR or LF before a start line is ignored (§7.5).
        del buf[:1]
        return _SKIP

    def _fatal(self, end: int, reason: str, status: int = 400) -> FramingError:
        """Build the error with the header section's context (so a 400 can go out)."""
        err = SipParseError(reason, status=status)
        salvage_context(err, bytes(self._buf[:end + 4]))
        return FramingError(err, True)
