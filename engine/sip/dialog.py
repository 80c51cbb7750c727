"""Dialog state (RFC 3261 §12, §13.2.2.4, §14) — pure, no transactions, no I/O.

A :class:`SipDialog` remembers what every in-dialog request needs (Call-ID,
tags, CSeq numbers, route set, remote target) and builds those requests with
loose/strict routing. A :class:`DialogTable` matches incoming requests and
responses to dialogs and says when an in-dialog request deserves a 481.

The dialog id follows drachtio's convention, ``<Call-ID>;from-tag=<tag>``
where the tag is the From tag of the dialog-creating request (for a UAS dialog
the caller's tag, for a UAC dialog our own). It is not unique across the
early dialogs of a forked INVITE; the table matches on (Call-ID, local tag,
remote tag).
"""

from __future__ import annotations

from collections.abc import Mapping

from engine.sip.builders import HeaderItems
from engine.sip.errors import SipParseError
from engine.sip.headers import MAX_CSEQ
from engine.sip.message import SipRequest, SipResponse
from engine.sip.uri import NameAddr, SipUri, parse_name_addr

# Requests whose Contact refreshes the remote target (§12.2, RFC 3311, RFC 6665).
TARGET_REFRESH = frozenset({"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"})
EARLY, CONFIRMED, TERMINATED = "early", "confirmed", "terminated"


def dialog_id(call_id: str, from_tag: str) -> str:
    return f"{call_id};from-tag={from_tag}"


def _parse_party(value: str) -> NameAddr:
    return parse_name_addr(value)


class SipDialog:
    """One dialog, either side. Attributes are public for the TU to read;
    change them through the methods so the RFC rules are applied."""

    __slots__ = ("call_id", "initial_local_seq", "invite_seq", "local_contact", "local_party",
                 "local_seq", "local_tag", "remote_party", "remote_seq", "remote_tag",
                 "remote_target", "role", "route_set", "secure", "state")

    def __init__(self, *, role: str, call_id: str, local_tag: str, remote_tag: str,
                 local_party: str, remote_party: str, remote_target: str,
                 route_set: list[str], local_seq: int | None, remote_seq: int | None,
                 state: str, local_contact: str | None = None, secure: bool = False,
                 initial_local_seq: int = 1):
        self.role = role  # "uac" | "uas"
        self.call_id = call_id
        self.local_tag = local_tag
        self.remote_tag = remote_tag
        self.local_party = local_party  # our From value (with our tag)
        self.remote_party = remote_party  # their To value (with their tag)
        self.remote_target = remote_target  # URI text (Contact)
        self.route_set = route_set  # name-addr texts, in the order to use
        self.local_seq = local_seq
        self.remote_seq = remote_seq
        self.invite_seq = local_seq if role == "uac" else None  # CSeq of our last INVITE
        self.state = state
        self.local_contact = local_contact
        self.secure = secure
        self.initial_local_seq = initial_local_seq

    @property
    def id(self) -> str:
        return dialog_id(self.call_id, self.local_tag if self.role == "uac" else self.remote_tag)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.call_id, self.local_tag, self.remote_tag)

    def __repr__(self) -> str:
        return f"<SipDialog {self.role} {self.state} {self.id} remote={self.remote_tag}>"

    # ------------------------------------------------------------------ creation

    @classmethod
    def from_uac(cls, request: SipRequest, response: SipResponse) -> SipDialog:
        """§12.1.2: our INVITE (or SUBSCRIBE) and a 1xx-with-tag (early) or 2xx
        (confirmed) response to it."""
        remote_tag = response.to_tag
        local_tag = request.from_tag
        if not remote_tag or not local_tag:
            raise SipParseError("A dialog needs From and To tags")
        contacts = response.contacts
        target = contacts[0].uri_text if contacts else request.uri
        routes = [str(r) for r in reversed(response.record_routes)]
        return cls(
            role="uac", call_id=request.call_id, local_tag=local_tag, remote_tag=remote_tag,
            local_party=request.header("from") or "", remote_party=response.header("to") or "",
            remote_target=target, route_set=routes, local_seq=request.cseq.seq,
            remote_seq=None, state=CONFIRMED if response.status >= 200 else EARLY,
            local_contact=request.header("contact"),
            secure=request.request_uri.scheme == "sips",
        )

    @classmethod
    def from_uas(cls, request: SipRequest, response: SipResponse, *,
                 initial_local_seq: int = 1) -> SipDialog:
        """§12.1.1: a received INVITE (or SUBSCRIBE) and the 1xx/2xx we answer with
        (which carries our To tag and Contact)."""
        local_tag = response.to_tag
        remote_tag = request.from_tag
        if not local_tag or not remote_tag:
            raise SipParseError("A dialog needs From and To tags")
        contacts = request.contacts
        if not contacts:
            raise SipParseError("Dialog-creating request without Contact")
        return cls(
            role="uas", call_id=request.call_id, local_tag=local_tag, remote_tag=remote_tag,
            local_party=response.header("to") or "", remote_party=request.header("from") or "",
            remote_target=contacts[0].uri_text,
            route_set=[str(r) for r in request.record_routes],
            local_seq=None, remote_seq=request.cseq.seq,
            state=CONFIRMED if response.status >= 200 else EARLY,
            local_contact=response.header("contact"),
            secure=request.request_uri.scheme == "sips",
            initial_local_seq=initial_local_seq,
        )

    # ------------------------------------------------------------------ incoming

    def receive_request(self, request: SipRequest) -> int | None:
        """Apply an in-dialog request (§12.2.2). Returns a status to reject it
        with (500 for a CSeq out of order), or None when it may proceed."""
        method = request.method
        seq = request.cseq.seq
        if method not in ("ACK", "CANCEL"):
            # §12.2.2: lower than the last one is out of order (retransmissions
            # never get here: the transaction layer absorbs them)
            if self.remote_seq is not None and seq < self.remote_seq:
                return 500
            self.remote_seq = seq
        if method in TARGET_REFRESH:
            contacts = request.contacts
            if contacts:
                self.remote_target = contacts[0].uri_text
        if method == "BYE":
            self.state = TERMINATED
        return None

    def receive_response(self, request: SipRequest, response: SipResponse) -> None:
        """Apply a response to a request we sent in (or to create) this dialog."""
        status = response.status
        method = request.method
        if 200 <= status < 300:
            if method == "INVITE" and self.state == EARLY:
                # §13.2.2.4: confirm and recompute the route set from the 2xx
                self.state = CONFIRMED
                self.route_set = [str(r) for r in reversed(response.record_routes)]
            if method in TARGET_REFRESH:
                contacts = response.contacts
                if contacts:
                    self.remote_target = contacts[0].uri_text
            if method == "BYE":
                self.state = TERMINATED
        elif status in (408, 481):
            self.state = TERMINATED  # §12.2.1.2: the other side has no such dialog
        elif status >= 300 and method == "INVITE" and self.state == EARLY:
            self.state = TERMINATED  # the INVITE failed: early dialogs end

    def provisional(self, response: SipResponse) -> None:
        """A further 1xx in an early dialog: its Contact is the latest target."""
        if self.state == EARLY:
            contacts = response.contacts
            if contacts:
                self.remote_target = contacts[0].uri_text

    # ------------------------------------------------------------------ outgoing

    def next_cseq(self) -> int:
        if self.local_seq is None:
            self.local_seq = self.initial_local_seq
        else:
            self.local_seq += 1
        if self.local_seq > MAX_CSEQ:
            raise SipParseError("Local CSeq exhausted")
        return self.local_seq

    def create_request(self, method: str, *, headers: HeaderItems = (), body: bytes = b"",
                       content_type: str | None = None, contact: str | None = None) -> SipRequest:
        """An in-dialog request (BYE, re-INVITE, INFO, REFER, NOTIFY, UPDATE,
        OPTIONS, MESSAGE, PRACK) per §12.2.1.1, without Via (the endpoint core
        adds its own). Target-refresh requests carry our Contact."""
        if method in ("ACK", "CANCEL"):
            raise ValueError("use create_ack() for ACK; CANCEL belongs to the transaction")
        seq = self.next_cseq()
        if method == "INVITE":
            self.invite_seq = seq
        contact = contact or (self.local_contact if method in TARGET_REFRESH else None)
        return self._build(method, seq, headers, body, content_type, contact)

    def create_ack(self, cseq: int | None = None, *, body: bytes = b"",
                   content_type: str | None = None, headers: HeaderItems = ()) -> SipRequest:
        """The ACK for a 2xx to our INVITE of ``cseq`` (default: the last one),
        §13.2.2.4. A late-offer INVITE puts the answer SDP here."""
        seq = cseq if cseq is not None else self.invite_seq
        if seq is None:
            raise ValueError("no INVITE to acknowledge")
        return self._build("ACK", seq, headers, body, content_type, None)

    def _build(self, method: str, seq: int, headers: HeaderItems, body: bytes,
               content_type: str | None, contact: str | None) -> SipRequest:
        uri, routes = self.request_target()
        hdrs: list[tuple[str, str]] = [("Max-Forwards", "70")]
        hdrs += [("Route", r) for r in routes]
        hdrs += [("From", self.local_party), ("To", self.remote_party),
                 ("Call-ID", self.call_id), ("CSeq", f"{seq} {method}")]
        if contact:
            hdrs.append(("Contact", contact))
        items = headers.items() if isinstance(headers, Mapping) else headers
        for name, raw in items:
            value = str(raw)
            if "\r" in value or "\n" in value:
                raise SipParseError(f"Line break in {name}")
            hdrs.append((name, value))
        if content_type is not None:
            hdrs.append(("Content-Type", content_type))
        req = SipRequest(method, uri, (), body)
        req.headers = hdrs
        return req

    def next_hop(self) -> SipUri:
        """Where this dialog's requests go: the first route (loose or strict),
        else the remote target."""
        if self.route_set:
            return _parse_party(self.route_set[0]).uri
        return parse_name_addr(f"<{self.remote_target}>").uri

    def request_target(self) -> tuple[str, list[str]]:
        """(Request-URI, Route values) per §12.2.1.1: loose routing when the first
        route has ``lr``, else the strict-router form (first route as Request-URI,
        remote target appended as last Route)."""
        if not self.route_set:
            return self.remote_target, []
        first = _parse_party(self.route_set[0])
        if first.uri.lr:
            return self.remote_target, list(self.route_set)
        uri = first.uri.copy()
        uri.params.pop("method", None)
        uri.headers = None
        return str(uri), [*self.route_set[1:], f"<{self.remote_target}>"]


def next_hop(request: SipRequest, *, strict: bool = False) -> SipUri:
    """The URI to resolve (RFC 3263) and send ``request`` to (§8.1.2): the top
    Route if there is one, else the Request-URI. ``strict``: the request was
    formed for a strict first route (then the Request-URI *is* that route);
    :meth:`SipDialog.next_hop` knows which case applies."""
    if not strict:
        routes = request.header_values("route")
        if routes:
            return _parse_party(routes[0]).uri
    return request.request_uri


# --------------------------------------------------------------------------- the table


class DialogTable:
    """Live dialogs, matched on (Call-ID, local tag, remote tag)."""

    def __init__(self) -> None:
        self._dialogs: dict[tuple[str, str, str], SipDialog] = {}

    def __len__(self) -> int:
        return len(self._dialogs)

    def dialogs(self) -> list[SipDialog]:
        return list(self._dialogs.values())

    def add(self, dialog: SipDialog) -> SipDialog:
        self._dialogs[dialog.key] = dialog
        return dialog

    def remove(self, dialog: SipDialog) -> None:
        if self._dialogs.get(dialog.key) is dialog:
            del self._dialogs[dialog.key]

    def find(self, call_id: str, local_tag: str, remote_tag: str) -> SipDialog | None:
        return self._dialogs.get((call_id, local_tag, remote_tag))

    def by_id(self, did: str) -> list[SipDialog]:
        return [d for d in self._dialogs.values() if d.id == did]

    def match_request(self, request: SipRequest) -> SipDialog | None:
        """The dialog an incoming request belongs to: our tag is in To, theirs in From."""
        to_tag = request.to_tag
        if not to_tag:
            return None
        return self._dialogs.get((request.call_id, to_tag, request.from_tag or ""))

    def match_response(self, response: SipResponse) -> SipDialog | None:
        """The dialog a response to our request belongs to (our tag in From)."""
        to_tag = response.to_tag
        if not to_tag:
            return None
        return self._dialogs.get((response.call_id, response.from_tag or "", to_tag))

    def early_dialogs(self, call_id: str, local_tag: str) -> list[SipDialog]:
        """The early dialogs of one INVITE of ours (one per answering fork)."""
        return [d for d in self._dialogs.values()
                if d.call_id == call_id and d.local_tag == local_tag and d.state == EARLY]

    def needs_481(self, request: SipRequest) -> bool:
        """True for a mid-dialog request (To tag present) matching no dialog:
        answer ``481 Call/Transaction Does Not Exist`` (§12.2.2). ACK is never
        answered; CANCEL is matched by the transaction layer, not here."""
        if request.method in ("ACK", "CANCEL") or not request.to_tag:
            return False
        return self.match_request(request) is None
