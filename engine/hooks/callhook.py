"""CallHook caller: POST the call data, return the CallScript JSON (spec §5.2).

The adapter reports what happened; the call machine decides what each outcome
means for the caller (``machines/inbound_call.yaml``: 480 or 500, spec §5.2):

* ``CallHookReply(value)`` — HTTP 2xx and a JSON body (any Content-Type) whose value
  is not JSON-falsy. The value is returned as is: validating it as a CallScript
  is the call machine's job.
* ``CallHookFailed(kind)`` — no script, and why:

  ``timeout``       no complete reply within CALLHOOK_TIMEOUT
  ``connect``       connection refused or lost before the reply (``closed``: our
                    own client was closed at shutdown)
  ``status``        HTTP status not 2xx (3xx included: redirects are not followed)
  ``json``          the body is not JSON (``too_large``: over the size cap;
                    ``error``: a malformed HTTP reply)
  ``empty``         the JSON is ``null``/``false``/``0``/``""`` (the original's
                    falsy-script check)
  ``url``           the URL is missing or not http(s) (nothing sent; ``payload``:
                    the body could not be encoded)
  ``circuit_open``  nothing sent: the URL failed ``HOOK_BREAKER_THRESHOLD`` times
                    in a row and its breaker is open (``engine.hooks.breaker``)

``status`` is the HTTP code when a reply arrived; ``message`` is for logs and the
StatusHook ``callhook:error`` event. Every ``CallHookFailed`` except a shutdown is a
failure of the URL: it counts for the breaker and makes the call flow ask the
dialplan entry's ``callHookFallback`` (``engine.actions.hooks``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.errors import HookError
from engine.hooks.breaker import Breakers, guarded
from engine.hooks.client import parse_json_strict, safe_url
from engine.log import get_logger
from engine.ports import HookCaller

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class CallHookReply:
    """The parsed JSON the CallHook returned (normally a list of verb objects)."""

    value: Any


@dataclass(frozen=True, slots=True)
class CallHookFailed:
    """No CallScript; ``kind`` says what happened (see the module docstring)."""

    kind: str
    status: int | None = None  # HTTP status, when a reply arrived
    message: str = ""


CallHookResult = CallHookReply | CallHookFailed


def _falsy_json(value: Any) -> bool:
    # JavaScript falsiness of a JSON value: null, false, 0, "" (arrays/objects are truthy).
    return value is None or value is False or value == "" or (
        isinstance(value, int | float) and not isinstance(value, bool) and value == 0
    )


def interpret_reply(status: int, body: bytes) -> CallHookResult:
    """Classify a CallHook HTTP reply (pure)."""
    if not 200 <= status < 300:
        return CallHookFailed("status", status, f"CallHook answered HTTP {status}")
    ok, value = parse_json_strict(body)
    if not ok:
        return CallHookFailed("json", status, "CallHook reply is not JSON")
    if _falsy_json(value):
        return CallHookFailed("empty", status, f"CallHook returned {body.strip()[:8]!r}")
    return CallHookReply(value)


class CallHook:
    """Typed CallHook calls over the shared ``HookCaller``, bounded by ``CALLHOOK_TIMEOUT``."""

    def __init__(self, caller: HookCaller, *, timeout: float,
                 breakers: Breakers | None = None) -> None:
        self._caller = caller
        self._timeout = timeout
        self._breakers = breakers

    async def fetch(self, url: str | None, body: Mapping[str, Any], *,
                    timeout: float | None = None) -> CallHookResult:
        """POST ``body`` (see ``payloads.callhook_body``) to ``url``; never raises ``HookError``.

        Fails fast (``circuit_open``, nothing sent) while the URL's breaker is open."""
        if not url or not url.startswith(("http://", "https://")):
            return CallHookFailed("url", None, "CallHook URL missing or not http(s)")
        result = await guarded(self._breakers, url, lambda: self._post(url, body, timeout),
                               counts_as_failure)
        if result is None:
            log.debug("callhook not sent: circuit open", url=safe_url(url))
            return CallHookFailed("circuit_open", None, f"{safe_url(url)}: circuit open")
        return result

    async def _post(self, url: str, body: Mapping[str, Any],
                    timeout: float | None) -> CallHookResult:
        try:
            reply = await self._caller.post(url, body, timeout=timeout or self._timeout)
        except HookError as exc:
            log.warning("callhook failed", url=safe_url(url), kind=exc.kind, error=str(exc))
            return CallHookFailed(exc.kind, exc.status, str(exc))
        if reply.json is not None and 200 <= reply.status < 300:
            # Fast path: the client already parsed a non-null JSON body.
            value = reply.json
            result: CallHookResult = (
                CallHookFailed("empty", reply.status, "CallHook returned a falsy value")
                if _falsy_json(value) else CallHookReply(value)
            )
        else:
            result = interpret_reply(reply.status, reply.body)
        if isinstance(result, CallHookFailed):
            log.warning("callhook reply rejected", url=safe_url(url), kind=result.kind,
                        status=reply.status, error=result.message)
        return result


def wants_fallback(result: CallHookResult) -> bool:
    """Anything but a CallHookReply, except our own shutdown, is worth asking the fallback."""
    return isinstance(result, CallHookFailed) and result.kind not in ("closed", "payload")


def counts_as_failure(result: CallHookResult) -> bool:
    """A failure of the URL for its breaker (a URL that is not http(s) sends nothing)."""
    return wants_fallback(result) and not (isinstance(result, CallHookFailed)
                                           and result.kind == "url")


__all__ = ["CallHook", "CallHookFailed", "CallHookResult",
           "CallHookReply", "counts_as_failure", "interpret_reply", "wants_fallback"]
