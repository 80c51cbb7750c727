"""Pure builders of the webhook request bodies (spec §2.2, §5.1, §8).

The bodies are the original system's wire contract (COMPAT): field names and
key order are reproduced exactly because receivers and signature checks see
the JSON text. The fixes applied on purpose are noted where they happen:
D-1 (realm is the domain), D-10 (``expires`` carries the requested expiry),
S-4 (a trunk ``source`` is only ``{id, name}``), D-27 (trimmed connect event
names unless the legacy switch is on) and D-31 (``error``/``req`` serialised
from a defined subset, never a dump of internal objects).

Everything here is synchronous and side-effect free; ``engine.hooks.client``
serialises the returned dicts (insertion order = JSON key order).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from engine.errors import SipError


class _Unset:
    """Marker for "argument not given" where ``None`` (JSON null) is a real value."""

    _instance: _Unset | None = None

    def __new__(cls) -> _Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Final = _Unset()

HeaderPairs = Iterable[tuple[str, str]] | Mapping[str, str]

# --------------------------------------------------------------------------- RegHook (§2.2)

_DIGEST_OPTIONAL = ("qop", "nc", "cnonce", "opaque")


def reghook_body(
    *, source_address: str, source_port: int, method: str, expires: int | None,
    realm: str, username: str, nonce: str, uri: str, response: str,
    algorithm: str | None = None, qop: str | None = None, nc: str | None = None,
    cnonce: str | None = None, opaque: str | None = None,
) -> dict[str, Any]:
    """The RegHook request body (``req.authData``), keys in the original's order.

    ``realm`` is the SIP domain the request is for (D-1: the original sent the
    client's echo of the literal realm ``"undefined"``). ``expires`` is the
    expiry the REGISTER asked for (Contact ``expires`` param, else the Expires
    header) and ``None`` only when it asked nothing or for INVITEs (D-10: the
    original always sent null). ``algorithm`` defaults to ``MD5`` as in the
    original parser; ``qop``, ``nc``, ``cnonce`` and ``opaque`` appear only when
    the Authorization header had them.
    """
    body: dict[str, Any] = {
        "source_address": source_address,
        "source_port": int(source_port),
        "method": method,
        "expires": None if expires is None else int(expires),
        "scheme": "digest",
        "username": username,
        "realm": realm,
        "nonce": nonce,
        "uri": uri,
        "response": response,
        "algorithm": algorithm or "MD5",
    }
    for key, value in zip(_DIGEST_OPTIONAL, (qop, nc, cnonce, opaque), strict=True):
        if value is not None:
            body[key] = value
    return body


# --------------------------------------------------------------------------- SIP headers (§5.1)

# RFC 3261 §7.3.3 compact forms plus the later registered ones. The original's
# parser knew only the first ten and mapped "e" to the misspelt
# "contact-encoding"; the correct names are used here.
COMPACT_FORMS: Final[Mapping[str, str]] = {
    "i": "call-id", "m": "contact", "e": "content-encoding", "l": "content-length",
    "c": "content-type", "f": "from", "s": "subject", "k": "supported", "t": "to",
    "v": "via", "o": "event", "u": "allow-events", "r": "refer-to", "b": "referred-by",
    "a": "accept-contact", "j": "reject-contact", "d": "request-disposition",
    "x": "session-expires", "y": "identity", "n": "identity-info",
}


def header_key(name: str) -> str:
    """The CallHook ``headers`` key of SIP header ``name`` (original drachtio-sip rules).

    ``X-…`` and ``P-…`` headers (except ``P-Asserted…``) and ``Diversion`` keep
    the case they arrived with — the prefixes are matched case-sensitively, as
    the original did; every other name is lower-cased and compact forms are
    expanded (``f`` → ``from``).
    """
    if name.startswith("X-") or name == "Diversion" or (
        name.startswith("P-") and not name.startswith("P-Asserted")
    ):
        return name
    low = name.lower()
    return COMPACT_FORMS.get(low, low)


def _pairs(headers: HeaderPairs) -> Iterable[tuple[str, str]]:
    return headers.items() if isinstance(headers, Mapping) else headers


def headers_object(headers: HeaderPairs, *, drop: Iterable[str] = ()) -> dict[str, str]:
    """The ``headers`` object of a CallHook body from the raw (name, value) header lines.

    Lines are given in message order; repeated headers (same key after the case
    rules) are joined with ``,`` in that order, no space added, values kept raw.
    ``drop`` names keys (already normalised, e.g. ``"authorization"``) to leave out.
    """
    dropped = frozenset(drop)
    out: dict[str, str] = {}
    for name, value in _pairs(headers):
        key = header_key(name.strip())
        if key in dropped:
            continue
        out[key] = f"{out[key]},{value}" if key in out else value
    return out


# --------------------------------------------------------------------------- CallHook (§5.1)


def trunk_source(trunk: Mapping[str, Any]) -> dict[str, Any]:
    """The public identity of a trunk for the CallHook ``source`` field (S-4).

    Only ``id`` and the display name (``name`` in json configs, ``label`` in api
    configs) leave the PBX; credentials never do.
    """
    name = trunk.get("name")
    if name is None:
        name = trunk.get("label")
    return {"id": trunk.get("id"), "name": name}


def callhook_body(
    *, domain: str, from_user: str | None, to_user: str | None, call_id: str,
    source_address: str, headers: HeaderPairs, source: str | Mapping[str, Any] = "client",
    refer: bool | None = None, count: int | None = None,
) -> dict[str, Any]:
    """The CallHook request body: ``domain, from, to, callId, sourceAddress, headers,
    source, refer, count`` in that order.

    ``source`` is ``"client"`` or a trunk: a trunk config mapping is reduced to
    ``{id, name}`` here (S-4) whatever else it holds. Fields whose value is
    ``None`` are omitted, as JSON.stringify omits undefined ones — e.g. ``from``
    when the From URI has no user, ``refer`` on normal fetches, ``count`` on
    REFER-driven fetches.
    """
    src: Any = source if isinstance(source, str) else trunk_source(source)
    fields: tuple[tuple[str, Any], ...] = (
        ("domain", domain), ("from", from_user), ("to", to_user), ("callId", call_id),
        ("sourceAddress", source_address), ("headers", headers_object(headers)),
        ("source", src), ("refer", refer), ("count", count),
    )
    return {key: value for key, value in fields if value is not None}


# --------------------------------------------------------------------------- StatusHook (§8)

# The nine connect events the original sent with a trailing space (D-27, COMPAT).
LEGACY_SPACED_EVENTS: Final = frozenset({
    "connect:trying", "connect:timeout", "connect:answered", "connect:cancel",
    "connect:error", "connect:hangup", "connect:complete", "connect:reinvite",
    "connect:refer",
})

KNOWN_EVENTS: Final = frozenset({
    "playback:start", "playback:complete", "playback:failed", "pause:start",
    "pause:complete", "response:start", "response:notsent", "response:complete",
    "connect:start", "connect:skipped",
}) | LEGACY_SPACED_EVENTS


def event_name(event: str, *, legacy_names: bool = False) -> str:
    """The wire name of ``event``: trimmed by default, and for the nine legacy
    connect events with the original's trailing space when ``legacy_names``
    (``STATUSHOOK_LEGACY_NAMES``) is on."""
    name = event.strip()
    if legacy_names and name in LEGACY_SPACED_EVENTS:
        return name + " "
    return name


def serialize_error(error: BaseException | Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The ``error`` field: ``{name, status, reason, message}`` (D-31 subset).

    A ``SipError`` gives the original's text ``Sip non-success response: <status>``;
    other exceptions give their class name and message (the original sent ``{}``);
    a mapping is reduced to those four keys. Absent members are omitted.
    """
    if error is None:
        return None
    if isinstance(error, SipError):
        return {"name": "SipError", "status": error.status, "reason": error.reason,
                "message": f"Sip non-success response: {error.status}"}
    if isinstance(error, Mapping):
        return {k: error[k] for k in ("name", "status", "reason", "message")
                if error.get(k) is not None}
    from engine.log import redact_text

    return {"name": type(error).__name__, "message": redact_text(str(error))}


_SECRET_HEADERS: Final = ("authorization", "proxy-authorization")


def serialize_request(method: str, headers: HeaderPairs, body: bytes | str = b"") -> dict[str, Any]:
    """The ``req`` field: ``{method, headers, body}`` of an in-dialog request (D-31).

    Headers follow the CallHook case rules; ``Authorization`` and
    ``Proxy-Authorization`` are left out (credentials never go to a webhook);
    the body is text (UTF-8, undecodable bytes replaced).
    """
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    return {"method": method, "headers": headers_object(headers, drop=_SECRET_HEADERS),
            "body": text}


def _req_field(req: Any) -> dict[str, Any] | None:
    if req is None:
        return None
    if isinstance(req, Mapping):
        return serialize_request(str(req.get("method", "")), req.get("headers") or (),
                                 req.get("body") or b"")
    return serialize_request(req.method, req.headers, req.body)


def statushook_body(
    call_id: str, event: str, *, label: Any = UNSET, legacy_names: bool = False,
    dest: str | None = None, index: int | None = None, error: Any = None,
    duration: int | float | None = None, endedby: str | None = None, req: Any = None,
) -> dict[str, Any] | None:
    """The StatusHook body ``{"callId", "event", ...extra, "label"}``, or ``None`` when
    the event must not be sent.

    ``label`` is the verb's ``statusLabel``: not given (``UNSET``) → no ``label``
    key; ``None`` → ``"label": null``; ``False`` → every event of the verb is
    suppressed (returns ``None``). Extra fields appear in the order ``dest,
    index, error, duration, endedby, req`` and only when not ``None``; ``error``
    and ``req`` are reduced by ``serialize_error``/``serialize_request`` (``req``
    may be a mapping ``{method, headers, body}`` or an object with those
    attributes, ``headers`` being raw (name, value) lines).
    """
    if label is False:
        return None
    body: dict[str, Any] = {"callId": call_id,
                            "event": event_name(event, legacy_names=legacy_names)}
    extras: Sequence[tuple[str, Any]] = (
        ("dest", dest), ("index", index), ("error", serialize_error(error)),
        ("duration", duration), ("endedby", endedby), ("req", _req_field(req)),
    )
    for key, value in extras:
        if value is not None:
            body[key] = value
    if label is not UNSET:
        body["label"] = label
    return body


__all__ = [
    "COMPACT_FORMS", "KNOWN_EVENTS", "LEGACY_SPACED_EVENTS", "UNSET", "HeaderPairs",
    "callhook_body", "event_name", "header_key", "headers_object", "reghook_body",
    "serialize_error", "serialize_request", "statushook_body", "trunk_source",
]
