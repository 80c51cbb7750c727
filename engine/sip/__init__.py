"""The pure SIP core of the embedded backend (no sockets, no asyncio).

Modules, by responsibility:

* ``message``     — parse/serialise requests and responses, lazy header access
* ``headers``     — header names and compact forms, list splitting, params, Via, CSeq
* ``uri``         — sip/sips/tel URIs and name-addr values
* ``builders``    — make_request / make_response, tags/branches/Call-IDs
* ``framer``      — TCP stream framing (Content-Length, keep-alives)
* ``errors``      — SipParseError (a ProtocolError) with the reply context
* ``digest``      — digest auth: server challenges/verification, client answers
* ``effects``     — the effect/event types the endpoint core returns; TimerQueue
* ``transaction`` — client/server transaction state machines (RFC 3261 §17, RFC 6026)
* ``endpoint``    — EndpointCore: matching, Via stamping, CANCEL, 2xx/ACK handling
* ``dialog``      — dialog state, in-dialog request construction, DialogTable
* ``sdp``         — lenient SDP helpers (codecs, direction/hold, telephone-event)

The names below are the public surface; import from the modules for the rest.
"""

from engine.sip.builders import IdGenerator, make_request, make_response, reason_phrase
from engine.sip.dialog import DialogTable, SipDialog, next_hop
from engine.sip.digest import (
    DigestAuthenticator,
    DigestClient,
    DigestCredentials,
    DigestOutcome,
    LocalNonceCounter,
    NonceCounter,
    StoreNonceCounter,
    find_credentials,
    parse_credentials,
)
from engine.sip.effects import (
    AckTimeout,
    CancelReceived,
    CancelTimer,
    Effect,
    MessageRejected,
    RequestReceived,
    ResponseReceived,
    Send,
    StartTimer,
    TimerConfig,
    TimerQueue,
    TransactionTerminated,
    TransactionTimeout,
    TransportFailure,
)
from engine.sip.endpoint import EndpointCore
from engine.sip.errors import SipParseError, TransactionStateError
from engine.sip.framer import FramedMessage, FramingError, KeepAlive, StreamFramer
from engine.sip.message import SipMessage, SipRequest, SipResponse
from engine.sip.parser import parse_message
from engine.sip.uri import NameAddr, SipUri, parse_name_addr, parse_uri

__all__ = [
    "AckTimeout", "CancelReceived", "CancelTimer", "DialogTable", "DigestAuthenticator",
    "DigestClient", "DigestCredentials", "DigestOutcome", "Effect", "EndpointCore",
    "FramedMessage", "FramingError", "IdGenerator", "KeepAlive", "LocalNonceCounter",
    "MessageRejected", "NameAddr", "NonceCounter", "RequestReceived", "ResponseReceived",
    "Send", "SipDialog", "SipMessage", "SipParseError", "SipRequest", "SipResponse", "SipUri",
    "StartTimer", "StoreNonceCounter", "StreamFramer", "TimerConfig", "TimerQueue",
    "TransactionStateError", "TransactionTerminated", "TransactionTimeout", "TransportFailure",
    "find_credentials", "make_request", "make_response", "next_hop", "parse_credentials",
    "parse_message", "parse_name_addr", "parse_uri", "reason_phrase",
]
