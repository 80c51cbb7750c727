"""What both SIP backends' INVITE dialogs share (``engine.ports.Dialog``): the listeners
for in-dialog requests and what happens without one, the offer/answer bookkeeping of
``local_sdp``/``remote_sdp``, and the common part of ending a dialog.

The embedded stack (``engine.transport.dialogs``) keeps the dialog state itself and
answers synchronously; drachtio (``engine.drachtio.dialogs``) lets the server keep it
and answers by frame. Each backend's dialog subclasses :class:`DialogBase` and
provides how a final response goes out (``_send_final``), how the dialog leaves the
port's table, how an unfinished late-offer ACK is sent and how the BYE is sent and
the ``bye`` listener told (``_ended``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from engine.log import get_logger
from engine.ports import Headers, IncomingRequest
from engine.sip.message import SipMessage, SipRequest

log = get_logger("engine.dialog")

Listener = Callable[[IncomingRequest], Awaitable[None] | None]

EVENTS = {"BYE": "bye", "INVITE": "reinvite", "UPDATE": "update", "INFO": "info",
          "REFER": "refer", "NOTIFY": "notify", "OPTIONS": "options", "MESSAGE": "message",
          "ACK": "ack"}
EVENT_NAMES = frozenset(EVENTS.values())
SDP = "application/sdp"


def sdp_body(msg: SipMessage) -> bytes | None:
    """The SDP a message carries, if any (Content-Type application/sdp, or a body
    that starts like SDP when the type is missing)."""
    body = msg.body
    if not body:
        return None
    ctype = msg.content_type
    if ctype == SDP or (ctype is None and body.lstrip()[:2] == b"v="):
        return body
    return None


class DialogOwner(Protocol):
    """The port a dialog hands application callbacks to (``engine.port_tasks.TaskOwner``)."""

    def safe_call(self, callback: Callable[..., Any], what: str, *args: Any) -> None: ...

    def fire(self, callback: Callable[[Any], Any], req: Any, what: str) -> None: ...


class DialogBase:
    """One INVITE dialog, either side: listeners, received requests, SDP, ending."""

    port: DialogOwner
    local_sdp: bytes | None
    remote_sdp: bytes | None
    connected: bool
    ended_reason: str | None
    _listeners: dict[str, Listener]
    _lock: asyncio.Lock | None  # our re-INVITEs, one at a time
    _reinvite_in: Any  # their re-INVITE, until answered
    _late_ack: Any  # UAC late offer: timer until the application ACKs

    def _init_base(self, local_sdp: bytes | None, remote_sdp: bytes | None) -> None:
        self.local_sdp = local_sdp
        self.remote_sdp = remote_sdp
        self.connected = True
        self.ended_reason = None
        self._listeners = {}
        self._lock = None
        self._reinvite_in = None
        self._late_ack = None

    # ------------------------------------------------------------------ backend hooks

    def _send_final(self, req: Any, status: int, *, body: bytes = b"",
                    content_type: str | None = None, headers: Headers = ()) -> None:
        """Answer ``req`` now (fire and forget)."""
        raise NotImplementedError

    def _answer_reinvite(self, req: Any) -> None:
        """Answer their re-INVITE 200 with the current local SDP (no listener)."""
        raise NotImplementedError

    def _reinvite_refused(self, req: Any) -> bool:
        """Refuse their re-INVITE for a reason of the backend's (answered here); True if so."""
        return False

    def _in_dialog(self, req: Any) -> None:
        """A non-INVITE in-dialog request is about to reach its listener or default."""

    def _leave_port(self) -> None:
        """Remove the dialog from the port's table (no more in-dialog requests)."""
        raise NotImplementedError

    def _send_late_ack(self) -> None:
        """Ending before the application ACKed a late-offer 2xx: ACK it without a body."""
        raise NotImplementedError

    def _ended(self, reason: str, bye: bool, listener: Listener | None,
               message: SipRequest | None) -> None:
        """Send the BYE (``bye``) and tell ``listener`` with a notice carrying ``reason``."""
        raise NotImplementedError

    @property
    def log_ids(self) -> dict[str, str]:
        """The fields that name this dialog in log lines."""
        raise NotImplementedError

    # ------------------------------------------------------------------ listeners

    def on(self, event: str, callback: Listener) -> None:
        """Listen for in-dialog requests: ``bye``, ``reinvite``, ``update``, ``info``,
        ``refer``, ``notify``, ``options``, ``message``, ``ack``. One listener per
        event (a new one replaces the old). The callback gets the request and must
        answer it (``reply``; for a re-INVITE ``answer(sdp=…)``), except for ``bye``
        (already answered 200, the dialog has ended) and ``ack``. Called in network
        order; a returned coroutine runs as a task. If it raises before answering, the
        request is answered 500.

        Without a listener: BYE → 200; re-INVITE → 200 with the current local SDP;
        UPDATE with an offer → 200 with the current local SDP; the others → 200."""
        if event not in EVENT_NAMES:
            raise ValueError(f"unknown dialog event {event!r}; one of {sorted(EVENT_NAMES)}")
        if not self.connected:
            return  # ended: nothing will ever be delivered (and see ``end``)
        self._listeners[event] = callback

    def off(self, event: str) -> None:
        """Remove the listener of ``event`` (the default behaviour applies again)."""
        self._listeners.pop(event, None)

    # ------------------------------------------------------------------ our requests

    def _reinvite_accepted(self, sdp: bytes | None, response: SipMessage) -> None:
        """Our re-INVITE got a 2xx: ``sdp`` was our offer (None: offerless; the 2xx then
        carries their offer, answered in the ACK)."""
        if sdp:
            self.local_sdp = sdp
        offer = sdp_body(response)
        if offer is not None:
            self.remote_sdp = offer

    def _update_accepted(self, method: str, status: int, body: bytes,
                         content_type: str | None, response: SipMessage) -> None:
        """After our in-dialog ``method``: a 2xx to an UPDATE with SDP is an offer/answer."""
        if method == "UPDATE" and 200 <= status < 300 and content_type == SDP:
            self.local_sdp = body
            self.remote_sdp = sdp_body(response) or self.remote_sdp

    def _late_ack_expired(self) -> None:
        """UAC late offer: the application did not ACK the 2xx in time (64*T1): ACK it
        without a body and BYE."""
        if self._late_ack is None:
            return
        self._late_ack = None
        self._send_late_ack()
        self.end("ACK not sent by the application", bye=True)

    # ------------------------------------------------------------------ ending

    def end(self, reason: str, *, bye: bool = False, notify: bool = True,
            message: SipRequest | None = None) -> None:
        """Mark the dialog ended (idempotent). ``bye``: also send a BYE carrying
        ``Reason: SIP;cause=200;text="<reason>"``. ``notify``: tell the ``bye``
        listener with a notification whose ``reason`` is ``reason`` (``message``: the
        BYE that ended it, when one was received)."""
        if not self.connected:
            return
        self.connected = False
        self.ended_reason = reason
        self._leave_port()
        if self._late_ack is not None:  # the 2xx still needs its ACK before any BYE
            self._late_ack.cancel()
            self._late_ack = None
            self._send_late_ack()
        pending = self._reinvite_in
        if pending is not None and not pending.final_sent:
            self._send_final(pending, 487)
        self._ended(reason, bye, self._listeners.get("bye") if notify else None, message)
        # An ended dialog fires nothing more. Its listeners close over the call's machine
        # instance, which holds this dialog: dropping them lets the call be freed by
        # reference counting instead of waiting, with all its objects, for a full
        # garbage collection (a long pause once many calls have piled up).
        self._listeners.clear()
        log.debug("dialog ended", **self.log_ids, reason=reason)

    # ------------------------------------------------------------------ received requests

    def receive(self, req: Any) -> None:
        """An in-dialog request (not ACK) matched to this dialog by the port."""
        method = req.method
        event = EVENTS.get(method)
        if event is None:
            self._send_final(req, 501)
            return
        if method == "BYE":
            self._send_final(req, 200)
            cb = self._listeners.get("bye")
            self.end("BYE received", notify=False)
            if cb is not None:
                self.port.safe_call(cb, "bye", req)
            return
        if method == "INVITE":
            self._receive_reinvite(req)
            return
        self._in_dialog(req)
        cb = self._listeners.get(event)
        if cb is not None:
            self.port.fire(cb, req, event)
        elif method == "UPDATE" and sdp_body(req.message) is not None and self.local_sdp:
            self._send_final(req, 200, body=self.local_sdp, content_type=SDP)
        else:
            self._send_final(req, 200)

    def _receive_reinvite(self, req: Any) -> None:
        if self._lock is not None and self._lock.locked():
            self._send_final(req, 491)  # RFC 3261 §14.2: ours is pending
            return
        if self._reinvite_refused(req):
            return
        self._reinvite_in = req
        self._track_invite(req)
        cb = self._listeners.get("reinvite")
        if cb is not None:
            self.port.fire(cb, req, "reinvite")
        else:
            self._answer_reinvite(req)

    def _track_invite(self, req: Any) -> None:
        """The port routes the CANCEL (and ACK) of their re-INVITE ``req`` to it."""
        raise NotImplementedError

    def invite_answered(self, req: Any, body: bytes) -> None:
        """We sent a 2xx to the peer's INVITE ``req`` (initial or re-INVITE)."""
        offer = sdp_body(req.message)
        if offer is not None:
            self.remote_sdp = offer
        if body:
            self.local_sdp = body
        if self._reinvite_in is req:
            self._reinvite_in = None

    def update_answered(self, req: Any, body: bytes) -> None:
        """We sent a 2xx to the peer's UPDATE ``req``."""
        offer = sdp_body(req.message)
        if offer is not None:
            self.remote_sdp = offer
            if body:
                self.local_sdp = body


__all__ = ["EVENTS", "EVENT_NAMES", "SDP", "DialogBase", "DialogOwner", "Listener", "sdp_body"]
