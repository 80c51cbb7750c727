"""RTPEngine "ng" control protocol: the pure core (no sockets, no asyncio).

Wire format (environment.md §4.1): one UDP datagram per message,
``<cookie> <bencoded dict>``; the reply repeats the cookie. This module owns

* **bencode** encode/decode. We write it ourselves rather than depend on a
  PyPI package because (a) it is ~120 lines, (b) it sits on the hot path of
  every call set-up (offer/answer/delete each encode one request and decode a
  reply of up to tens of KB) and the available packages are either slower
  (pure-Python class-based decoders), unmaintained, or decode keys to bytes,
  (c) we need two ng-specific behaviours: every byte string is returned as
  ``str`` decoded UTF-8 with ``surrogateescape`` (so SDP bytes round-trip
  exactly while the rest of the code works with text) and nesting depth is
  bounded (replies come from the network; a crafted datagram must not blow the
  Python stack).
* **cookies** unique across processes and hosts: RTPEngine caches replies by
  cookie *globally* for about a minute, so a cookie reused by another process
  (or by a forked child that inherited our counter) would be answered with
  somebody else's cached reply. Each process draws a random 64-bit prefix and
  appends a counter; a fork is detected by pid and gets a fresh prefix.
* **correlation** of replies to requests by cookie, with a **resend policy**
  (per-attempt timeouts, bounded attempts). A resend reuses the same cookie,
  which the daemon's cache makes idempotent: the command runs once.
* **error mapping** of ``result: error`` / ``load limit`` replies to the typed
  errors of :mod:`engine.rtpengine.errors`; ``warning`` keys ride on ok replies
  and are reported, not raised.

Time comes from an injected ``Clock`` (``engine.clock.FakeClock`` in tests).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from engine.ports import Clock, TimerHandle
from engine.rtpengine.errors import (
    MediaTimeout,
    MediaUnavailable,
    NgError,
    NgLoadLimit,
    NgPlaybackError,
    NgProtocolError,
    NgSdpError,
    NgUnknownCall,
)

# Largest UDP payload over IPv4; an offer bigger than this cannot be sent at all.
MAX_DATAGRAM = 65507
MAX_DEPTH = 32

# --------------------------------------------------------------------------- bencode


class BencodeError(NgProtocolError):
    """Data is not valid bencode (or a value cannot be encoded)."""


def bencode(value: Any) -> bytes:
    """Encode ``value``: dict (str/bytes keys, emitted sorted), list/tuple, int, str, bytes.

    ``bool``/``None``/``float`` are refused: ng has no such types and silently
    encoding ``True`` as ``i1e`` would hide a bug in a request builder.
    """
    out: list[bytes] = []
    _encode(value, out, 0)
    return b"".join(out)


def _encode(value: Any, out: list[bytes], depth: int) -> None:
    # Every call set-up encodes several of these (offer, answer, play media, delete…).
    # The common shape (a dict with ASCII str keys whose values are str, bytes, int or
    # lists of str) is encoded inline, one append per entry: a recursive call, an ABC
    # isinstance or a sort key function per item cost more than the encoding itself.
    kind = type(value)
    if kind is str:
        raw = value.encode("utf-8", "surrogateescape")
        out.append(b"%d:%b" % (len(raw), raw))
    elif kind is bytes:
        out.append(b"%d:%b" % (len(value), value))
    elif kind is int:
        out.append(b"i%de" % value)
    elif depth >= MAX_DEPTH:
        raise BencodeError("structure nested too deeply")
    elif kind is dict and _ascii_keys(value):
        # ASCII str keys sort by code point exactly as their encodings sort by bytes.
        out.append(b"d")
        for name in sorted(value):
            item = value[name]
            key = name.encode("ascii")
            kind = type(item)
            if kind is str:
                raw = item.encode("utf-8", "surrogateescape")
                out.append(b"%d:%b%d:%b" % (len(key), key, len(raw), raw))
            elif kind is bytes:
                out.append(b"%d:%b%d:%b" % (len(key), key, len(item), item))
            elif kind is int:
                out.append(b"%d:%bi%de" % (len(key), key, item))
            else:
                out.append(b"%d:%b" % (len(key), key))
                _encode(item, out, depth + 1)
        out.append(b"e")
    elif kind is list or kind is tuple:
        out.append(b"l")
        for item in value:
            if type(item) is str:
                raw = item.encode("utf-8", "surrogateescape")
                out.append(b"%d:%b" % (len(raw), raw))
            else:
                _encode(item, out, depth + 1)
        out.append(b"e")
    elif kind is bytearray or kind is memoryview:
        raw = bytes(value)
        out.append(b"%d:%b" % (len(raw), raw))
    elif isinstance(value, Mapping):
        _encode_mapping(value, out, depth)
    else:
        raise BencodeError(f"cannot bencode {kind.__name__}")


def _ascii_keys(value: dict[Any, Any]) -> bool:
    """Every key is an ASCII str (one C-level join instead of a check per key)."""
    try:
        return "".join(value).isascii()
    except TypeError:  # a bytes (or other) key: the general path sorts encoded keys
        return False


def _encode_mapping(value: Mapping[Any, Any], out: list[bytes], depth: int) -> None:
    """Any mapping, keys str or bytes (a str and a bytes key may encode alike: refused)."""
    items: list[tuple[bytes, Any]] = []
    for name, item in value.items():
        if type(name) is str:
            key = name.encode("utf-8", "surrogateescape")
        elif type(name) is bytes:
            key = name
        else:
            raise BencodeError(f"dict key must be str or bytes, not {type(name).__name__}")
        items.append((key, item))
    items.sort(key=_first)
    out.append(b"d")
    previous = None
    for key, item in items:
        if key == previous:
            raise BencodeError(f"duplicate dict key {key!r}")
        previous = key
        out.append(b"%d:%b" % (len(key), key))
        _encode(item, out, depth + 1)
    out.append(b"e")


def _first(pair: tuple[bytes, Any]) -> bytes:
    return pair[0]


_INT = re.compile(rb"-?(?:0|[1-9][0-9]*)")


def bdecode(data: bytes) -> Any:
    """Decode one bencoded value occupying all of ``data``.

    Byte strings become ``str`` (UTF-8, ``surrogateescape``: ``s.encode("utf-8",
    "surrogateescape")`` gives the exact bytes back); dict keys likewise.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise BencodeError("bdecode needs bytes")
    data = bytes(data)
    try:
        value, end = _decode(data, 0, 0)
    except IndexError:
        raise BencodeError("truncated bencode") from None
    if end != len(data):
        raise BencodeError(f"trailing data at offset {end}")
    return value


def _decode(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    lead = data[pos]
    if 0x30 <= lead <= 0x39:  # string: <len>:<bytes>
        colon = data.find(b":", pos, pos + 12)
        if colon < 0 or not data[pos:colon].isdigit():
            raise BencodeError(f"bad string length at offset {pos}")
        length = int(data[pos:colon])
        if lead == 0x30 and colon - pos > 1:
            raise BencodeError(f"leading zero in string length at offset {pos}")
        start = colon + 1
        end = start + length
        if end > len(data):
            raise BencodeError(f"string overruns data at offset {pos}")
        return data[start:end].decode("utf-8", "surrogateescape"), end
    if lead == 0x69:  # i<int>e
        end = data.find(b"e", pos + 1, pos + 41)  # "-" and at most 38 digits
        if end < 0 or not _INT.fullmatch(data, pos + 1, end) or data[pos + 1 : end] == b"-0":
            raise BencodeError(f"bad integer at offset {pos}")
        return int(data[pos + 1 : end]), end + 1
    if depth >= MAX_DEPTH:
        raise BencodeError("structure nested too deeply")
    if lead == 0x6C:  # l ... e
        items: list[Any] = []
        pos += 1
        while data[pos] != 0x65:
            item, pos = _decode(data, pos, depth + 1)
            items.append(item)
        return items, pos + 1
    if lead == 0x64:  # d ... e
        result: dict[str, Any] = {}
        pos += 1
        while data[pos] != 0x65:
            if not 0x30 <= data[pos] <= 0x39:
                raise BencodeError(f"dict key is not a string at offset {pos}")
            key, pos = _decode(data, pos, depth + 1)
            result[key], pos = _decode(data, pos, depth + 1)
        return result, pos + 1
    raise BencodeError(f"unexpected byte {bytes([lead])!r} at offset {pos}")


# --------------------------------------------------------------------------- messages


def encode_message(cookie: str, body: Mapping[str, Any]) -> bytes:
    """``<cookie> <bencode(body)>``, refusing datagrams that UDP cannot carry."""
    if not cookie or " " in cookie or not cookie.isascii():
        raise ValueError(f"bad ng cookie {cookie!r}")
    datagram = cookie.encode("ascii") + b" " + bencode(body)
    if len(datagram) > MAX_DATAGRAM:
        raise NgProtocolError(f"ng request of {len(datagram)} bytes exceeds one UDP datagram")
    return datagram


def split_cookie(datagram: bytes) -> tuple[str, bytes]:
    """Separate the cookie from the body without decoding the body."""
    space = datagram.find(b" ", 0, 256)
    if space <= 0:
        raise NgProtocolError("ng message without cookie")
    try:
        cookie = datagram[:space].decode("ascii")
    except UnicodeDecodeError:
        raise NgProtocolError("ng cookie is not ASCII") from None
    return cookie, datagram[space + 1 :]


def decode_body(body: bytes) -> dict[str, Any]:
    """Decode an ng body: bencode, or JSON (the daemon answers JSON requests in JSON)."""
    if body[:1] == b"{":
        try:
            value = json.loads(body)
        except ValueError as exc:
            raise NgProtocolError(f"bad JSON ng body: {exc}") from None
    else:
        value = bdecode(body)
    if not isinstance(value, dict):
        raise NgProtocolError("ng body is not a dictionary")
    return value


def decode_message(datagram: bytes) -> tuple[str, dict[str, Any]]:
    cookie, body = split_cookie(datagram)
    return cookie, decode_body(body)


# --------------------------------------------------------------------------- cookies


class CookieFactory:
    """Cookies ``<16 hex random>_<counter>``: unique per request across processes and hosts.

    Two processes (or hosts) collide only if they draw the same 64-bit prefix.
    A forked child inherits the parent's prefix and counter, so the pid is
    checked on every call and a new prefix drawn after a fork.
    """

    __slots__ = ("_counter", "_fixed", "_pid", "_prefix")

    def __init__(self, prefix: str | None = None):
        if prefix is not None and (not prefix or " " in prefix or not prefix.isascii()):
            raise ValueError(f"bad cookie prefix {prefix!r}")
        self._fixed = prefix
        self._pid = -1
        self._prefix = ""
        self._counter = itertools.count(1)

    def _reseed(self) -> None:
        self._pid = os.getpid()
        self._prefix = self._fixed or secrets.token_hex(8)
        self._counter = itertools.count(1)

    @property
    def prefix(self) -> str:
        if self._pid != os.getpid():
            self._reseed()
        return self._prefix

    def __call__(self) -> str:
        if self._pid != os.getpid():
            self._reseed()
        return f"{self._prefix}_{next(self._counter)}"


#: The process-wide factory: every client in the process shares one counter.
cookies = CookieFactory()

# --------------------------------------------------------------------------- errors

_UNKNOWN_CALL = ("unknown call-id", "call-id not found", "unknown to-tag", "unknown from-tag",
                 "tags didn't match")
_SDP = ("sdp",)
_PLAYBACK = ("media playback", "failed to start", "player")


def error_for(command: str, reply: Mapping[str, Any]) -> NgError | None:
    """The typed error an ng reply stands for, or ``None`` when it is a success."""
    result = reply.get("result")
    if result in ("ok", "pong"):
        return None
    if result == "load limit":
        return NgLoadLimit(command, str(reply.get("message") or "load limit"), reply)
    if result != "error":
        return NgError(command, f"unexpected result {result!r}", reply)
    reason = str(reply.get("error-reason") or "unspecified error")
    low = reason.lower()
    if any(mark in low for mark in _UNKNOWN_CALL):
        return NgUnknownCall(command, reason, reply)
    if any(mark in low for mark in _PLAYBACK):
        return NgPlaybackError(command, reason, reply)
    if any(mark in low for mark in _SDP):
        return NgSdpError(command, reason, reply)
    return NgError(command, reason, reply)


def check_reply(command: str, reply: Mapping[str, Any]) -> Mapping[str, Any]:
    """Return ``reply`` if it is a success, else raise its typed error."""
    error = error_for(command, reply)
    if error is not None:
        raise error
    return reply


# --------------------------------------------------------------------------- resend policy


@dataclass(frozen=True, slots=True)
class ResendPolicy:
    """How long to wait for each attempt; ``len(attempt_timeouts)`` bounds the attempts.

    The default waits 0.5 s, then 1 s, then 2 s (3.5 s budget): a lost datagram
    costs half a second, a dead instance at most 3.5 s (and the health checker
    usually marks it down before a command has to find out).
    """

    attempt_timeouts: tuple[float, ...] = (0.5, 1.0, 2.0)

    def __post_init__(self) -> None:
        if not self.attempt_timeouts:
            raise ValueError("a resend policy needs at least one attempt")
        if any(not (t > 0) for t in self.attempt_timeouts):
            raise ValueError("attempt timeouts must be > 0")

    @classmethod
    def exponential(cls, first: float, attempts: int, factor: float = 2.0,
                    cap: float | None = None) -> ResendPolicy:
        timeouts = []
        value = first
        for _ in range(attempts):
            timeouts.append(min(value, cap) if cap else value)
            value *= factor
        return cls(tuple(timeouts))

    @property
    def attempts(self) -> int:
        return len(self.attempt_timeouts)

    @property
    def budget(self) -> float:
        """Longest time a command can take before it fails with ``MediaTimeout``."""
        return sum(self.attempt_timeouts)

    def timeout_for(self, attempt: int) -> float:
        """Seconds to wait after sending attempt number ``attempt`` (1-based)."""
        return self.attempt_timeouts[attempt - 1]


# --------------------------------------------------------------------------- correlation

Done = Callable[["NgTransaction", "Mapping[str, Any] | None", "Exception | None"], None]


class NgTransaction:
    """One request in flight: its cookie, the datagram to resend, attempt count, timer."""

    __slots__ = ("attempt", "command", "cookie", "datagram", "on_done", "policy", "send",
                 "started", "timer")

    def __init__(self, cookie: str, command: str, datagram: bytes, *, policy: ResendPolicy,
                 send: Callable[[bytes], None], on_done: Done, started: float):
        self.cookie = cookie
        self.command = command
        self.datagram = datagram
        self.policy = policy
        self.send = send
        self.on_done = on_done
        self.started = started
        self.attempt = 0
        self.timer: TimerHandle | None = None


class NgCorrelator:
    """Matches replies to requests by cookie and drives resends on a ``Clock``.

    ``start`` sends the first attempt; when an attempt's timeout passes without
    a reply the same datagram (same cookie) is sent again, up to the policy's
    attempts, then ``on_done`` receives ``MediaTimeout``. ``feed`` hands in a
    received datagram: the transaction it answers completes with the decoded
    reply or with the typed error. Each transaction completes exactly once.
    """

    def __init__(self, clock: Clock, *, cookie_factory: Callable[[], str] = cookies,
                 name: str = "rtpengine"):
        self._clock = clock
        self._cookies = cookie_factory
        self._pending: dict[str, NgTransaction] = {}
        self.name = name
        self.late_replies = 0

    def __len__(self) -> int:
        return len(self._pending)

    def start(self, body: Mapping[str, Any], *, send: Callable[[bytes], None],
              on_done: Done, policy: ResendPolicy, cookie: str | None = None) -> NgTransaction:
        """Encode ``body`` under a fresh cookie, send it and arm the resend timer."""
        command = str(body.get("command", "?"))
        cookie = cookie or self._cookies()
        if cookie in self._pending:
            raise ValueError(f"cookie {cookie!r} already in flight")
        datagram = encode_message(cookie, body)
        tx = NgTransaction(cookie, command, datagram, policy=policy, send=send, on_done=on_done,
                         started=self._clock.monotonic())
        self._pending[cookie] = tx
        self._attempt(tx)
        return tx

    def _attempt(self, tx: NgTransaction) -> None:
        tx.attempt += 1
        tx.timer = self._clock.call_later(tx.policy.timeout_for(tx.attempt),
                                          lambda: self._expired(tx))
        try:
            tx.send(tx.datagram)
        except OSError as exc:
            self._finish(tx, None, _send_failed(self.name, tx, exc))

    def _expired(self, tx: NgTransaction) -> None:
        if self._pending.get(tx.cookie) is not tx:
            return
        if tx.attempt < tx.policy.attempts:
            self._attempt(tx)
            return
        waited = self._clock.monotonic() - tx.started
        self._finish(tx, None, MediaTimeout(
            f"{self.name}: no reply to {tx.command} after {tx.attempt} attempts "
            f"({waited:.1f} s)"))

    def _finish(self, tx: NgTransaction, reply: Mapping[str, Any] | None,
                error: Exception | None) -> None:
        if self._pending.pop(tx.cookie, None) is not tx:
            return
        if tx.timer is not None:
            tx.timer.cancel()
            tx.timer = None
        tx.on_done(tx, reply, error)

    def feed(self, datagram: bytes) -> NgTransaction | None:
        """Deliver a received datagram; returns the transaction it completed, if any.

        A reply whose cookie is not pending (a duplicate answer to a resend, or
        an answer after we gave up) is counted and dropped. A malformed body
        with a known cookie fails that transaction with ``NgProtocolError``; a
        datagram without a readable cookie raises ``NgProtocolError``.
        """
        cookie, body = split_cookie(datagram)
        tx = self._pending.get(cookie)
        if tx is None:
            self.late_replies += 1
            return None
        try:
            reply = decode_body(body)
        except NgProtocolError as exc:
            self._finish(tx, None, exc)
            return tx
        error = error_for(tx.command, reply)
        self._finish(tx, None if error else reply, error)
        return tx

    def cancel(self, cookie: str) -> bool:
        """Forget a transaction without completing it (its waiter went away)."""
        tx = self._pending.pop(cookie, None)
        if tx is None:
            return False
        if tx.timer is not None:
            tx.timer.cancel()
        return True

    def fail_all(self, error_factory: Callable[[NgTransaction], Exception]) -> int:
        """Complete every pending transaction with an error (socket lost, closing)."""
        txs = list(self._pending.values())
        for tx in txs:
            self._finish(tx, None, error_factory(tx))
        return len(txs)


def _send_failed(name: str, tx: NgTransaction, exc: OSError) -> Exception:
    return MediaUnavailable(f"{name}: sending {tx.command} failed: {exc}")


__all__ = [
    "MAX_DATAGRAM",
    "BencodeError",
    "CookieFactory",
    "NgCorrelator",
    "ResendPolicy",
    "NgTransaction",
    "bdecode",
    "bencode",
    "check_reply",
    "cookies",
    "decode_body",
    "decode_message",
    "encode_message",
    "error_for",
    "split_cookie",
]
