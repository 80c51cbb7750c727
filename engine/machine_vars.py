"""The instance variables of each shipped machine, one dataclass per machine.

``@machine_vars("<machine>")`` tells the runtime which dataclass an instance of that
machine keeps its variables in (``ctx.vars``); actions say which they work on by
their context annotation (``ctx: Ctx[RegistrationVars]``), and the loader refuses
a machine that uses an action whose variables it does not have (E014). The classes
use ``slots``: a variable that is not declared here cannot be created by a typo.

State a parent and a child share is passed explicitly: the child's dataclass has a
field the parent fills in at the spawn (``vars={...}``), and what the child finds
out goes back in its ``done`` event's data (``ctx.result``), never by writing into
the parent's variables.

The families:

* ``RequestVars``: a machine that handles one incoming request (its ``req``, the
  domain it is for, its digest credentials, the final response sent for the summary
  line) — ``digest_auth`` directly; ``registration`` and ``inbound_call`` through
  ``AuthenticatedVars`` (they spawn ``digest_auth`` and keep what it granted).
* ``TrunkRegistrationVars``: one outbound registration of ours to a carrier.
* ``CallVars`` and the verbs', legs' and relays' variables: one call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from engine.fsm.registry import machine_vars

if TYPE_CHECKING:  # names for annotations only; the actions import this module
    import asyncio

    from engine.actions.leg import LegSpec
    from engine.actions.media import MediaSession
    from engine.actions.reg import Grant
    from engine.config.matching import DialplanMatch
    from engine.config.model import RegHookResult as ClientMatch
    from engine.config.model import RegistrationTarget, Trunk
    from engine.fsm.runtime import Instance
    from engine.hooks.callscript import (
        AnnounceVerb,
        CallScript,
        ConnectVerb,
        PauseVerb,
        ResponseVerb,
    )
    from engine.hooks.reghook import Granted
    from engine.hooks.reghook import RegHookResult as HookResult
    from engine.ports import Binding, ClientLeg, Dialog, IncomingRequest, SipResponseView
    from engine.sip.digest import DigestCredentials, DigestOutcome


class Malformed:
    """``RequestVars.creds`` when the Authorization header cannot be parsed."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MALFORMED"


MALFORMED = Malformed()


@dataclass(slots=True, kw_only=True)
class RequestVars:
    """Variables of a machine handling one incoming request."""

    req: IncomingRequest
    # the Request-URI host (``_request.domain``), or the domain a trunk's reg-id names
    domain: str | None = None
    # the digest credentials, parsed once (``_request.credentials``); None: none sent
    creds: DigestCredentials | Malformed | None = None
    creds_parsed: bool = False
    # the expiry the REGISTER asks for, read once (``_request.requested_expires``)
    requested_expires: int | None = None
    expires_read: bool = False
    # the final response this instance sent, for its summary line (``sip.send_reply``)
    reply_status: int | None = None
    reply_why: str | None = None
    reply_challenge: bool = False


@machine_vars("digest_auth")
@dataclass(slots=True, kw_only=True)
class DigestAuthVars(RequestVars):
    """``digest_auth``: the spawn passes ``req``, ``domain``, ``proxy`` and ``trunks``
    (``auth.digest_auth_vars``); the rest is what it finds out, reported to the parent
    by ``auth.report`` in its result."""

    proxy: bool = False  # 407/Proxy-Authorization instead of 401/Authorization
    trunks: bool = False  # try the domain's auth trunks (calls only)
    nonce_outcome: DigestOutcome | None = None  # the password-free checks, once
    stale: bool = False  # the next challenge says stale=true
    client_match: ClientMatch | None = None  # the config's client for the From user
    hook_result: HookResult | None = None  # the RegHook's answer
    grant: Grant | Granted | None = None  # what authentication allowed
    auth_trunks: tuple[Trunk, ...] = ()  # trunks whose authUser is the digest username
    candidate_trunk: Trunk | None = None  # the auth trunk whose password verified
    granted_trunk: Trunk | None = None  # ... once granted


@dataclass(slots=True, kw_only=True)
class AuthenticatedVars(RequestVars):
    """A machine that runs ``digest_auth`` for its request (``auth.authenticate``) and
    keeps the grant and the verified trunk from its result."""

    grant: Grant | Granted | None = None
    candidate_trunk: Trunk | None = None


@machine_vars("registration")
@dataclass(slots=True, kw_only=True)
class RegistrationVars(AuthenticatedVars):
    """``registration``: one REGISTER (the dispatcher passes ``req``)."""

    binding: tuple[str, int] | None = None  # (contact, expires) saved or found
    removed: bool = False  # the binding was removed (Expires: 0 / Contact: *)


@machine_vars("inbound_call")
@dataclass(slots=True, kw_only=True)
class CallVars(AuthenticatedVars):
    """``inbound_call``, the session of one call (the dispatcher passes ``req``): who is
    calling and where to, the CallScript and the verb running it. What its verbs share
    with it is ``call`` (created when the first verb starts), never these variables."""

    # where the call comes from and goes to
    trunk: Trunk | None = None  # the carrier trunk it came from (trunk.use_*)
    trunk_match: str | None = None  # how that trunk was recognised: cidr, reg-id, digest
    reg_id: str | None = None  # the Request-URI's reg-id parameter
    caller_binding: Binding | None = None  # the calling client's registration
    dialled: str | None = None  # the number routed
    route: DialplanMatch | None = None  # the dialplan entry it matched (CallHook, StatusHook)
    call_recorded: bool = False  # the live-call record was written
    # the CallScript and its verbs
    script: CallScript | None = None
    verb_index: int = 0
    current_verb: Instance | None = None
    count: int = 0  # CallHook retries so far
    caller_gone: bool = False  # CANCEL/BYE from the caller, or a verb ended the call
    call: CallShared | None = None  # shared with the verbs, their legs and relays


@dataclass(slots=True, kw_only=True)
class CallShared:
    """What the instances of one call share, passed explicitly: ``session.start_verb``
    creates it (the routing facts are final by then) and gives it to each verb at the
    spawn (``call``); a connect verb gives it to its legs and relays. The first fields
    are fixed; the others record the caller's (A) leg and are written by the instance
    that changes it (answers, bridges, offers media)."""

    session: Instance  # the inbound_call instance: a.* requests and media.lost go there
    req: IncomingRequest  # the caller's INVITE
    domain: str
    route: DialplanMatch | None
    trunk: Trunk | None  # with caller_binding: the caller's codecs and dialplan
    caller_binding: Binding | None
    a_dialog: Dialog | None = None  # the caller's dialog, once answered
    media: MediaSession | None = None  # RTPEngine state of the call, once used
    connected_before: bool = False  # a connect verb bridged the caller already
    transferring: bool = False  # a REFER's new script runs: its connect re-INVITEs
    leg_call_ids: list[str] = field(default_factory=list)  # every B leg's Call-ID


class OnCall(Protocol):
    """The variables of any instance acting in a call for the session (a verb, a call leg,
    a relay): the call's shared record it was given."""

    call: CallShared


@dataclass(slots=True, kw_only=True)
class VerbVars:
    """A verb machine (machines/verbs/*.yaml): the call it acts in, and (in each verb's
    own class) its CallScript verb; both given by ``session.start_verb``. A verb ends
    with its result for the session (``caller_gone``; a transfer's ``script``)."""

    call: CallShared


@machine_vars("verb_pause")
@dataclass(slots=True, kw_only=True)
class PauseVars(VerbVars):
    verb: PauseVerb


@machine_vars("verb_response")
@dataclass(slots=True, kw_only=True)
class ResponseVars(VerbVars):
    verb: ResponseVerb


@machine_vars("verb_announce")
@dataclass(slots=True, kw_only=True)
class AnnounceVars(VerbVars):
    verb: AnnounceVerb
    media_file: str | None = None  # the announcement as RTPEngine reads it
    duration_ms: int | None = None  # how long it plays, as RTPEngine reports


@machine_vars("verb_connect")
@dataclass(slots=True, kw_only=True)
class ConnectVars(VerbVars):
    """``verb_connect``: ring the destinations, bridge the first that answers."""

    verb: ConnectVerb
    specs: list[LegSpec] = field(default_factory=list)  # the resolved destinations
    legs: dict[int, Instance] = field(default_factory=dict)  # call_leg per spec index
    winner: int | None = None  # the index of the leg that answered
    ringback_task: asyncio.Task[None] | None = None
    ringback_on: bool = False
    caller_ack: IncomingRequest | None = None  # a late-offer caller's ACK (its answer)
    media_lost: dict[str, Any] | None = None  # the media.lost being repaired
    refer_req: IncomingRequest | None = None  # a transfer's REFER
    refer_target: str | None = None  # ... and the number it transfers to


@machine_vars("call_leg")
@dataclass(slots=True, kw_only=True)
class LegVars:
    """``call_leg``: one destination rung by a connect verb (spawned with ``call``, the
    ``verb``, the resolved ``spec`` and its RTPEngine ``branch``)."""

    call: CallShared
    verb: ConnectVerb
    spec: LegSpec
    index: int
    dest_text: str  # what StatusHook events call it
    branch: str
    offer_sdp: bytes | None = None  # what RTPEngine offers the callee
    client_leg: ClientLeg | None = None  # the INVITE in progress
    dialog: Dialog | None = None  # once answered
    leg_call_id: str | None = None


@machine_vars("reinvite_relay")
@dataclass(slots=True, kw_only=True)
class RelayVars:
    """``reinvite_relay``: one re-INVITE/UPDATE relayed across the bridge (spawned with
    ``call``, the request, whether the B side sent it, and the winning ``leg``)."""

    call: CallShared
    req: IncomingRequest
    from_b: bool
    leg: Instance | None
    offered: bool = False  # relay.offer ran: relay_sdp is RTPEngine's (None: nothing)
    relay_sdp: bytes | None = None
    other_answer: bytes | None = None  # the other side's answer
    reply_sdp: bytes | None = None  # the answer for the sender, through RTPEngine


@machine_vars("trunk_registration")
@dataclass(slots=True, kw_only=True)
class TrunkRegistrationVars:
    """``trunk_registration``: our registration to one carrier (spawned by
    ``engine.trunks.TrunkRegistrations`` with the trunk, its domain and target, and the
    identity kept across refreshes)."""

    trunk: Trunk
    domain: str
    target: RegistrationTarget  # host, username, password
    reg_id: str  # the reg-id parameter of our Contact: names this trunk in calls to us
    call_id: str  # one Call-ID for every REGISTER of this registration
    from_tag: str
    transport: str = "udp"
    cseq: int = 0
    requested_expires: int = 0  # what the last REGISTER asked for
    challenge: SipResponseView | None = None  # the last 401/407
    answered_nonces: set[str] = field(default_factory=set)  # never answer one twice (D-20)
    last_response: SipResponseView | None = None  # the last 2xx
    granted: int = 0  # the registrar's grant, seconds
    failures: int = 0
    backoff: float = 0.0  # the next retry's delay
    lease_held: bool = False  # this engine holds the trunk's lease (engine/lease.py)
    lease_renewed: float = 0.0
    status: dict[str, Any] = field(default_factory=dict)  # what the API shows


__all__ = ["MALFORMED", "AnnounceVars", "AuthenticatedVars", "CallShared", "CallVars",
           "ConnectVars", "DigestAuthVars", "LegVars", "Malformed", "OnCall", "PauseVars",
           "RegistrationVars", "RelayVars", "RequestVars", "ResponseVars",
           "TrunkRegistrationVars", "VerbVars", "machine_vars"]
