"""drachtio application protocol, sans-I/O (spec: ../shared/spec/drachtio-protocol.md).

Everything here is pure: bytes in, frames out, frames in, bytes out. The asyncio
client (:mod:`engine.drachtio.client`) owns the socket; tests and a fake server use
the same functions, so both directions of every message kind are covered:

* framing ``<decimal byte length>#<payload>`` (§1.2) — :class:`FrameDecoder`,
  :func:`encode_frame`; lengths count bytes, payloads decode tolerantly;
* payload layout ``<header line>[\\r\\n<SIP message>]`` split on ``|`` (§1.3);
* server → app frames (``response``, ``sip``, ``cdr:*``) — :func:`parse_server_frame`;
* app → server frames (``authenticate``, ``route``, ``remove_route``, ``ping``, ``sip``,
  ``proxy``) — builders, and :func:`parse_app_frame` for fake servers in tests;
* message ids (:class:`MessageIds`) and request/response correlation (:class:`Correlator`).

Malformed input raises :class:`DrachtioProtocolError` (an ``engine.errors.ProtocolError``),
never anything else; a caller bug (a token containing ``|``, an oversized frame) raises
``ValueError`` subclasses before anything is written.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from engine.drachtio.sip_text import (
    CRLF,
    DrachtioProtocolError,
    InvalidToken,
    SipText,
    SipTextError,
    build_sip_message,
    check_start_line,
    is_decimal,
)
from engine.errors import EngineError

__all__ = [
    "AppFrame", "AppSipFrame", "AuthenticateFrame", "CDR_KINDS", "CdrFrame", "Correlator",
    "DrachtioFramingError", "DrachtioProtocolError", "FrameDecoder", "FrameTooLarge",
    "InvalidToken",
    "LARGE_PAYLOAD",
    "MAX_APP_PAYLOAD", "MAX_SERVER_PAYLOAD", "MSG_SENT", "MessageIds", "Meta", "Pending",
    "PingFrame", "ProxyFrame", "ResponseFrame", "RouteFrame", "SOURCES", "STATUSES", "ServerFrame",
    "ServerInfo", "SipFrame", "SipText", "SipTextError", "UNSOLICITED", "UnknownFrame",
    "build_authenticate", "build_ping", "build_proxy", "build_remove_route",
    "build_route", "build_sip", "build_sip_message", "encode_frame",
    "parse_app_frame", "parse_hostports", "parse_meta", "parse_server_frame", "server_info",
    "split_payload",
]

#: The server's ring buffer is 12 228 bytes: larger app frames stall the connection (§1.2).
MAX_APP_PAYLOAD = 12_000
#: Above this size the next frame must wait for this one's ``response`` (§1.2).
LARGE_PAYLOAD = 4_000
#: Server → app frames have no size limit; this only bounds a corrupt length prefix.
MAX_SERVER_PAYLOAD = 64 * 1024 * 1024
_MAX_PREFIX_DIGITS = len(str(MAX_SERVER_PAYLOAD))

SOURCES = frozenset({"network", "application"})
STATUSES = frozenset({"OK", "NO", "NOK"})
CDR_KINDS = frozenset({"cdr:attempt", "cdr:start", "cdr:stop"})
MSG_SENT = "Msg sent:"
UNSOLICITED = "unsolicited"


class DrachtioFramingError(DrachtioProtocolError):
    """The byte stream is corrupt. ``frames`` holds the payloads completed before the
    corruption in the same :meth:`FrameDecoder.feed` call (still valid, in order)."""

    def __init__(self, message: str, frames: list[bytes] | None = None):
        super().__init__(message)
        self.frames = frames or []


class FrameTooLarge(EngineError, ValueError):
    """An app → server frame over :data:`MAX_APP_PAYLOAD` bytes; the server would stall."""


# --------------------------------------------------------------------------- framing


def encode_frame(payload: str | bytes, limit: int | None = MAX_APP_PAYLOAD) -> bytes:
    """``<length>#<payload>``; ``limit=None`` for server → app frames (no size limit)."""
    data = payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else payload
    if limit is not None and len(data) > limit:
        raise FrameTooLarge(f"drachtio frame of {len(data)} bytes exceeds {limit} bytes")
    return b"%d#%s" % (len(data), data)


class FrameDecoder:
    """Cuts a byte stream into frame payloads; partial frames wait for more bytes.

    After a :class:`DrachtioFramingError` the stream position is lost: the decoder refuses
    further input and the connection must be reset.
    """

    __slots__ = ("_broken", "_buf", "max_payload")

    def __init__(self, max_payload: int = MAX_SERVER_PAYLOAD):
        self._buf = bytearray()
        self._broken = False
        self.max_payload = max_payload

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        """Append ``data``; return every payload now complete, in order."""
        if self._broken:
            raise DrachtioFramingError("frame decoder used after a framing error")
        buf = self._buf
        buf.extend(data)
        out: list[bytes] = []
        pos = 0
        try:
            while pos < len(buf):
                hash_at = buf.find(b"#", pos, pos + _MAX_PREFIX_DIGITS + 1)
                if hash_at < 0:
                    _check_partial_prefix(buf[pos:])
                    break
                length = _prefix_length(buf[pos:hash_at], self.max_payload)
                end = hash_at + 1 + length
                if end > len(buf):
                    break
                out.append(bytes(buf[hash_at + 1:end]))
                pos = end
        except DrachtioFramingError as exc:
            self._broken = True
            exc.frames = out
            self._buf.clear()
            raise
        del buf[:pos]
        return out


def _prefix_length(digits: bytes | bytearray, max_payload: int) -> int:
    if not digits or not digits.isdigit():
        raise DrachtioFramingError(f"bad frame length prefix {bytes(digits[:20])!r}")
    length = int(digits)
    if length == 0:
        raise DrachtioFramingError("frame length prefix is 0")
    if length > max_payload:
        raise DrachtioFramingError(f"frame length {length} exceeds {max_payload} bytes")
    return length


def _check_partial_prefix(pending: bytes | bytearray) -> None:
    """No ``#`` yet: what is buffered must still be able to become a length prefix."""
    if len(pending) > _MAX_PREFIX_DIGITS or not pending.isdigit():
        raise DrachtioFramingError(f"bad frame length prefix {bytes(pending[:20])!r}")


# --------------------------------------------------------------------------- payloads


def split_payload(payload: bytes) -> tuple[list[str], SipText | None]:
    """Header-line tokens and the SIP message after the first CRLF (if any)."""
    text = payload.decode("utf-8", "surrogateescape")
    head, sep, sip = text.partition(CRLF)
    tokens = head.split("|")
    if len(tokens) < 2 or not tokens[0] or not tokens[1]:
        raise DrachtioProtocolError(f"frame without message id and type: {head[:80]!r}")
    return tokens, (SipText(sip) if sep else None)


@dataclass(frozen=True, slots=True)
class Meta:
    """The six meta fields of a server frame (§4.1)."""

    source: str  # network | application
    size: int  # bytes of the SIP message as counted by the SIP stack
    protocol: str  # udp | tcp | tls | "" (empty for some ACKs and sent responses)
    address: str
    port: int | None
    time: str  # HH:MM:SS.uuuuuu UTC


def parse_meta(tokens: Sequence[str]) -> Meta:
    if len(tokens) != 6:
        raise DrachtioProtocolError(f"meta block needs 6 fields, got {len(tokens)}")
    source, size, protocol, address, port, time = tokens
    if source not in SOURCES:
        raise DrachtioProtocolError(f"bad meta source {source[:40]!r}")
    if not is_decimal(size):
        raise DrachtioProtocolError(f"bad meta size {size[:40]!r}")
    if port and not is_decimal(port):
        raise DrachtioProtocolError(f"bad meta port {port[:40]!r}")
    return Meta(source, int(size), protocol, address, int(port) if port else None, time)


@dataclass(frozen=True, slots=True)
class SipFrame:
    """Server → app ``sip``: a request, a response, an ACK, a CANCEL notice, or an
    ``unsolicited`` BYE the server generated itself (§4.2)."""

    msg_id: str
    meta: Meta
    transaction_id: str
    dialog_id: str
    received_on: tuple[str, int] | None  # only on new out-of-dialog requests
    message: SipText

    @property
    def unsolicited(self) -> bool:
        """A notification of a BYE the server already sent: never answered (§10.8)."""
        return self.transaction_id == UNSOLICITED


@dataclass(frozen=True, slots=True)
class ResponseFrame:
    """Server → app ``response``: the answer to one app frame (§2, §4.6)."""

    msg_id: str
    request_id: str  # token 0 of the app frame it answers
    status: str  # OK | NO (control-level) | NOK (SIP-level)
    fields: tuple[str, ...]  # tokens 4…
    message: SipText | None = None
    meta: Meta | None = None
    transaction_id: str = ""  # of the request/response that was sent
    dialog_id: str = ""
    is_continue: bool = False  # a ``proxy`` answer with more to come

    @property
    def ok(self) -> bool:
        return self.status == "OK"

    @property
    def reason(self) -> str:
        """The failure text of ``NO``/``NOK`` (match on prefix, §2)."""
        return "" if self.ok or not self.fields else self.fields[0]


@dataclass(frozen=True, slots=True)
class CdrFrame:
    """Server → app ``cdr:attempt|start|stop`` (§4.5)."""

    msg_id: str
    kind: str
    source: str
    time: str
    detail: str  # role for cdr:start, reason for cdr:stop, "" for cdr:attempt
    message: SipText | None


@dataclass(frozen=True, slots=True)
class UnknownFrame:
    """A frame type this client does not know; kept so the caller can log it."""

    msg_id: str
    kind: str
    fields: tuple[str, ...]
    message: SipText | None


ServerFrame = SipFrame | ResponseFrame | CdrFrame | UnknownFrame


def parse_server_frame(payload: bytes) -> ServerFrame:
    """Parse one server → app payload (as cut by :class:`FrameDecoder`)."""
    tokens, message = split_payload(payload)
    kind = tokens[1]
    if kind == "response":
        return _parse_response(tokens, message)
    if kind == "sip":
        return _parse_sip(tokens, message)
    if kind in CDR_KINDS:
        if len(tokens) < 4:
            raise DrachtioProtocolError(f"{kind} frame with {len(tokens)} fields")
        return CdrFrame(tokens[0], kind, tokens[2], tokens[3],
                        tokens[4] if len(tokens) > 4 else "", message)
    return UnknownFrame(tokens[0], kind, tuple(tokens[2:]), message)


def _parse_response(tokens: list[str], message: SipText | None) -> ResponseFrame:
    if len(tokens) < 4 or not tokens[2]:
        raise DrachtioProtocolError(f"response frame with {len(tokens)} fields")
    status = tokens[3]
    if status not in STATUSES:
        raise DrachtioProtocolError(f"bad response status {status[:40]!r}")
    fields = tuple(tokens[4:])
    meta = None
    transaction_id = dialog_id = ""
    is_continue = False
    if status == "OK" and len(fields) >= 6 and fields[0] in SOURCES:
        meta = parse_meta(fields[:6])
        rest = fields[6:]
        if rest[:3] == ("", "", "continue"):
            is_continue = True  # proxy: a final response from one target (§4.4)
        elif len(rest) >= 2 and rest[1] == MSG_SENT:  # a request went out (§4.3.2)
            transaction_id = rest[0]
        elif len(rest) >= 4 and rest[3] == MSG_SENT:  # a response went out (§4.3.1)
            transaction_id, dialog_id = rest[0], rest[1]
        else:
            raise DrachtioProtocolError(f"unrecognised response layout {'|'.join(rest)[:80]!r}")
    return ResponseFrame(tokens[0], tokens[2], status, fields, message, meta,
                         transaction_id, dialog_id, is_continue)


def _parse_sip(tokens: list[str], message: SipText | None) -> SipFrame:
    if len(tokens) < 10:
        raise DrachtioProtocolError(f"sip frame with {len(tokens)} fields, need 10")
    if message is None:
        raise DrachtioProtocolError("sip frame without a SIP message")
    check_start_line(message)
    meta = parse_meta(tokens[2:8])
    transaction_id, dialog_id = tokens[8], tokens[9]
    received_on = None
    if len(tokens) >= 12 and tokens[10]:
        if not is_decimal(tokens[11]):
            raise DrachtioProtocolError(f"bad received-on port {tokens[11][:40]!r}")
        received_on = (tokens[10], int(tokens[11]))
    return SipFrame(tokens[0], meta, transaction_id, dialog_id, received_on, message)


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """What ``authenticate … OK`` tells about the server (§3.2)."""

    hostports: tuple[tuple[str, str, int], ...]  # (protocol, host, port) as advertised
    version: str
    local_hostports: tuple[tuple[str, str, int], ...]


def parse_hostports(text: str) -> tuple[tuple[str, str, int], ...]:
    """``tcp/127.0.0.1:5080,udp/[::1]:5080`` → ``(("tcp", "127.0.0.1", 5080), …)``."""
    out = []
    for item in filter(None, text.split(",")):
        proto, slash, hostport = item.partition("/")
        host, colon, port = hostport.rpartition(":")
        if not slash or not colon or not host or not is_decimal(port):
            raise DrachtioProtocolError(f"bad host-port {item[:80]!r}")
        out.append((proto, host.strip("[]"), int(port)))
    return tuple(out)


def server_info(response: ResponseFrame) -> ServerInfo:
    """Interpret the ``OK`` answer to ``authenticate``."""
    if not response.ok:
        raise ValueError("server_info() needs an OK response")
    fields = response.fields
    return ServerInfo(parse_hostports(fields[0]) if fields else (),
                      fields[1] if len(fields) > 1 else "",
                      parse_hostports(fields[2]) if len(fields) > 2 else ())


# --------------------------------------------------------------------------- app → server


def _token(value: str, what: str) -> str:
    if "|" in value or "\r" in value or "\n" in value:
        raise InvalidToken(f"{what} must not contain '|', CR or LF")
    return value


def _payload(tokens: Sequence[str], message: str | None = None) -> str:
    head = "|".join(tokens)
    return head if message is None else head + CRLF + message


def build_authenticate(msg_id: str, secret: str, tags: Sequence[str] = ()) -> bytes:
    """``<id>|authenticate|<secret>|<tags>`` — the first frame on every connection (§3.2)."""
    for tag in tags:
        _token(tag, "tag")
        if "," in tag:
            raise InvalidToken("a tag must not contain ','")
    return encode_frame(_payload([_token(msg_id, "message id"), "authenticate",
                                  _token(secret, "secret"), ",".join(tags)]))


def build_route(msg_id: str, verb: str) -> bytes:
    """``<id>|route|<verb>``; the server matches the lower-cased method exactly (§3.3)."""
    return encode_frame(_payload([_token(msg_id, "message id"), "route",
                                  _token(verb.lower(), "verb")]))


def build_remove_route(msg_id: str, verb: str) -> bytes:
    """``remove_route`` — beware: the server drops *every* route of the connection (§3.4)."""
    return encode_frame(_payload([_token(msg_id, "message id"), "remove_route",
                                  _token(verb.lower(), "verb")]))


def build_ping(msg_id: str) -> bytes:
    return encode_frame(_payload([_token(msg_id, "message id"), "ping"]))


def build_sip(msg_id: str, message: str, transaction_id: str = "", dialog_id: str = "",
              route_uri: str | None = None) -> bytes:
    """``<id>|sip|<txn>|<dialog>[|<routeUri>]`` + CRLF + SIP text (§4.3).

    Both ids are always written (``<id>|sip||`` for a new request, §10.2). The server's
    table: response → ``txn`` of the received request; in-dialog request → ``dialog_id``;
    CANCEL → ``txn`` of the app's INVITE; new request → neither.
    """
    tokens = [_token(msg_id, "message id"), "sip", _token(transaction_id, "transaction id"),
              _token(dialog_id, "dialog id")]
    if route_uri:
        tokens.append(_token(route_uri, "route URI"))
    is_response = message.startswith("SIP/2.0 ")
    if transaction_id and not dialog_id and not is_response \
            and not message.startswith("CANCEL "):
        # undefined in the server (an assertion): never send it (§4.3)
        raise InvalidToken("a request with a transaction id must be a CANCEL")
    return encode_frame(_payload(tokens, message))


def build_proxy(msg_id: str, transaction_id: str, destinations: Sequence[str], message: str,
                *, remain_in_dialog: bool = False, full_response: bool = True,
                follow_redirects: bool = False, simultaneous: bool = False,
                provisional_timeout: str = "", final_timeout: str = "") -> bytes:
    """``proxy`` with all nine leading fields (§4.4); ``message`` only carries extra headers."""
    if not destinations:
        raise InvalidToken("proxy needs at least one destination")
    tokens = [_token(msg_id, "message id"), "proxy", _token(transaction_id, "transaction id"),
              "remainInDialog" if remain_in_dialog else "",
              "fullResponse" if full_response else "",
              "followRedirects" if follow_redirects else "",
              "simultaneous" if simultaneous else "serial",
              _token(provisional_timeout, "timeout"), _token(final_timeout, "timeout")]
    tokens += [_token(d if d.startswith(("sip:", "sips:", "tel:")) else f"sip:{d}",
                      "destination") for d in destinations]
    return encode_frame(_payload(tokens, message))


@dataclass(frozen=True, slots=True)
class AuthenticateFrame:
    msg_id: str
    secret: str
    tags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RouteFrame:
    msg_id: str
    verb: str
    remove: bool = False  # remove_route


@dataclass(frozen=True, slots=True)
class PingFrame:
    msg_id: str


@dataclass(frozen=True, slots=True)
class AppSipFrame:
    msg_id: str
    transaction_id: str
    dialog_id: str
    route_uri: str
    message: SipText


@dataclass(frozen=True, slots=True)
class ProxyFrame:
    msg_id: str
    transaction_id: str
    remain_in_dialog: bool
    full_response: bool
    follow_redirects: bool
    simultaneous: bool
    provisional_timeout: str
    final_timeout: str
    destinations: tuple[str, ...]
    message: SipText | None


AppFrame = AuthenticateFrame | RouteFrame | PingFrame | AppSipFrame | ProxyFrame | UnknownFrame


def parse_app_frame(payload: bytes) -> AppFrame:
    """Parse one app → server payload (what a server, or a fake one in tests, receives)."""
    tokens, message = split_payload(payload)
    msg_id, kind = tokens[0], tokens[1]
    if kind == "authenticate":
        if len(tokens) < 3:
            raise DrachtioProtocolError("authenticate without a secret")
        tags = tuple(filter(None, tokens[3].split(","))) if len(tokens) > 3 else ()
        return AuthenticateFrame(msg_id, tokens[2], tags)
    if kind in ("route", "remove_route"):
        if len(tokens) < 3 or not tokens[2]:
            raise DrachtioProtocolError(f"{kind} without a verb")
        return RouteFrame(msg_id, tokens[2], remove=kind == "remove_route")
    if kind == "ping":
        return PingFrame(msg_id)
    if kind == "sip":
        if len(tokens) < 4:  # "<id>|sip|" alone is malformed (§4.3)
            raise DrachtioProtocolError("sip frame needs transaction and dialog id fields")
        if message is None:
            raise DrachtioProtocolError("sip frame without a SIP message")
        check_start_line(message)
        return AppSipFrame(msg_id, tokens[2], tokens[3], tokens[4] if len(tokens) > 4 else "",
                           message)
    if kind == "proxy":
        if len(tokens) < 10 or not any(tokens[9:]):
            raise DrachtioProtocolError("proxy frame needs 9 fields and a destination")
        return ProxyFrame(msg_id, tokens[2], tokens[3] == "remainInDialog",
                          tokens[4] == "fullResponse", tokens[5] == "followRedirects",
                          tokens[6] == "simultaneous", tokens[7], tokens[8],
                          tuple(t for t in tokens[9:] if t), message)
    return UnknownFrame(msg_id, kind, tuple(tokens[2:]), message)


# --------------------------------------------------------------------------- ids, correlation


class MessageIds:
    """Fresh message ids: a random per-process prefix and a counter (cheap, unique, no ``|``)."""

    __slots__ = ("_counter", "prefix")

    def __init__(self, prefix: str | None = None):
        self.prefix = prefix if prefix is not None else secrets.token_hex(6)
        _token(self.prefix, "message id prefix")
        self._counter = itertools.count(1)

    def __call__(self) -> str:
        return f"{self.prefix}-{next(self._counter)}"


T = TypeVar("T")


@dataclass(slots=True)
class Pending(Generic[T]):
    """One app frame waiting for its ``response`` (``token`` is the caller's handle)."""

    msg_id: str
    kind: str
    token: T
    large: bool = False
    responses: list[ResponseFrame] = field(default_factory=list)
    done: bool = False


class Correlator(Generic[T]):
    """Maps app message ids to pending requests; ``response`` frames resolve them.

    A ``proxy`` may be answered several times: answers flagged ``continue`` are
    collected and keep the entry; the next one completes it (§2, §4.4). Entries for
    frames above :data:`LARGE_PAYLOAD` are tracked so the writer can hold back until
    the server has consumed them (§1.2).
    """

    def __init__(self) -> None:
        self._pending: dict[str, Pending[T]] = {}
        self._large: set[str] = set()

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, msg_id: object) -> bool:
        return msg_id in self._pending

    @property
    def large_outstanding(self) -> bool:
        return bool(self._large)

    def add(self, msg_id: str, kind: str, token: T, *, large: bool = False) -> Pending[T]:
        if msg_id in self._pending:
            raise ValueError(f"message id {msg_id!r} is already pending")
        entry = Pending(msg_id, kind, token, large)
        self._pending[msg_id] = entry
        if large:
            self._large.add(msg_id)
        return entry

    def resolve(self, response: ResponseFrame) -> Pending[T] | None:
        """The entry ``response`` answers (``done`` set when it is the last answer),
        or ``None`` for an unknown id (late answer to a timed-out request)."""
        entry = self._pending.get(response.request_id)
        if entry is None:
            return None
        entry.responses.append(response)
        if not response.is_continue:
            self._forget(entry)
        return entry

    def discard(self, msg_id: str) -> Pending[T] | None:
        """Forget an entry (its caller gave up); a later answer resolves nothing."""
        entry = self._pending.get(msg_id)
        if entry is not None:
            self._forget(entry)
        return entry

    def drain(self) -> list[Pending[T]]:
        """Forget and return every entry (the connection is gone: none will be answered)."""
        entries = list(self._pending.values())
        self._pending.clear()
        self._large.clear()
        return entries

    def _forget(self, entry: Pending[T]) -> None:
        entry.done = True
        del self._pending[entry.msg_id]
        self._large.discard(entry.msg_id)
