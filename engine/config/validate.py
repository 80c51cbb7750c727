"""Configuration validation: JSON Schema, then semantic checks, then the model.

Every back-end ends here: the json file and the API body are parsed with
positions (``jsonpos``), the database rows are mapped back to row ids; all of
them go through ``schemas/config.schema.json`` and the same semantic checks
(CIDRs, glob patterns, extglobs, client credentials, duplicate trunk ids,
registration credentials), and come out as one ``ConfigSnapshot`` — or as a
``ConfigError`` carrying every ``Diagnostic`` found, rendered
``file:line:col CODE $.json.path: message``.

Messages never echo a value (a mistyped password must not reach a log line).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from engine.config.jsonpos import JsonPath, JsonSyntaxError, LocatedJson, loads_located, render_path
from engine.config.matching import Dialplan, PatternError, compile_glob, parse_network
from engine.config.model import Client, ConfigSnapshot, Domain, Outbound, Trunk, js_number
from engine.errors import ConfigError, Diagnostic
from engine.paths import schema_path

# --------------------------------------------------------------------------- locating


class Locator:
    """Maps a JSON path of the checked document to ``(file, line, col)``."""

    def __init__(self, file: str):
        self.file = file

    def locate(self, path: JsonPath, *, key: bool = False) -> tuple[str, int, int]:
        return self.file, 1, 1


class TextLocator(Locator):
    """Positions from a document parsed with ``loads_located``."""

    def __init__(self, file: str, doc: LocatedJson):
        super().__init__(file)
        self.doc = doc

    def locate(self, path: JsonPath, *, key: bool = False) -> tuple[str, int, int]:
        line, col = self.doc.where(path, key=key)
        return self.file, line, col


class Collector:
    def __init__(self, locator: Locator):
        self.locator = locator
        self.items: list[Diagnostic] = []

    def add(self, path: JsonPath, code: str, message: str, *, key: bool = False,
            severity: str = "error") -> None:
        file, line, col = self.locator.locate(path, key=key)
        self.items.append(Diagnostic(file, line, col, code, render_path(path), message, severity))

    def error(self, path: JsonPath, code: str, message: str, *, key: bool = False) -> None:
        self.add(path, code, message, key=key)

    def warning(self, path: JsonPath, code: str, message: str, *, key: bool = False) -> None:
        self.add(path, code, message, key=key, severity="warning")

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity != "error"]


# --------------------------------------------------------------------------- schema


@cache
def config_schema() -> dict[str, Any]:
    return json.loads(schema_path("config").read_text(encoding="utf-8"))


@cache
def _validator(definition: str | None) -> Draft202012Validator:
    root = config_schema()
    schema = root if definition is None else {
        "$schema": root["$schema"], "$defs": root["$defs"], "$ref": f"#/$defs/{definition}"}
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


_TYPE_WORDS = {"object": "an object", "array": "an array", "string": "a string",
               "integer": "an integer", "number": "a number", "boolean": "true or false",
               "null": "null"}
_PATTERN_WORDS = {
    "callHook": "must be an http(s):// URL or file:<template>",
    "httpUrl": "must be an http(s):// URL",
    "domainName": "is not a valid domain name (FQDN, IPv4, or IPv6 in brackets; no port)",
    "host": "must be host[:port] without spaces, user part or parameters",
}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _describe_expected(err: ValidationError) -> str:
    # the stubs widen validator_value with jsonschema's Unset marker; an error from a
    # validation always carries the schema keyword's value
    value: Any = err.validator_value
    if err.validator == "type":
        types: list[str] = value if isinstance(value, list) else [value]
        return " or ".join(_TYPE_WORDS.get(t, t) for t in types)
    if err.validator == "const":
        return "an empty string" if value == "" else json.dumps(value)
    if err.validator == "enum":
        return "one of " + ", ".join(json.dumps(v) for v in value)
    if err.validator == "minimum":
        return f"a number ≥ {value}"
    if err.validator == "minLength":
        return "a non-empty string"
    return "a valid value"


def _pattern_message(err: ValidationError) -> str:
    pattern = err.validator_value
    defs = config_schema()["$defs"]
    for name in ("callHook", "httpUrl", "domainName"):
        if defs[name].get("pattern") == pattern:
            return _PATTERN_WORDS[name]
    return _PATTERN_WORDS["host"]


_SECRETISH = re.compile(r"(pass(word)?|secret|token)$", re.IGNORECASE)


def _got(value: Any, path: JsonPath) -> str:
    """What was found: short non-secret values are shown, everything else by type."""
    last = path[-1] if path else ""
    if isinstance(last, str) and _SECRETISH.search(last):
        return _json_type(value)
    if value is None or isinstance(value, bool | int | float):
        return json.dumps(value)
    if isinstance(value, str) and len(value) <= 40:
        return json.dumps(value, ensure_ascii=False)
    return _json_type(value)


_SIMPLE = ("type", "const", "enum", "minimum", "minLength")


def schema_error(err: ValidationError) -> tuple[JsonPath, str, bool]:
    """(path, message, points-at-key) for one jsonschema error, without echoing secrets."""
    path: JsonPath = tuple(err.absolute_path)
    v = err.validator
    if "propertyNames" in err.relative_schema_path:
        # the error's instance is the offending key itself; point at it
        return (*path, str(err.instance)), _PATTERN_WORDS["domainName"], True
    if v in ("anyOf", "oneOf"):
        branches = list(err.context or [])
        if branches and all(b.validator in _SIMPLE and len(b.absolute_path) == len(path)
                            for b in branches):
            # no branch accepts this kind of value: list what would be accepted
            expected = list(dict.fromkeys(_describe_expected(b) for b in branches))
            if "a string" in expected:
                expected = [e for e in expected if e != "an empty string"]
            return path, f"expected {' or '.join(expected)}, got {_got(err.instance, path)}", False
        # otherwise the branch that got furthest into the value explains best
        candidates = [b for b in branches if b.validator not in _SIMPLE
                      or len(b.absolute_path) > len(path)] or branches
        return schema_error(max(candidates, key=lambda b: len(b.absolute_path)))
    if v == "required":
        required: Any = err.validator_value  # a list of names (the stubs add Unset)
        instance: Any = err.instance
        missing = [k for k in required if k not in (instance or {})]
        return path, f"missing required property {missing[0]!r}" if missing else "missing", False
    if v in _SIMPLE:
        return path, f"expected {_describe_expected(err)}, got {_got(err.instance, path)}", False
    if v == "pattern":
        return path, _pattern_message(err), False
    return path, "invalid value", False


def schema_diagnostics(data: Any, col: Collector, definition: str | None = None
                       ) -> list[JsonPath]:
    """Report every schema violation; returns the paths that were reported."""
    paths: list[JsonPath] = []
    for err in sorted(_validator(definition).iter_errors(data),
                      key=lambda e: [str(p) for p in e.absolute_path]):
        path, message, key = schema_error(err)
        col.error(path, "CONFIG_SCHEMA", message, key=key)
        paths.append(path)
    return paths


def _clean_entries(entries: list[DomainEntry], bad: list[JsonPath]) -> list[DomainEntry]:
    """Domains without schema errors, so their semantic errors are reported in the same run."""
    if any(len(p) < 2 for p in bad):
        return []
    return [e for e in entries if not any(p[: len(e.path)] == e.path for p in bad)]


# --------------------------------------------------------------------------- semantics

_KNOWN = {
    "root": {"$schema", "domains", "accounts"},
    "domain": {"domain_id", "clients", "trunks"},
    "client": {"id", "username", "reghook", "reghookFallback", "password", "authType",
               "dialplan", "codecs", "expires", "label", "maxClients"},
    "trunk": {"id", "name", "label", "inbound", "outbound", "dialplan", "codecs", "authType",
              "authUser", "authPass", "regHost", "regUser", "regPass", "register",
              "number_from"},
    "outbound": {"host", "username", "password"},
}


@dataclass(frozen=True)
class DomainEntry:
    """One domain of the checked document, wherever its fields live."""

    name: str
    id: Any
    raw: Mapping[str, Any]
    path: JsonPath


def _unknown_keys(obj: Mapping[str, Any], kind: str, path: JsonPath, col: Collector) -> None:
    known = _KNOWN[kind]
    for k in obj:
        if k not in known:
            hint = difflib.get_close_matches(k, known, n=1)
            more = f" (did you mean {hint[0]!r}?)" if hint else ""
            col.warning((*path, k), "CONFIG_UNKNOWN_KEY", f"unknown property {k!r} is ignored"
                        + more, key=True)


def _opt(value: Any) -> Any:
    """Empty strings count as absent (a blank password is never a password, S-1)."""
    return None if value == "" else value


def _build_dialplan(raw: Any, path: JsonPath, col: Collector, precedence: str
                    ) -> Dialplan | None:
    if raw is None:
        return None
    dialplan = Dialplan(raw, precedence, strict=False)
    for key, code, message in dialplan.errors:
        col.error((*path, key), code, message, key=True)
    for key in raw:
        if key.startswith("!"):
            col.warning((*path, key), "CONFIG_INERT_PATTERN",
                        "a key starting with '!' never matches (a lone negation)", key=True)
    return dialplan


def _build_client(raw: Mapping[str, Any], path: JsonPath, col: Collector, precedence: str,
                  strict_keys: bool) -> Client | None:
    before = len(col.errors)
    if strict_keys:
        _unknown_keys(raw, "client", path, col)
    username = raw["username"]
    try:
        compile_glob(username)
    except PatternError as exc:
        col.error((*path, "username"), exc.code, exc.reason)
    if username.startswith(("!", "#")):
        col.warning((*path, "username"), "CONFIG_INERT_PATTERN",
                    "a username starting with '!' or '#' never matches")
    reghook, password = _opt(raw.get("reghook")), _opt(raw.get("password"))
    auth_type = raw.get("authType")
    if auth_type == "standard":
        reghook = None
    elif auth_type == "reghook":
        password = None
    if not reghook and not password:
        need = {"standard": "a password", "reghook": "a reghook URL"}.get(
            str(auth_type), "a reghook URL or a password")
        col.error(path, "CONFIG_CLIENT_AUTH",
                  f"client {username!r} needs {need}; an empty password is never accepted")
    elif reghook and password:
        col.warning((*path, "password"), "CONFIG_CLIENT_AUTH",
                    "both reghook and password are set: the reghook is used")
        password = None
    fallback = _opt(raw.get("reghookFallback"))
    if fallback and not reghook:
        col.warning((*path, "reghookFallback"), "CONFIG_UNUSED_FALLBACK",
                    "reghookFallback is ignored: the client has no reghook")
        fallback = None
    elif fallback and fallback == reghook:
        col.error((*path, "reghookFallback"), "CONFIG_SAME_FALLBACK",
                  "reghookFallback must differ from reghook (a request is never sent twice "
                  "to the same URL)")
    dialplan = _build_dialplan(raw.get("dialplan"), (*path, "dialplan"), col, precedence)
    if len(col.errors) > before:
        return None
    codecs = raw.get("codecs")
    return Client(username=username, reghook=reghook, password=password, dialplan=dialplan,
                  codecs=tuple(codecs) if codecs is not None else None,
                  expires=raw.get("expires"), id=raw.get("id"), reghook_fallback=fallback)


def _build_trunk(raw: Mapping[str, Any], path: JsonPath, col: Collector, precedence: str,
                 strict_keys: bool) -> Trunk | None:
    before = len(col.errors)
    if strict_keys:
        _unknown_keys(raw, "trunk", path, col)
    networks = []
    inbound = tuple(raw.get("inbound") or ())
    for i, cidr in enumerate(inbound):
        try:
            networks.append(parse_network(cidr))
        except ValueError as exc:
            col.error((*path, "inbound", i), "CONFIG_CIDR", str(exc))
    outbound = None
    ob = raw.get("outbound")
    if ob:
        if strict_keys:
            _unknown_keys(ob, "outbound", (*path, "outbound"), col)
        outbound = Outbound(_opt(ob.get("host")), _opt(ob.get("username")),
                            _opt(ob.get("password")))
        if bool(outbound.username) != bool(outbound.password):
            col.error((*path, "outbound"), "CONFIG_OUTBOUND_AUTH",
                      "outbound.username and outbound.password go together")
        elif outbound.username and not outbound.host:
            col.error((*path, "outbound"), "CONFIG_OUTBOUND_AUTH",
                      "outbound credentials need outbound.host")
    auth_type = _opt(raw.get("authType"))
    auth_type = None if auth_type == "none" else auth_type
    auth_user, auth_pass = _opt(raw.get("authUser")), _opt(raw.get("authPass"))
    if auth_type == "authentication" and not (auth_user and auth_pass):
        col.error((*path, "authType"), "CONFIG_TRUNK_AUTH",
                  "authType 'authentication' needs authUser and authPass")
    reg = [_opt(raw.get(k)) for k in ("regHost", "regUser", "regPass")]
    if auth_type == "registration" and any(reg) and not all(reg):
        col.error((*path, "authType"), "CONFIG_REGISTRATION",
                  "authType 'registration' needs all of regHost, regUser and regPass")
    dialplan = _build_dialplan(raw.get("dialplan"), (*path, "dialplan"), col, precedence)
    if len(col.errors) > before:
        return None
    codecs = raw.get("codecs")
    trunk = Trunk(
        id=raw["id"], name=_opt(raw.get("name")), label=_opt(raw.get("label")), inbound=inbound,
        outbound=outbound, dialplan=dialplan,
        codecs=tuple(codecs) if codecs is not None else None, auth_type=auth_type,
        auth_user=auth_user, auth_pass=auth_pass, reg_host=reg[0], reg_user=reg[1],
        reg_pass=reg[2], register=raw.get("register"), number_from=raw.get("number_from"),
        networks=tuple(networks),
    )
    if trunk.registration is None and (auth_type == "registration" or raw.get("register")):
        col.error((*path, "register" if raw.get("register") else "authType"),
                  "CONFIG_REGISTRATION", "registration needs regHost/regUser/regPass (with "
                  "authType 'registration') or outbound host/username/password")
        return None
    return trunk


def _check_duplicate_ids(trunks: list[tuple[int, Trunk]], path: JsonPath, col: Collector) -> None:
    """Ids equal under the original's loose ``==`` ("1" == 1) must be unique."""
    by_str: dict[str, int] = {}
    by_num: dict[float, int] = {}
    by_str_num: dict[float, int] = {}
    for index, trunk in trunks:
        num = js_number(trunk.id)
        if isinstance(trunk.id, str):
            first = by_str.get(trunk.id)
            if first is None and num is not None:
                first = by_num.get(num)
        else:
            first = by_num.get(num) if num is not None else None
            if first is None and num is not None:
                first = by_str_num.get(num)
        if first is not None:
            col.error((*path, index, "id"), "CONFIG_DUPLICATE_ID",
                      f"trunk id {trunk.id!r} is already used by trunks[{first}]")
            continue
        if isinstance(trunk.id, str):
            by_str.setdefault(trunk.id, index)
            if num is not None:
                by_str_num.setdefault(num, index)
        elif num is not None:
            by_num.setdefault(num, index)


def build_snapshot(entries: Iterable[DomainEntry], *, locator: Locator, precedence: str,
                   source: str, normalized: Mapping[str, Any], strict_keys: bool = False,
                   col: Collector | None = None) -> ConfigSnapshot:
    """Semantic checks + model. Raises ``ConfigError`` with every diagnostic."""
    col = col or Collector(locator)
    domains: dict[str, Domain] = {}
    folded: dict[str, str] = {}
    for entry in entries:
        if entry.name in domains:
            col.error(entry.path, "CONFIG_DUPLICATE_DOMAIN",
                      f"domain {entry.name!r} is defined twice")
            continue
        if strict_keys:
            _unknown_keys(entry.raw, "domain", entry.path, col)
        other = folded.setdefault(entry.name.casefold(), entry.name)
        if other != entry.name:
            col.warning(entry.path, "CONFIG_DOMAIN_CASE",
                        f"domain {entry.name!r} differs from {other!r} only in case; "
                        f"case-insensitive lookups find {other!r}")
        clients = [_build_client(c, (*entry.path, "clients", i), col, precedence, strict_keys)
                   for i, c in enumerate(entry.raw.get("clients") or ())]
        trunks = [(i, _build_trunk(t, (*entry.path, "trunks", i), col, precedence, strict_keys))
                  for i, t in enumerate(entry.raw.get("trunks") or ())]
        good_trunks = [(i, t) for i, t in trunks if t is not None]
        _check_duplicate_ids(good_trunks, (*entry.path, "trunks"), col)
        domains[entry.name] = Domain(entry.name, entry.id,
                                     tuple(c for c in clients if c is not None),
                                     tuple(t for _, t in good_trunks))
    return _finish(col, source, domains, normalized, precedence)


def _finish(col: Collector, source: str, domains: dict[str, Domain],
            normalized: Mapping[str, Any], precedence: str) -> ConfigSnapshot:
    items = sorted(col.items, key=lambda d: (d.severity != "error", d.file, d.line, d.col))
    errors = [d for d in items if d.severity == "error"]
    if errors:
        raise ConfigError(f"{source}: configuration refused ({len(errors)} error"
                          f"{'s' if len(errors) != 1 else ''})", items)
    return ConfigSnapshot(domains, source=source, fingerprint=fingerprint(normalized),
                          warnings=tuple(items), precedence=precedence)


def fingerprint(normalized: Mapping[str, Any]) -> str:
    """Content hash: an unchanged reload does not swap the snapshot or fire callbacks."""
    text = json.dumps(normalized, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


# --------------------------------------------------------------------------- entry points


def _parse(text: str, file: str) -> tuple[LocatedJson, TextLocator]:
    try:
        doc = loads_located(text)
    except JsonSyntaxError as exc:
        raise ConfigError(f"{file}: not valid JSON", [
            Diagnostic(file, exc.line, exc.col, "CONFIG_SYNTAX", "$", exc.msg)]) from None
    return doc, TextLocator(file, doc)


def _duplicate_key_warnings(doc: LocatedJson, col: Collector) -> None:
    for path in doc.duplicates:
        col.warning(path, "CONFIG_DUPLICATE_KEY", "duplicate key: the last value is used",
                    key=True)


def normalize_internal(domains: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    return {"domains": {name: {"domain_id": d.get("domain_id"), "clients": d.get("clients") or [],
                               "trunks": d.get("trunks") or []} for name, d in domains.items()}}


def snapshot_from_internal(data: Any, *, locator: Locator, precedence: str, source: str,
                           strict_keys: bool = False, col: Collector | None = None
                           ) -> ConfigSnapshot:
    """The internal shape (spec §11.1): ``{"domains": {fqdn: {domain_id, clients, trunks}}}``."""
    col = col or Collector(locator)
    bad = schema_diagnostics(data, col)
    if bad and not (isinstance(data, dict) and isinstance(data.get("domains"), dict)):
        return _finish(col, source, {}, {}, precedence)
    if strict_keys:
        _unknown_keys(data, "root", (), col)
    entries = _clean_entries([DomainEntry(name, d["domain_id"], d, ("domains", name))
                              for name, d in data["domains"].items()
                              if isinstance(d, dict) and "domain_id" in d], bad)
    if bad:
        build_snapshot(entries, locator=locator, precedence=precedence, source=source,
                       normalized={}, strict_keys=strict_keys, col=col)  # raises: col has errors
    return build_snapshot(entries, locator=locator, precedence=precedence, source=source,
                          normalized=normalize_internal(data["domains"]),
                          strict_keys=strict_keys, col=col)


def snapshot_from_json_text(text: str, *, file: str, precedence: str = "specific",
                            source: str | None = None) -> ConfigSnapshot:
    """A ``DATA_SOURCE=json`` file's content; unknown keys are warned about."""
    doc, locator = _parse(text, file)
    col = Collector(locator)
    _duplicate_key_warnings(doc, col)
    return snapshot_from_internal(doc.value, locator=locator, precedence=precedence,
                                  source=source or f"json:{file}", strict_keys=True, col=col)


def snapshot_from_api_text(text: str, *, url: str, precedence: str = "specific",
                           source: str | None = None) -> ConfigSnapshot:
    """A ``CONFIG_URL`` response body (spec §11.2), checked before any swap (D-22)."""
    doc, locator = _parse(text, url)
    col = Collector(locator)
    _duplicate_key_warnings(doc, col)
    data = doc.value
    bad = schema_diagnostics(data, col, "apiResponse")
    if bad and not (isinstance(data, dict) and isinstance(data.get("domains"), list)):
        return _finish(col, source or f"api:{url}", {}, {}, precedence)
    entries = _clean_entries([DomainEntry(d["domain"], d["id"], d, ("domains", i))
                              for i, d in enumerate(data["domains"])
                              if isinstance(d, dict) and "id" in d and "domain" in d
                              and isinstance(d["domain"], str)], bad)
    if bad:
        build_snapshot(entries, locator=locator, precedence=precedence,
                       source=source or f"api:{url}", normalized={}, col=col)
    normalized = normalize_internal({d["domain"]: {**d, "domain_id": d["id"]}
                                     for d in data["domains"]})
    return build_snapshot(entries, locator=locator, precedence=precedence,
                          source=source or f"api:{url}", normalized=normalized, col=col)


__all__ = [
    "Collector", "DomainEntry", "Locator", "TextLocator", "build_snapshot", "config_schema",
    "fingerprint", "schema_diagnostics", "snapshot_from_api_text",
    "snapshot_from_internal", "snapshot_from_json_text",
]
