"""The OpenAPI 3.1 document, built from the route table.

Every handler is declared with ``@route(...)`` next to its code (engine/api/routes.py):
method, path, summary, query parameters and the schema of each response. The
same table mounts the handlers on the server and produces
``/api/v1/openapi.json``, so the document cannot drift from the code; the tests
validate the document against the OpenAPI 3.1 meta-schema and every response
the tests receive against the schema the document gives for it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from engine import __version__

JSON = "application/json"
Handler = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class Response:
    description: str
    schema: dict[str, Any] | None = None
    content_type: str = JSON


@dataclass(frozen=True)
class Param:
    name: str
    where: str  # "query" | "path"
    description: str
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})
    required: bool = False


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    summary: str
    handler: Handler
    responses: dict[int, Response]
    params: tuple[Param, ...] = ()
    auth: bool = True
    operation_id: str = ""


ROUTES: list[Route] = []


def route(method: str, path: str, summary: str, *, responses: dict[int, Response],
          params: tuple[Param, ...] = (), auth: bool = True) -> Callable[[Handler], Handler]:
    """Declare a handler: it is mounted at ``path`` and described in the document.
    Routes needing the token answer 401 (``Error``) without it; that is added here."""

    def register(handler: Handler) -> Handler:
        all_responses = dict(responses)
        if auth:
            all_responses.setdefault(401, Response("missing or wrong bearer token",
                                                   ref("Error")))
        ROUTES.append(Route(method, path, summary, handler, all_responses, params, auth,
                            handler.__name__))
        return handler

    return register


def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def page_of(name: str) -> dict[str, Any]:
    """``{"items": [...], "next": cursor-or-null}``."""
    return {"type": "object", "required": ["items", "next"], "additionalProperties": False,
            "properties": {"items": {"type": "array", "items": ref(name)},
                           "next": {"type": ["string", "null"],
                                    "description": "pass as ?cursor= for the next page; "
                                                   "null on the last page"}}}


_STR_OR_NULL: dict[str, Any] = {"type": ["string", "null"]}
_NUM_OR_NULL: dict[str, Any] = {"type": ["number", "null"]}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object", "required": ["error"], "additionalProperties": False,
        "properties": {"error": {
            "type": "object", "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                           "diagnostics": {"type": "array", "items": {"type": "string"}}}}},
    },
    "TraceEntry": {
        "type": "object", "required": ["time", "from", "to", "event", "duration_us"],
        "properties": {
            "time": {"type": "number"}, "from": {"type": "string"}, "to": {"type": "string"},
            "event": {"type": "string"}, "duration_us": {"type": "number"},
            "machine": {"type": "string"},
            "guards": {"type": "array", "items": {
                "type": "object", "required": ["guard", "result"],
                "properties": {"guard": {"type": "string"}, "result": {"type": "boolean"}}}},
            "actions": {"type": "array", "items": {
                "type": "object", "required": ["action", "outcome"],
                "properties": {"action": {"type": "string"}, "outcome": {"type": "string"}}}},
            "note": {"type": "string"},
        },
    },
    "Instance": {
        "type": "object", "required": ["id", "machine", "version", "state", "status", "parent"],
        "properties": {
            "id": {"type": "string"}, "machine": {"type": "string"},
            "version": {"type": "string"}, "state": {"type": "string"},
            "status": {"enum": ["running", "done", "failed", "killed"]},
            "parent": _STR_OR_NULL,
            "trace": {"type": "array", "items": ref("TraceEntry")},
            "trace_dropped": {"type": "integer", "minimum": 0},
        },
    },
    "Leg": {
        "type": "object", "required": ["role", "instance", "state", "status"],
        "properties": {"role": {"enum": ["A", "B"]}, "instance": {"type": "string"},
                       "state": {"type": "string"}, "status": {"type": "string"},
                       "destination": _STR_OR_NULL, "call_id": _STR_OR_NULL},
    },
    "Call": {
        "type": "object",
        "required": ["call_id", "domain", "from", "to", "started", "live", "ended", "outcome",
                     "instances", "legs"],
        "properties": {
            "call_id": _STR_OR_NULL, "domain": _STR_OR_NULL, "from": _STR_OR_NULL,
            "to": _STR_OR_NULL,
            "started": {"type": "number", "description": "Unix time"},
            "live": {"type": "boolean"},
            "ended": {**_NUM_OR_NULL, "description": "Unix time; null while live"},
            "outcome": {**_STR_OR_NULL, "description": "final state (status) once ended"},
            "instances": {"type": "array", "items": ref("Instance")},
            "legs": {"type": "array", "items": ref("Leg")},
        },
    },
    "Registration": {
        "type": "object", "required": ["domain", "user", "contact", "transport", "expires",
                                       "ttl"],
        "properties": {"domain": {"type": "string"}, "user": {"type": "string"},
                       "contact": {"type": "string"}, "transport": {"type": "string"},
                       "expires": {"type": "integer", "description": "granted seconds"},
                       "ttl": {"type": "integer", "description": "seconds left (-1: none)"},
                       "user_agent": {"type": "string"}, "proxy": {"type": "string"},
                       "flow": _STR_OR_NULL},
    },
    "TrunkRegistration": {
        "type": ["object", "null"],
        "properties": {"state": {"type": "string"}, "machine_state": {"type": "string"},
                       "registrar": {"type": "string"}, "reg_id": {"type": "string"},
                       "last_status": {"type": ["integer", "null"]},
                       "last_error": _STR_OR_NULL, "expires": {"type": ["integer", "null"]},
                       "since": _NUM_OR_NULL, "next_refresh": _NUM_OR_NULL,
                       "next_retry": _NUM_OR_NULL, "failures": {"type": "integer"},
                       "owner": _STR_OR_NULL},
    },
    "Trunk": {
        "type": "object", "required": ["domain", "id", "name", "auth_type", "registration"],
        "properties": {"domain": {"type": "string"}, "id": {"type": ["string", "integer"]},
                       "name": _STR_OR_NULL, "auth_type": _STR_OR_NULL,
                       "registration": ref("TrunkRegistration")},
    },
    "Machine": {
        "type": "object",
        "required": ["machine", "version", "content_hash", "file", "loaded_at"],
        "properties": {"machine": {"type": "string"}, "version": {"type": "string"},
                       "content_hash": {"type": "string"}, "file": {"type": "string"},
                       "loaded_at": {"type": "number", "description": "Unix time"},
                       "live_instances": {"type": "integer"}},
    },
    "Reloaded": {
        "type": "object", "required": ["machines"],
        "properties": {"machines": {"type": "object",
                                    "additionalProperties": {"type": "string"}}},
    },
    "Health": {
        "type": "object", "required": ["status"],
        "properties": {"status": {"const": "ok"}, "version": {"type": "string"}},
    },
    "Ready": {
        "type": "object", "required": ["ready", "problems", "dependencies"],
        "properties": {
            "ready": {"type": "boolean"},
            "problems": {"type": "array", "items": {"type": "string"}},
            "dependencies": {"type": "object", "additionalProperties": {
                "type": "object", "required": ["up", "reason"],
                "properties": {"up": {"type": ["boolean", "null"]}, "reason": _STR_OR_NULL,
                               "for_secs": {"type": "number"}}}},
        },
    },
    "Hangup": {
        "type": "object", "required": ["call_id", "instance", "state"],
        "properties": {"call_id": {"type": "string"}, "instance": {"type": "string"},
                       "state": {"type": "string"}},
    },
}


def build_document() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for r in ROUTES:
        op: dict[str, Any] = {"operationId": r.operation_id, "summary": r.summary,
                              "responses": {}}
        if r.handler.__doc__:
            op["description"] = " ".join(r.handler.__doc__.split())
        if r.params:
            op["parameters"] = [{"name": p.name, "in": p.where, "description": p.description,
                                 "required": p.required or p.where == "path",
                                 "schema": p.schema} for p in r.params]
        op["security"] = [{"bearer": []}] if r.auth else []
        for status, resp in sorted(r.responses.items()):
            body: dict[str, Any] = {"description": resp.description}
            if resp.schema is not None:
                body["content"] = {resp.content_type: {"schema": resp.schema}}
            elif resp.content_type != JSON:
                body["content"] = {resp.content_type: {"schema": {"type": "string"}}}
            op["responses"][str(status)] = body
        paths.setdefault(r.path, {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "DragonPBX operator API", "version": __version__,
                 "description": "Live calls with their machines, registrations, trunks, "
                                "machines and reload. /health, /ready and /metrics need no "
                                "token; /api/v1/ needs `Authorization: Bearer $API_TOKEN` "
                                "when API_TOKEN is set."},
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def response_schema(doc: dict[str, Any], path: str, method: str, status: int,
                    content_type: str = JSON) -> dict[str, Any]:
    """The schema ``doc`` gives for one response, self-contained for a JSON Schema
    validator (its ``$ref``s resolve against the embedded components)."""
    schema = doc["paths"][path][method.lower()]["responses"][str(status)]["content"][
        content_type]["schema"]
    return {**schema, "components": doc["components"]}


__all__ = ["ROUTES", "Param", "Response", "Route", "build_document", "page_of", "ref",
           "response_schema", "route"]
