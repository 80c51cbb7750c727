"""``hooks.*``: call the webhooks that decide (RegHook now; CallHook in the call flows).

A hook's answer becomes one event per kind of outcome, so the machine file,
not this code, says which SIP status each outcome gets.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from engine.actions._context import Ctx
from engine.actions._request import domain, requested_expires, valid_credentials
from engine.actions.sip import send_reply
from engine.config.matching import DialplanMatch
from engine.config.model import RegHookClient
from engine.fsm import Outcome, action, guard
from engine.hooks.callhook import CallHookFailed, wants_fallback
from engine.hooks.callscript import CallScriptError, callscript_summary, validate_callscript
from engine.hooks.payloads import callhook_body, reghook_body
from engine.hooks.reghook import Denied, Granted, HookFailed
from engine.hooks.templates import CallTemplateError, is_file_callhook
from engine.machine_vars import CallVars, DigestAuthVars
from engine.sip.builders import REASON_PHRASES, reason_phrase

REGHOOK_OUTCOMES = ("hook.granted", "hook.denied", "hook.http_error", "hook.timeout",
                    "hook.unreachable", "hook.invalid_reply", "hook.circuit_open")

_FAILURE_EVENTS = {
    "status": "hook.http_error",
    "timeout": "hook.timeout",
    "connect": "hook.unreachable",
    "closed": "hook.unreachable",
    "circuit_open": "hook.circuit_open",
}


def reghook_request(ctx: Ctx[DigestAuthVars]) -> dict[str, Any]:
    """The RegHook body (spec §2.2) with the fixes: realm = domain, expires = requested."""
    req = ctx.vars.req
    creds = valid_credentials(ctx)
    expires = requested_expires(ctx) if req.method == "REGISTER" else None
    return reghook_body(
        source_address=req.source.host, source_port=req.source.port, method=req.method,
        expires=expires, realm=domain(ctx), username=creds.username, nonce=creds.nonce,
        uri=creds.uri, response=creds.response, algorithm=creds.algorithm, qop=creds.qop,
        nc=creds.nc, cnonce=creds.cnonce, opaque=creds.opaque,
    )


@action(emits=REGHOOK_OUTCOMES, outcomes=REGHOOK_OUTCOMES)
async def reghook(ctx: Ctx[DigestAuthVars], p: object) -> None:
    """POST the digest data to the client's RegHook (then to its reghookFallback if the
    RegHook fails); the reply becomes hook.granted, hook.denied, hook.http_error,
    hook.timeout, hook.unreachable, hook.invalid_reply or hook.circuit_open (the URL's
    circuit breaker is open: nothing was sent)."""
    match = ctx.vars.client_match
    assert isinstance(match, RegHookClient)  # the machine checked config.client_has_reghook
    url, fallback = match.url, match.fallback
    body = reghook_request(ctx)
    caller = ctx.services.reghook

    async def call() -> Outcome:
        result = await caller.call(url, body, fallback=fallback)
        ctx.vars.hook_result = result
        if isinstance(result, Granted):
            ctx.vars.grant = result
            return Outcome("hook.granted")
        if isinstance(result, Denied):
            return Outcome("hook.denied")
        assert isinstance(result, HookFailed)
        return Outcome(_FAILURE_EVENTS.get(result.kind, "hook.invalid_reply"),
                       {"kind": result.kind, "status": result.status})

    ctx.start(call(), done="hook.granted", error="hook.invalid_reply")


@guard()
def blacklisted(ctx: Ctx[DigestAuthVars], p: object) -> bool:
    """The RegHook denied with ``blacklist: true``."""
    result = ctx.vars.hook_result
    return isinstance(result, Denied) and result.blacklist


def _sip_status(ctx: Ctx[object]) -> int | None:
    status = ctx.event.get("status")
    ok = isinstance(status, int) and 400 <= status <= 699 and status in REASON_PHRASES
    return status if ok else None


@guard()
def status_is_sip(ctx: Ctx[object], p: object) -> bool:
    """The hook's HTTP error status is also a defined SIP failure status (e.g. 404, 503;
    not 418)."""
    return _sip_status(ctx) is not None


@action()
async def relay_status(ctx: Ctx[DigestAuthVars], p: object) -> None:
    """Answer with the hook's HTTP status as the SIP status (compatible with the original)."""
    status = _sip_status(ctx) or 500
    if status == 401:
        # a 401 without a challenge would confuse every phone; it is a refusal
        status = 403
    await send_reply(ctx, status, reason_phrase(status),
                     why=f"RegHook answered HTTP {ctx.event.get('status')}")


# --------------------------------------------------------------------------- CallHook

# What happened to a CallHook request, as the machine sees it (it chooses the SIP status):
# the adapter's failure kinds (engine.hooks.callhook) grouped the way RegHook failures are.
CALLHOOK_FAILURES = {
    "timeout": "script.timeout",
    "connect": "script.unreachable",
    "closed": "script.unreachable",
    "status": "script.http_error",
    "circuit_open": "script.circuit_open",
    "json": "script.invalid_reply",
    "too_large": "script.invalid_reply",
    "error": "script.invalid_reply",
    "empty": "script.invalid",  # JSON null/false/0/"": no script (the original's check)
    "url": "script.bad_request",
    "payload": "script.bad_request",
}
CALLHOOK_OUTCOMES = ("script.ready", "script.timeout", "script.unreachable",
                     "script.http_error", "script.circuit_open", "script.invalid_reply",
                     "script.invalid", "script.bad_request")
# a transfer's CallHook is found by a dialplan lookup, which may find nothing
SCRIPT_OUTCOMES = (*CALLHOOK_OUTCOMES, "script.no_route")


def callhook_request(ctx: Ctx[CallVars]) -> dict[str, Any]:
    """The CallHook body (spec §5.1): ``source`` for a trunk is only ``{id, name}`` (S-4);
    the caller's digest credentials are not passed on. ``refer`` is ``false`` on every
    ordinary fetch, as the original sends it (webhook apps test ``body.refer === false``)."""
    req = ctx.vars.req
    msg = req.message
    trunk = ctx.vars.trunk
    headers = [(n, v) for n, v in msg.headers
               if n.lower() not in ("authorization", "proxy-authorization")]
    return callhook_body(
        domain=domain(ctx), from_user=msg.from_.uri.user, to_user=ctx.vars.dialled,
        call_id=req.call_id, source_address=req.source.host, headers=headers,
        source="client" if trunk is None else trunk.public_view(),
        refer=False, count=ctx.vars.count,
    )


Route = DialplanMatch | None | Callable[[], Awaitable[DialplanMatch | None]]


def fetch_callscript(ctx: Ctx[object], body: dict[str, Any], route: Route) -> None:
    """Start fetching a CallScript for ``body``: ``route`` is the DialplanMatch (or an async
    function returning it) naming the CallHook. Ends with script.ready, one event per kind
    of failure (``CALLHOOK_FAILURES``; script.invalid for a reply or file template that is
    no valid CallScript), or script.no_route when ``route`` finds no dialplan entry."""
    services = ctx.services

    async def fetch() -> Outcome:
        match = await route() if callable(route) else route
        if match is None:
            return Outcome("script.no_route", {"why": "no dialplan match"})
        outcome = await script_from(match.call_hook)
        fallback = match.call_hook_fallback
        failure = outcome.data or {}
        if (outcome.event != "script.ready" and fallback and fallback != match.call_hook
                and failure.get("try_fallback", True)):
            # Twilio's fallbackUrl: the same request to the entry's other URL (a different
            # URL, so nothing is sent twice to one server); its answer is used.
            ctx.log.info("callhook fallback", call_id=body["callId"], why=failure.get("why"))
            outcome = await script_from(fallback)
        if outcome.event == "script.ready":
            ctx.log.debug("callscript", call_id=body["callId"], count=body.get("count"),
                          refer=body.get("refer"),
                          script=callscript_summary((outcome.data or {})["script"]))
        return outcome

    async def script_from(url: str) -> Outcome:
        if is_file_callhook(url):
            try:
                value = services.templates.render(url, body)
            except CallTemplateError as exc:
                return Outcome("script.invalid", {"why": str(exc), "error": exc})
        else:
            result = await services.callhook.fetch(url, body)
            if isinstance(result, CallHookFailed):
                event = CALLHOOK_FAILURES.get(result.kind, "script.invalid_reply")
                return Outcome(event, {"why": f"CallHook {result.kind}: {result.message}"[:200],
                                       "error": {"name": "CallHookError",
                                                 "status": result.status,
                                                 "message": result.message},
                                       "try_fallback": wants_fallback(result)})
            value = result.value
        try:
            script = validate_callscript(value)
        except CallScriptError as exc:
            return Outcome("script.invalid", {"why": f"invalid CallScript: {exc}"[:200],
                                              "error": exc})
        return Outcome("script.ready", {"script": script})

    ctx.start(fetch(), done="script.invalid_reply", error="script.invalid")


@action(emits=CALLHOOK_OUTCOMES, outcomes=CALLHOOK_OUTCOMES)
async def callhook(ctx: Ctx[CallVars], p: object) -> None:
    """Fetch the CallScript: POST the CallHook (bounded by CALLHOOK_TIMEOUT) or render its
    ``file:`` template, then validate it → script.ready, or what went wrong:
    script.timeout, script.unreachable, script.http_error, script.circuit_open,
    script.invalid_reply (not JSON), script.invalid (no valid CallScript, D-13) or
    script.bad_request (no http(s) URL). The machine chooses the SIP status."""
    fetch_callscript(ctx, callhook_request(ctx), ctx.vars.route)


@dataclass(frozen=True)
class ScriptFailure:
    status: int
    reason: str


@action(params=ScriptFailure)
async def reply_script_failure(ctx: Ctx[CallVars], p: ScriptFailure) -> None:
    """Reject the call because no usable CallScript came back; X-Reason names the cause."""
    await send_reply(ctx, p.status, p.reason, why=ctx.event.get("why") or "CallHook failed")
