"""The HTTP API's handlers, each declared with its OpenAPI description (``@route``).

Lists are ``{"items": [...], "next": cursor-or-null}``; errors are
``{"error": {"code", "message"}}``. Handlers only read what the components
already keep (runtime, health, trunk manager, machine library) and post events
to machines; the one write — hanging up a call — is a transition in
machines/inbound_call.yaml (``api.hangup``), so it stays visible in the flow.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from engine import __version__
from engine.api.calls import CallBook, call_view
from engine.api.events import HANGUP_EVENT
from engine.api.metrics import Metrics
from engine.api.openapi import JSON, Param, Response, build_document, page_of, ref, route
from engine.errors import ConfigError, DefinitionError, StoreError

MAX_LIMIT = 1000
SCAN_STEPS = 50  # SCAN round trips one registrations page may take


@dataclass
class ApiContext:
    """What the handlers read: the daemon's services, its App and the call book."""

    services: Any
    calls: CallBook
    metrics: Metrics | None
    app: Any = None
    machine_loads: dict[str, tuple[str, float]] = field(default_factory=dict)


CTX: web.AppKey[ApiContext] = web.AppKey("ctx", ApiContext)


def ctx_of(request: web.Request) -> ApiContext:
    return request.app[CTX]


def error(status: int, code: str, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message, **extra}},
                              status=status)


def _limit(request: web.Request, default: int = 100) -> int:
    raw = request.query.get("limit", str(default))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise web.HTTPBadRequest(text=f"limit must be an integer from 1 to {MAX_LIMIT}")
    return int(raw)


def _offset(request: web.Request) -> int:
    raw = request.query.get("cursor") or "0"
    if not raw.isdigit():
        raise web.HTTPBadRequest(text="cursor must be the 'next' of a previous page")
    return int(raw)


def _page(items: list[Any], offset: int, limit: int) -> dict[str, Any]:
    chunk = items[offset: offset + limit]
    nxt = str(offset + limit) if offset + limit < len(items) else None
    return {"items": chunk, "next": nxt}


_LIMIT = Param("limit", "query", f"page size (1-{MAX_LIMIT}, default 100)",
               {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT})
_CURSOR = Param("cursor", "query", "the `next` of the previous page")
_CALL_ID = Param("call_id", "path", "the A leg's SIP Call-ID")
_BAD = Response("bad query parameter", ref("Error"))


# ---------------------------------------------------------------------- health


@route("GET", "/health", "liveness: the process serves HTTP", auth=False,
       responses={200: Response("alive", ref("Health"))})
async def health(request: web.Request) -> web.Response:
    """Always 200 while the process runs (for a supervisor's liveness probe)."""
    return web.json_response({"status": "ok", "version": __version__})


@route("GET", "/ready", "readiness: 503 naming the cause while draining or a dependency "
       "is down", auth=False,
       responses={200: Response("serving", ref("Ready")),
                  503: Response("not serving (draining, redis/rtpengine/sip unavailable)",
                                ref("Ready"))})
async def ready(request: web.Request) -> web.Response:
    """The same verdict OPTIONS gives SIP load balancers (engine/health.py)."""
    health = ctx_of(request).services.health
    problems = health.problems()
    now = time.monotonic()
    deps = {name: {"up": s["up"], "reason": s["reason"],
                   "for_secs": round(now - float(s["since"]), 1)}
            for name, s in health.snapshot().items()}
    body = {"ready": not problems, "problems": problems, "dependencies": deps}
    return web.json_response(body, status=503 if problems else 200)


@route("GET", "/metrics", "Prometheus metrics", auth=False,
       responses={200: Response("text exposition format", None, "text/plain")})
async def metrics(request: web.Request) -> web.Response:
    """Counters, histograms and gauges named dragonpbx_* (see the README)."""
    m = ctx_of(request).metrics
    if m is None:
        return error(404, "not_found", "metrics are off")
    resp = web.Response(body=m.exposition())
    resp.headers["Content-Type"] = m.content_type
    return resp


@route("GET", "/api/v1/openapi.json", "this document",
       responses={200: Response("OpenAPI 3.1 document", {"type": "object"})})
async def openapi(request: web.Request) -> web.Response:
    """Built from the route table that also mounts the handlers."""
    return web.json_response(build_document())


# ---------------------------------------------------------------------- calls


@route("GET", "/api/v1/calls", "live calls (and recently ended ones)",
       params=(Param("status", "query", "live (default), ended or all",
                     {"enum": ["live", "ended", "all"]}), _LIMIT, _CURSOR),
       responses={200: Response("calls, oldest live first, then ended newest first",
                                page_of("Call")), 400: _BAD})
async def list_calls(request: web.Request) -> web.Response:
    """Each call with its machine instances (machine, version, state) and legs."""
    book = ctx_of(request).calls
    which = request.query.get("status", "live")
    if which not in ("live", "ended", "all"):
        raise web.HTTPBadRequest(text="status must be live, ended or all")
    items: list[dict[str, Any]] = []
    if which in ("live", "all"):
        items += [call_view(root, insts, None) for root, insts in book.live_calls()]
    if which in ("ended", "all"):
        items += [call_view(e.root, e.instances, e) for e in book.ended_calls()]
    return web.json_response(_page(items, _offset(request), _limit(request)))


_NO_CALL = Response("no live or recently ended call with this Call-ID", ref("Error"))


def _find(request: web.Request) -> Any:
    found = ctx_of(request).calls.find(request.match_info["call_id"])
    if found is None:
        raise _NotFound(f"no call {request.match_info['call_id']!r} (live or recently ended)")
    return found


class _NotFound(Exception):
    pass


@route("GET", "/api/v1/calls/{call_id}", "one call with every instance's trace",
       params=(_CALL_ID,),
       responses={200: Response("the call", ref("Call")), 404: _NO_CALL})
async def get_call(request: web.Request) -> web.Response:
    """The call as listed, plus each machine instance's trace (states, events, guards,
    actions and their outcomes)."""
    try:
        root, insts, ended = _find(request)
    except _NotFound as exc:
        return error(404, "not_found", str(exc))
    return web.json_response(call_view(root, insts, ended, trace=True))


@route("GET", "/api/v1/calls/{call_id}/diagram.svg",
       "the call's machine drawn with the path taken so far highlighted",
       params=(_CALL_ID, Param("instance", "query", "id of another instance of the call "
                                                    "(default: the inbound_call instance)")),
       responses={200: Response("SVG (graphviz)", None, "image/svg+xml"), 404: _NO_CALL})
async def call_diagram(request: web.Request) -> web.Response:
    """Rendered like `dragonpbx render --trace`: visited states filled, taken edges bold."""
    from engine.fsm.render import to_graph

    try:
        root, insts, _ = _find(request)
    except _NotFound as exc:
        return error(404, "not_found", str(exc))
    wanted = request.query.get("instance", root.id)
    inst = next((i for i in insts if i.id == wanted), None)
    if inst is None:
        return error(404, "not_found", f"the call has no instance {wanted!r}")
    graph = to_graph(inst.machine.defn, path=inst.trace.path())
    svg = await asyncio.to_thread(graph.pipe, format="svg")
    return web.Response(body=svg, content_type="image/svg+xml")


@route("DELETE", "/api/v1/calls/{call_id}", "hang up a live call",
       params=(_CALL_ID,),
       responses={202: Response("api.hangup posted to the call's machine", ref("Hangup")),
                  404: _NO_CALL,
                  409: Response("ended, or in a state that does not handle api.hangup",
                                ref("Error"))})
async def hangup_call(request: web.Request) -> web.Response:
    """Posts `api.hangup` to the inbound_call instance; machines/inbound_call.yaml decides
    what that does (BYE/CANCEL both sides, StatusHook event, clean-up)."""
    try:
        root, _, ended = _find(request)
    except _NotFound as exc:
        return error(404, "not_found", str(exc))
    if ended is not None or root.done:
        return error(409, "ended", "the call has already ended")
    if HANGUP_EVENT not in root.machine.handled[root.state]:
        return error(409, "not_now", f"the call is in state {root.state!r} of "
                     f"{root.machine.label}, which does not handle {HANGUP_EVENT}")
    root.post(HANGUP_EVENT, {"by": "api"})
    return web.json_response({"call_id": request.match_info["call_id"],
                              "instance": root.id, "state": root.state}, status=202)


# ---------------------------------------------------------------------- registrations


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


@route("GET", "/api/v1/registrations", "registered users, from Redis (SCAN)",
       params=(Param("domain", "query", "only this domain"),
               Param("user", "query", "only this user"), _LIMIT, _CURSOR),
       responses={200: Response("bindings; a page may hold fewer than limit items while "
                                "`next` is not null", page_of("Registration")),
                  400: _BAD, 503: Response("Redis unavailable", ref("Error"))})
async def list_registrations(request: web.Request) -> web.Response:
    """Every `client:{domain}:{user}` binding: contact, transport, granted expiry and the
    seconds left."""
    store = ctx_of(request).services.store
    domain = request.query.get("domain") or None
    user = request.query.get("user") or None
    limit = _limit(request)
    cursor = request.query.get("cursor") or "0"
    if not cursor.isdigit():
        raise web.HTTPBadRequest(text="cursor must be the 'next' of a previous page")
    match = (f"client:{_glob_escape(domain) if domain else '*'}:"
             f"{_glob_escape(user) if user else '*'}")
    keys: list[str] = []
    try:
        for _ in range(SCAN_STEPS):
            cursor, found = await store.scan(cursor, match, limit)
            keys += found
            if cursor == "0" or len(keys) >= limit:
                break
        items = await asyncio.gather(*(_binding(store, k) for k in keys))
    except StoreError as exc:
        return error(503, "redis_unavailable", str(exc))
    return web.json_response({"items": [i for i in items if i is not None],
                              "next": None if cursor == "0" else cursor})


async def _binding(store: Any, key: str) -> dict[str, Any] | None:
    _, dom, usr = key.split(":", 2)
    found = await store.get_binding(domain=dom, user=usr)
    if found is None:  # expired between SCAN and the read
        return None
    b, ttl = found
    return {"domain": dom, "user": usr, "contact": b.contact, "transport": b.transport,
            "expires": b.expires, "ttl": ttl, "user_agent": b.user_agent, "proxy": b.proxy,
            "flow": b.flow}



# ---------------------------------------------------------------------- trunks


@route("GET", "/api/v1/trunks", "configured trunks and their registration state",
       params=(_LIMIT, _CURSOR),
       responses={200: Response("trunks", page_of("Trunk")), 400: _BAD})
async def list_trunks(request: web.Request) -> web.Response:
    """Per trunk: id, name, auth type; for registration trunks what this instance's
    trunk_registration machine reports (state, last status, last error, next refresh)
    and the owner recorded in Redis."""
    services = ctx_of(request).services
    snapshot = services.config.snapshot
    running = getattr(services.trunks, "running", {})
    items: list[dict[str, Any]] = []
    for domain in snapshot.list_domains():
        dom = snapshot.domain(domain)
        for trunk in getattr(dom, "trunks", ()):
            reg = running.get((domain, str(trunk.id)))
            items.append({"domain": domain, "id": trunk.id, "name": trunk.display_name,
                          "auth_type": trunk.auth_type,
                          "registration": await _trunk_registration(services, domain, reg)})
    return web.json_response(_page(items, _offset(request), _limit(request)))


async def _trunk_registration(services: Any, domain: str, reg: Any) -> dict[str, Any] | None:
    if reg is None:
        return None
    _, inst = reg
    v = inst.vars
    status = dict(v.status)
    last = getattr(v, "last_response", None)
    since, expires = status.get("since"), status.get("expires")
    next_refresh = (since + max(1.0, expires / 2)
                    if status.get("state") == "registered" and since and expires else None)
    owner: str | None = None
    try:
        stored = await services.store.get_regtrunk(domain=domain, reg_id=v.reg_id)
        owner = (stored or {}).get("owner")
    except StoreError:
        owner = None
    return {"state": status.get("state", "unknown"), "machine_state": inst.state,
            "registrar": status.get("registrar", ""), "reg_id": v.reg_id,
            "last_status": getattr(last, "status", None),
            "last_error": status.get("last_error"), "expires": expires, "since": since,
            "next_refresh": next_refresh, "next_retry": status.get("next_retry"),
            "failures": int(status.get("failures", getattr(v, "failures", 0))),
            "owner": owner}


# ---------------------------------------------------------------------- machines


@route("GET", "/api/v1/machines", "loaded machines",
       responses={200: Response("machines", page_of("Machine"))})
async def list_machines(request: web.Request) -> web.Response:
    """The current version of every machine (new instances use it; running ones keep
    theirs), its content hash, file and when this version was loaded."""
    ctx = ctx_of(request)
    runtime = ctx.services.runtime
    live: dict[str, int] = {}
    for inst in list(runtime.live.values()):
        live[inst.machine.name] = live.get(inst.machine.name, 0) + 1
    items = []
    for name in runtime.library.names():
        m = runtime.library.get(name)
        _, loaded = ctx.machine_loads.get(name, (m.version, 0.0))
        items.append({"machine": name, "version": m.version,
                      "content_hash": m.version.rpartition("+")[2], "file": m.defn.file,
                      "loaded_at": loaded, "live_instances": live.get(name, 0)})
    return web.json_response({"items": items, "next": None})


@route("POST", "/api/v1/reload", "reload configuration and machines (as SIGHUP)",
       responses={200: Response("reloaded; the machine versions now in use", ref("Reloaded")),
                  422: Response("refused: the diagnostics; the previous versions stay",
                                ref("Error"))})
async def reload(request: web.Request) -> web.Response:
    """Runs the daemon's reload. A machine or configuration error refuses the whole
    reload, as SIGHUP does, and is answered 422 with every diagnostic."""
    ctx = ctx_of(request)
    failures = await ctx.app.reload()
    if failures:
        diags: list[str] = []
        for exc in failures:
            if isinstance(exc, (DefinitionError, ConfigError)) and exc.diagnostics:
                diags += [str(d) for d in exc.diagnostics]
            else:
                diags.append(str(exc))
        return error(422, "reload_refused", "reload refused; the previous versions stay",
                     diagnostics=diags)
    return web.json_response({"machines": ctx.services.runtime.library.versions()})


__all__ = ["CTX", "JSON", "ApiContext", "error"]
