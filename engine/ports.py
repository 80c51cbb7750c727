"""The Protocols that actions depend on.

Actions and guards see only these interfaces, never a concrete adapter; one
composition root (``engine/app.py``) wires the adapters chosen by settings.
Everything here is keyword-only and asyncio-based. Long-running work (an
INVITE leg, a webhook call) is started by an action and reports back through
callbacks that the action turns into machine events.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

# --------------------------------------------------------------------------- clock


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


@runtime_checkable
class Clock(Protocol):
    """Time source. Tests inject a fake one and advance it instantly."""

    def monotonic(self) -> float:
        """Seconds on a monotonic scale (for timers and durations)."""
        ...

    def time(self) -> float:
        """Wall-clock seconds since the epoch (for traces and payloads)."""
        ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle: ...


# --------------------------------------------------------------------------- SIP

Headers = Sequence[tuple[str, str]] | Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Peer:
    """Where a message came from / goes to."""

    host: str
    port: int
    transport: str = "udp"  # udp | tcp | tls | ws | wss


class SipMessageView(Protocol):
    """Read access to a parsed SIP message (request or response)."""

    @property
    def body(self) -> bytes: ...

    def header(self, name: str) -> str | None:
        """First value of header ``name`` (case-insensitive, compact forms accepted)."""
        ...

    def header_values(self, name: str) -> list[str]:
        """Every value of ``name``: repeated lines and comma-joined values, in order."""
        ...


class SipResponseView(SipMessageView, Protocol):
    @property
    def status(self) -> int: ...

    @property
    def reason(self) -> str: ...


class Dialog(Protocol):
    """An established (or early) INVITE dialog, either side."""

    @property
    def id(self) -> str: ...

    @property
    def call_id(self) -> str: ...

    @property
    def local_tag(self) -> str: ...

    @property
    def remote_tag(self) -> str: ...

    @property
    def local_sdp(self) -> bytes | None: ...

    @property
    def remote_sdp(self) -> bytes | None: ...

    @property
    def connected(self) -> bool: ...

    async def ack(self, *, sdp: bytes | None = None) -> None:
        """UAC late offer only: send the ACK (carrying the answer ``sdp``) for the 2xx whose
        offer the caller has now answered. Other dialogs are ACKed by the stack."""
        ...

    async def bye(self, *, headers: Headers = ()) -> None:
        """Send BYE and wait for its final response (or time-out); never raises on failure."""
        ...

    async def reinvite(self, *, sdp: bytes | None, headers: Headers = ()) -> SipResponseView:
        """Send a re-INVITE, ACK a 2xx, return the final response."""
        ...

    async def request(
        self, method: str, *, headers: Headers = (), body: bytes = b"",
        content_type: str | None = None,
    ) -> SipResponseView:
        """Any in-dialog request (INFO, REFER, NOTIFY, UPDATE, OPTIONS, MESSAGE)."""
        ...

    def on(self, event: str, callback: Callable[[IncomingRequest], Awaitable[None] | None]) -> None:
        """Listen for in-dialog requests: ``bye``, ``reinvite``, ``update``, ``info``,
        ``refer``, ``notify``, ``options``, ``message``, ``ack``. One listener per event
        (a new one replaces the old: one owner per leg). Without a listener BYE is answered
        200 and the dialog ends, a re-INVITE 200 with the current local SDP, others 200."""
        ...

    def off(self, event: str) -> None: ...


class IncomingRequest(SipMessageView, Protocol):
    """A request received from the network (out of dialog, or in-dialog via ``Dialog.on``)."""

    @property
    def message(self) -> Any:
        """The parsed ``engine.sip.message.SipRequest`` (From/To/Contact/URI accessors).
        The stack has already checked that its Request-URI, From, To, Call-ID, CSeq and
        Via parse (a request where they don't is answered 400 before any handler)."""
        ...

    @property
    def method(self) -> str: ...

    @property
    def uri(self) -> str:
        """The Request-URI as text."""
        ...

    @property
    def call_id(self) -> str: ...

    @property
    def source(self) -> Peer: ...

    @property
    def cancelled(self) -> bool: ...

    @property
    def final_sent(self) -> bool: ...

    @property
    def final_status(self) -> int | None:
        """The final response sent (None before one): for summary lines."""
        ...

    @property
    def flow(self) -> str | None:
        """Opaque token of the connection the request arrived on (reuse it for TCP peers)."""
        ...

    def on_cancel(self, callback: Callable[[], None]) -> None:
        """Called once if the caller CANCELs (the stack has already sent 200 + 487)."""
        ...

    async def reply(
        self, status: int, reason: str | None = None, *, headers: Headers = (),
        body: bytes = b"", content_type: str | None = None,
    ) -> None:
        """Send a response. Provisional responses may be sent several times; a second final
        response is ignored (logged). For INVITE 2xx use ``answer``."""
        ...

    async def answer(self, *, sdp: bytes, headers: Headers = ()) -> Dialog:
        """Answer an INVITE with 200 + SDP and return the UAS dialog (ACK is awaited by the
        stack; if none arrives within 64*T1 the dialog receives a ``bye`` event)."""
        ...


class ClientLeg(Protocol):
    """An outgoing INVITE in progress (one branch of a fork)."""

    # the call's (A leg's) Call-ID, set by the call leg: the SIP layer's log lines about
    # this INVITE name the call as well as the leg
    a_call_id: str | None

    @property
    def call_id(self) -> str: ...

    @property
    def from_tag(self) -> str: ...

    @property
    def responded(self) -> bool:
        """Whether any response (a 100 Trying included) came for this INVITE. Before one,
        a CANCEL cannot be sent (RFC 3261 §9.1): the stack holds it until a provisional
        response arrives, or ends the INVITE with its timeout."""
        ...

    async def cancel(self, *, headers: Headers = ()) -> None:
        """CANCEL if still pending; if it already answered, the answer is BYE'd."""
        ...

    def result(self) -> Awaitable[Dialog]:
        """Resolves with the confirmed dialog on 2xx (ACK already sent), or raises
        ``SipError(status, reason, response)`` on a failure final / timeout (408)."""
        ...


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    password: str = field(repr=False)


@runtime_checkable
class SipPort(Protocol):
    """What machines may do with SIP, whichever backend (embedded, drachtio) runs it."""

    def on_request(
        self, method: str, handler: Callable[[IncomingRequest], Awaitable[None]]
    ) -> None:
        """Route out-of-dialog requests of ``method`` to ``handler``."""
        ...

    async def request(
        self, uri: str, method: str, *, headers: Headers = (), body: bytes = b"",
        content_type: str | None = None, proxy: str | None = None,
        auth: Credentials | None = None, flow: str | None = None,
    ) -> SipResponseView:
        """Send a non-INVITE request outside a dialog and return its final response
        (a local 408 on timeout). With ``auth`` a 401/407 is answered once automatically;
        without it the challenge is returned to the caller."""
        ...

    def invite(
        self, uri: str, *, sdp: bytes | None, headers: Headers = (), proxy: str | None = None,
        auth: Credentials | None = None, flow: str | None = None,
        on_provisional: Callable[[SipResponseView], None] | None = None,
    ) -> ClientLeg:
        """Start an INVITE client leg; 1xx (except 100) go to ``on_provisional``."""
        ...

    def contact_uri(self, *, transport: str = "udp", user: str | None = None) -> str:
        """Our own Contact URI for ``transport`` (uses SIP_EXTERNAL_ADDRESS when set)."""
        ...


# --------------------------------------------------------------------------- media


@dataclass(frozen=True, slots=True)
class MediaAnswer:
    sdp: bytes
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)


@runtime_checkable
class MediaPort(Protocol):
    """RTPEngine operations used by the call flows (see engine/media)."""

    async def offer(
        self, *, call_id: str, from_tag: str, sdp: bytes, source_codecs: Sequence[str] = (),
        dest_codecs: Sequence[str] = (), branch: str | None = None,
        received_from: str | None = None, to_tag: str | None = None,
    ) -> MediaAnswer:
        """``to_tag`` marks a re-offer inside an established call (a re-INVITE; ``from_tag``
        is then the sender's tag). ``branch`` keeps each forked B leg's ports and codec
        policy apart (RTPEngine ``via-branch``; the answer must carry the same branch).
        ``received_from`` is the SIP source IP, used when the SDP carries a private address
        (NAT)."""
        ...

    async def answer(
        self, *, call_id: str, from_tag: str, to_tag: str, sdp: bytes,
        branch: str | None = None, received_from: str | None = None,
    ) -> MediaAnswer: ...

    async def delete(self, *, call_id: str, from_tag: str | None = None) -> None: ...

    async def play_media(
        self, *, call_id: str, from_tag: str, file: str | None = None,
        blob: bytes | None = None, repeat: int | None = None,
    ) -> int | None:
        """Start playback towards the party ``from_tag``; returns one pass's duration (ms)."""
        ...

    async def stop_media(self, *, call_id: str, from_tag: str) -> None: ...

    async def play_dtmf(
        self, *, call_id: str, from_tag: str, code: str, duration: int = 250
    ) -> None: ...

    async def query(self, *, call_id: str) -> Mapping[str, Any]: ...

    def watch(self, call_id: str, on_lost: Callable[[str, str], None]) -> None:
        """Call ``on_lost(instance, why)`` if RTPEngine loses ``call_id``'s session."""
        ...

    def unwatch(self, call_id: str) -> None: ...

    def forget(self, call_id: str) -> None:
        """Place ``call_id``'s next offer on any healthy instance (after a loss)."""
        ...

    async def resolve(self, url: str) -> str:
        """Turn an announce/ringtone URL (``file:``/``http(s):``) into an absolute local
        path RTPEngine can read (confined, fetched, normalised, cached)."""
        ...


# --------------------------------------------------------------------------- state store


@dataclass(frozen=True, slots=True)
class Binding:
    """One registration binding at ``client:{domain}:{user}``."""

    contact: str
    proxy: str
    dialplan: Any
    codecs: Any
    transport: str = "udp"
    flow: str | None = None
    callid: str = ""
    cseq: int = 0
    user_agent: str = ""
    expires: int = 0  # granted seconds (TTL at write time)


@runtime_checkable
class StateStore(Protocol):
    async def ping(self) -> None: ...

    async def save_binding(self, *, domain: str, user: str, binding: Binding) -> None:
        """Write the hash and its TTL atomically (MULTI/EXEC)."""
        ...

    async def get_binding(self, *, domain: str, user: str) -> tuple[Binding, int] | None:
        """The binding and its remaining TTL in seconds (-1: the key has no expiry, e.g.
        written by another tool), or None."""
        ...

    async def remove_binding(self, *, domain: str, user: str) -> bool: ...

    async def advance_nonce_count(self, *, nonce: str, nc: int, ttl: int) -> bool:
        """Record ``nc`` for ``nonce`` if it is higher than any seen; False = replay."""
        ...

    async def save_call(self, *, domain: str, call_id: str, fields: Mapping[str, str],
                        ttl: int) -> None: ...

    async def get_call(self, *, domain: str, call_id: str) -> Mapping[str, str] | None: ...

    async def remove_call(self, *, domain: str, call_id: str) -> None: ...

    async def save_regtrunk(self, *, domain: str, reg_id: str, fields: Mapping[str, str],
                            ttl: int) -> None: ...

    async def get_regtrunk(self, *, domain: str, reg_id: str) -> Mapping[str, str] | None: ...

    async def delete_regtrunk(self, *, domain: str, reg_id: str, owner: str) -> bool:
        """Delete only if the key's ``owner`` field is ``owner`` (D-21)."""
        ...

    async def close(self) -> None: ...


# --------------------------------------------------------------------------- hooks


@dataclass(frozen=True, slots=True)
class HookReply:
    status: int
    body: bytes
    json: Any = None  # parsed JSON when the body was JSON, else None
    is_json: bool = False  # tells a JSON null apart from a body that was not JSON


@runtime_checkable
class HookCaller(Protocol):
    """POSTs JSON to webhooks (pooled, bounded, signed, with User-Agent)."""

    async def post(self, url: str, payload: Mapping[str, Any] | Sequence[Any], *,
                   timeout: float) -> HookReply:
        """Raise ``HookError(kind=timeout|connect|…)`` on transport failure; any HTTP status
        is returned (the caller decides what it means)."""
        ...

    async def close(self) -> None: ...
