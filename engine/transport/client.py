"""Waiting for the final response of a request we sent (UAC side, non-INVITE
and re-INVITE), including the one automatic answer to a 401/407 challenge.

Local failures become responses, as drachtio delivers them: no final
response within 64*T1 → a local ``408 Request Timeout``, a transport error →
a local ``503 Service Unavailable``. Nothing here raises to the caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from engine.log import get_logger
from engine.ports import Credentials, Peer
from engine.sip.builders import make_response
from engine.sip.digest import DigestClient
from engine.sip.errors import SipParseError
from engine.sip.message import SipRequest, SipResponse
from engine.transport.tu import TransactionUser

log = get_logger("engine.transport.client")


class ClientUser(Protocol):
    """What the port calls for events of a client transaction it sent for us."""

    def on_response(self, tx: int, response: SipResponse, retransmission: bool) -> None: ...

    def on_timeout(self, tx: int, timer: str) -> None: ...

    def on_transport_failure(self, tx: int, reason: str) -> None: ...

    def on_terminated(self, tx: int) -> None: ...


def local_response(request: SipRequest, status: int, reason: str | None = None) -> SipResponse:
    """A response made up locally for ``request`` (408 on time-out, 503 on transport
    failure), shaped like one from the network (Via/From/To/Call-ID/CSeq copied)."""
    return make_response(request, status, reason)


def authorized_copy(digest: DigestClient, request: SipRequest, challenge: SipResponse,
                    auth: Credentials, cseq: int) -> SipRequest | None:
    """The request to re-send after a 401/407: same Call-ID, From tag, Request-URI
    and body, CSeq ``cseq``, a new branch, and the digest credentials. None when
    the challenge cannot be answered (no usable digest challenge)."""
    try:
        creds = digest.answer(challenge, request, username=auth.username,
                              password=auth.password)
    except SipParseError as exc:
        log.info("challenge not answered", status=challenge.status, reason=exc.reason,
                 call_id=request.call_id)
        return None
    retry = request.copy()
    for name in ("via", "authorization", "proxy-authorization"):
        retry.remove_header(name)
    retry.set_header("CSeq", f"{cseq} {request.method}")
    for name, value in creds:
        retry.add_header(name, value)
    log.debug("answering digest challenge", status=challenge.status, method=request.method,
              call_id=request.call_id)
    return retry


class RequestWaiter:
    """One outgoing request until its final response. ``start()`` sends it and
    returns the future of the final response. ``next_cseq`` gives the CSeq for an
    authenticated retry (dialogs pass their counter; default: the old one + 1)."""

    __slots__ = ("auth", "dest", "flow", "future", "next_cseq", "port", "request", "retried",
                 "tx")

    def __init__(self, port: TransactionUser, request: SipRequest, dest: Peer,
                 flow: str | None = None, auth: Credentials | None = None, *,
                 next_cseq: Callable[[], int] | None = None):
        self.port = port
        self.request = request
        self.dest = dest
        self.flow = flow
        self.auth = auth
        self.next_cseq = next_cseq
        self.retried = False
        self.tx: int | None = None
        self.future: asyncio.Future[SipResponse] = port.loop.create_future()

    def start(self) -> asyncio.Future[SipResponse]:
        self.tx = self.port.send_request(self.request, self.dest, self.flow, self)
        return self.future

    def _done(self, response: SipResponse) -> None:
        if not self.future.done():
            self.future.set_result(response)

    def on_response(self, tx: int, response: SipResponse, retransmission: bool) -> None:
        if tx != self.tx or self.future.done() or response.status < 200:
            return
        if response.status in (401, 407) and self.auth is not None and not self.retried:
            cseq = self.next_cseq() if self.next_cseq else self.request.cseq.seq + 1
            retry = self.port.authorized_copy(self.request, response, self.auth, cseq)
            if retry is not None:
                self.retried = True
                self.request = retry
                self.tx = self.port.send_request(retry, self.dest, self.flow, self)
                return
        self._done(response)

    def on_timeout(self, tx: int, timer: str) -> None:
        if tx == self.tx:
            self._done(local_response(self.request, 408))

    def on_transport_failure(self, tx: int, reason: str) -> None:
        if tx == self.tx:
            log.info("request failed: transport", method=self.request.method,
                     call_id=self.request.call_id, reason=reason)
            self._done(local_response(self.request, 503))

    def on_terminated(self, tx: int) -> None:
        if tx == self.tx:
            self._done(local_response(self.request, 408))
