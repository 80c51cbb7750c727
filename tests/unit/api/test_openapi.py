"""The OpenAPI document is built from the route table and is valid OpenAPI 3.1."""

from __future__ import annotations

from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

import engine.api.routes  # noqa: F401 - declares the routes
from engine.api.openapi import ROUTES, build_document, response_schema


def test_document_is_valid_openapi_3_1() -> None:
    doc = build_document()
    validate(doc)
    assert doc["openapi"] == "3.1.0"


def test_every_route_is_described_and_guarded_routes_declare_401() -> None:
    doc = build_document()
    assert len(ROUTES) >= 12
    for r in ROUTES:
        op = doc["paths"][r.path][r.method.lower()]
        assert op["summary"] and op["description"], r.path
        assert ("401" in op["responses"]) == r.auth, r.path
        assert r.path.startswith("/api/v1/") == r.auth, r.path


def test_response_schemas_resolve_and_reject_what_drifts() -> None:
    doc = build_document()
    schema = Draft202012Validator(response_schema(doc, "/api/v1/calls", "get", 200))
    assert schema.is_valid({"items": [], "next": None})
    assert not schema.is_valid({"items": [{"call_id": "x"}], "next": None})  # fields missing
    assert not schema.is_valid({"calls": []})
    error = Draft202012Validator(response_schema(doc, "/api/v1/reload", "post", 401))
    assert error.is_valid({"error": {"code": "unauthorized", "message": "no"}})
    assert not error.is_valid({"error": "no"})
