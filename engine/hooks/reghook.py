"""RegHook caller: POST the digest data, turn the reply into a typed decision (spec §2.4).

The registrar machine decides the SIP answer from the result:

* ``Granted`` — HTTP 2xx, JSON ``status`` "ok" (any case), grant fields valid;
* ``Denied`` — HTTP 2xx, any other ``status``; ``blacklist`` chooses the 403 X-Reason;
* ``HookFailed`` — everything else, with a ``kind``: ``status`` (HTTP ≠ 2xx, the
  HTTP code in ``status``), ``timeout``, ``connect``, ``json`` (body not a JSON
  object), ``schema`` (reply violates ``schemas/reghook-reply.schema.json``),
  ``url``, ``too_large``, ``error`` or ``circuit_open`` (the URL's breaker is
  open: nothing was sent, see ``engine.hooks.breaker``).

With a fallback URL (client ``reghookFallback``), a primary that fails —
timeout, unreachable, HTTP 5xx, invalid reply, open breaker — is followed by
the same request to the fallback, whose result is used (Twilio's
``fallbackUrl``). A ``Denied`` or an HTTP 4xx is the hook's answer, not a
failure: it is relayed, never retried elsewhere. The same URL is never asked
twice.

A hook's reply can never crash the caller (the original crashed on a reply
without ``status`` and on HTTP codes that are not SIP codes, D-0).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator

from engine.errors import HookError
from engine.hooks.breaker import Breakers, guarded
from engine.hooks.client import safe_url
from engine.log import get_logger
from engine.paths import schema_path
from engine.ports import HookCaller

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Granted:
    """The hook accepted the credentials.

    ``expires`` is the hook's limit in seconds (None = none given); ``dialplan``
    and ``codecs`` are None when the hook did not send them (the registrar
    decides whether that is acceptable); ``aor`` is the user the hook
    authorised when it named one (``aor`` or ``user`` member, S-2); ``raw`` is
    the whole reply object.
    """

    expires: int | None
    dialplan: Mapping[str, Any] | None
    codecs: tuple[str, ...] | None
    aor: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True)
class Denied:
    """The hook rejected the credentials (→ 403); ``blacklist`` selects the spammer X-Reason."""

    blacklist: bool = False
    status: str = ""


@dataclass(frozen=True, slots=True)
class HookFailed:
    """The hook could not give a decision. ``status`` is the HTTP code for kind ``status``."""

    kind: str
    status: int | None = None
    message: str = ""


RegHookResult = Granted | Denied | HookFailed


@cache
def reply_validator() -> Draft202012Validator:
    """The compiled validator of ``schemas/reghook-reply.schema.json`` (loaded once)."""
    schema = json.loads(schema_path("reghook-reply").read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def interpret_reply(status: int, payload: Any) -> RegHookResult:
    """Classify a RegHook HTTP reply (pure; used by ``RegHook.call`` and tests)."""
    if not 200 <= status < 300:
        return HookFailed("status", status, f"RegHook answered HTTP {status}")
    if not isinstance(payload, Mapping):
        return HookFailed("json", status, "RegHook reply is not a JSON object")
    errors = sorted(reply_validator().iter_errors(payload), key=lambda e: list(e.path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.path) or "(root)"
        return HookFailed("schema", status, f"RegHook reply invalid at {where}: {first.message}")
    verdict = payload["status"]
    if verdict.lower() != "ok":
        return Denied(blacklist=payload.get("blacklist") is True, status=verdict)
    expires = payload.get("expires")
    codecs = payload.get("codecs")
    aor = payload.get("aor") or payload.get("user")
    return Granted(
        expires=None if expires is None else int(expires),
        dialplan=payload.get("dialplan"),
        codecs=None if codecs is None else tuple(codecs),
        aor=aor,
        raw=payload,
    )


# Decisions remembered per reply body. A RegHook usually answers every user of a
# tenant with the same bytes, and validating a reply against the JSON schema was
# ~8 % of the registrar's CPU under load; identical bytes give an identical
# decision, so it is computed once. Bounded: cleared when full.
_DECISIONS_MAX = 1024
_DECISION_BODY_MAX = 8192


class RegHook:
    """Typed RegHook calls over the shared ``HookCaller``, bounded by ``REGHOOK_TIMEOUT``.

    The ``Granted``/``Denied`` values may be shared between registrations (see
    ``_DECISIONS_MAX``): treat them, and the mappings inside, as read-only.
    """

    def __init__(self, caller: HookCaller, *, timeout: float,
                 breakers: Breakers | None = None) -> None:
        self._caller = caller
        self._timeout = timeout
        self._breakers = breakers
        self._decisions: dict[bytes, Granted | Denied] = {}
        reply_validator()  # load and check the schema at start-up, not on the first REGISTER

    async def call(self, url: str, body: Mapping[str, Any], *, fallback: str | None = None,
                   timeout: float | None = None) -> RegHookResult:
        """POST ``body`` (see ``payloads.reghook_body``) to ``url``, then to ``fallback`` if
        ``url`` failed; never raises ``HookError``. Each URL gets the whole timeout."""
        result = await self._attempt(url, body, timeout)
        if fallback and fallback != url and wants_fallback(result):
            assert isinstance(result, HookFailed)
            log.debug("reghook fallback", url=safe_url(fallback), primary_kind=result.kind)
            result = await self._attempt(fallback, body, timeout)
        return result

    async def _attempt(self, url: str, body: Mapping[str, Any],
                       timeout: float | None) -> RegHookResult:
        result = await guarded(self._breakers, url,
                               lambda: self._post(url, body, timeout), counts_as_failure)
        if result is None:
            log.debug("reghook not sent: circuit open", url=safe_url(url))
            return HookFailed("circuit_open", None, f"{safe_url(url)}: circuit open")
        return result

    async def _post(self, url: str, body: Mapping[str, Any],
                    timeout: float | None) -> RegHookResult:
        try:
            reply = await self._caller.post(url, body, timeout=timeout or self._timeout)
        except HookError as exc:
            log.warning("reghook failed", url=safe_url(url), kind=exc.kind, error=str(exc))
            return HookFailed(exc.kind, exc.status, str(exc))
        cacheable = 200 <= reply.status < 300 and len(reply.body) <= _DECISION_BODY_MAX
        if cacheable:
            known = self._decisions.get(reply.body)
            if known is not None:
                return known
        result = interpret_reply(reply.status, reply.json)
        if cacheable and not isinstance(result, HookFailed):
            if len(self._decisions) >= _DECISIONS_MAX:
                self._decisions.clear()
            self._decisions[reply.body] = result
        if isinstance(result, HookFailed):
            log.warning("reghook reply rejected", url=safe_url(url), kind=result.kind,
                        status=reply.status, error=result.message)
        return result


def wants_fallback(result: RegHookResult) -> bool:
    """The primary gave no answer the fallback should not override: everything but a
    grant, a denial, an HTTP 4xx (relayed as the SIP status) and our own shutdown."""
    if not isinstance(result, HookFailed):
        return False
    if result.kind == "status":
        return not (result.status is not None and 400 <= result.status < 500)
    return result.kind not in ("closed", "payload")


def counts_as_failure(result: RegHookResult) -> bool:
    """A failure of the URL for its breaker: what triggers a fallback, except a URL that
    is not http(s) (nothing was sent)."""
    return wants_fallback(result) and not (isinstance(result, HookFailed)
                                           and result.kind == "url")


__all__ = ["Denied", "Granted", "HookFailed", "RegHook", "RegHookResult", "counts_as_failure",
           "interpret_reply", "reply_validator", "wants_fallback"]
