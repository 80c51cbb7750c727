"""Plain-data effects the endpoint core returns, and the timer configuration.

A driver executes them in order:

* :class:`Send` — write ``data`` to ``peer`` (over ``flow`` if that connection
  is still open, else a new one for stream transports). If the write fails for
  a transaction's message, call ``core.transport_error(effect.tx, now, why)``.
* :class:`StartTimer` / :class:`CancelTimer` — arm/disarm a one-shot timer;
  when it fires call ``core.timer_fired(timer_id, now)``. Ids are unique and
  never reused, so a late fire of a cancelled timer is harmless (ignored).
* the rest are events for the transaction user (the SipPort implementation).

Effects are plain slotted dataclasses, not frozen ones: they are created for
every message on the hot path and freezing costs ~0.25 µs each. Treat them as
immutable all the same.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from engine.ports import Peer
from engine.sip.errors import SipParseError
from engine.sip.message import SipRequest, SipResponse

RELIABLE_TRANSPORTS = frozenset({"tcp", "tls", "sctp", "ws", "wss"})


def is_reliable(transport: str) -> bool:
    return transport.lower() in RELIABLE_TRANSPORTS


@dataclass(slots=True)
class TimerConfig:
    """RFC 3261 §17 timer bases (seconds). Every timer derives from these."""

    t1: float = 0.5  # RTT estimate
    t2: float = 4.0  # cap of non-INVITE request / INVITE response retransmission
    t4: float = 5.0  # how long the network may hold a message
    d: float = 32.0  # timer D: INVITE client absorbs non-2xx retransmissions (≥32 s)

    @property
    def timeout(self) -> float:  # B, F, H, L, M, J and the 2xx/ACK wait: 64*T1
        return 64 * self.t1


# --------------------------------------------------------------------------- driver effects


@dataclass(slots=True)
class Send:
    data: bytes
    peer: Peer
    flow: str | None = None  # connection to reuse (stream transports), if known
    tx: int | None = None  # transaction whose message this is (for transport_error)


@dataclass(slots=True)
class StartTimer:
    timer_id: int
    delay: float


@dataclass(slots=True)
class CancelTimer:
    timer_id: int


# --------------------------------------------------------------------------- TU events


@dataclass(slots=True)
class RequestReceived:
    """A request for the TU. ``tx`` is its server transaction (answer with
    ``core.respond(tx, …)``); None for an ACK to a 2xx, which has none —
    ``invite_tx`` then names the INVITE it acknowledges when known."""

    request: SipRequest
    tx: int | None
    source: Peer
    flow: str | None = None
    invite_tx: int | None = None


@dataclass(slots=True)
class CancelReceived:
    """The peer CANCELled INVITE server transaction ``invite_tx``. With the
    default ``auto_cancel`` the core has already answered 200 to the CANCEL and
    487 to the INVITE; otherwise the TU must (``cancel_tx`` is the CANCEL's)."""

    request: SipRequest
    invite_tx: int
    cancel_tx: int
    answered: bool


@dataclass(slots=True)
class ResponseReceived:
    """A response to client transaction ``tx`` (None: a 2xx to an INVITE whose
    transaction is gone — ACK and BYE it). ``retransmission``: a 2xx already
    delivered with this To tag (an ACK for it has not been recorded yet)."""

    response: SipResponse
    tx: int | None
    retransmission: bool = False


@dataclass(slots=True)
class TransactionTimeout:
    """Timer B/F (client: no final response — treat as 408), ``cancel`` (no
    final response 64*T1 after our CANCEL — treat as 487), H (server: the ACK
    for our non-2xx never came; informational)."""

    tx: int
    request: SipRequest
    timer: str


@dataclass(slots=True)
class AckTimeout:
    """Our 2xx to an INVITE was not ACKed within 64*T1: the TU should BYE
    (RFC 3261 §13.3.1.4)."""

    tx: int
    request: SipRequest
    response: SipResponse


@dataclass(slots=True)
class TransportFailure:
    """The driver could not send a message of transaction ``tx`` (treat as 503).
    ``request`` is None for a non-INVITE server transaction that had answered."""

    tx: int
    request: SipRequest | None
    reason: str


@dataclass(slots=True)
class TransactionTerminated:
    """Bookkeeping: transaction ``tx`` is gone (forget any state keyed by it)."""

    tx: int


@dataclass(slots=True)
class MessageRejected:
    """A malformed message: answered (``replied``) or dropped. For logs/metrics."""

    error: SipParseError
    source: Peer
    replied: bool


Effect = (Send | StartTimer | CancelTimer | RequestReceived | CancelReceived | ResponseReceived
          | TransactionTimeout | AckTimeout | TransportFailure | TransactionTerminated
          | MessageRejected)


# --------------------------------------------------------------------------- driver helper


class TimerQueue:
    """Optional helper for drivers: run every Start/CancelTimer effect off one
    event-loop timer instead of one loop handle per transaction timer.

    ``start(id, deadline)``, ``cancel(id)``, ``next_deadline()`` and
    ``pop_due(now)``; cancelled entries are dropped lazily.
    """

    __slots__ = ("_heap", "_live")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int]] = []
        self._live: dict[int, float] = {}

    def __len__(self) -> int:
        return len(self._live)

    def start(self, timer_id: int, deadline: float) -> None:
        self._live[timer_id] = deadline
        heapq.heappush(self._heap, (deadline, timer_id))

    def cancel(self, timer_id: int) -> None:
        self._live.pop(timer_id, None)

    def next_deadline(self) -> float | None:
        heap, live = self._heap, self._live
        while heap and live.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def pop_due(self, now: float) -> list[int]:
        """Ids due at ``now``, earliest first; they are removed."""
        out: list[int] = []
        heap, live = self._heap, self._live
        while heap and heap[0][0] <= now:
            deadline, tid = heapq.heappop(heap)
            if live.get(tid) == deadline:
                del live[tid]
                out.append(tid)
        return out
