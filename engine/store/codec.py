"""Key names and hash encodings shared by the Redis and in-memory stores.

The layout is a wire contract (spec §3, §10.3, §13): other tools and the
original system read these keys, so field names and the JSON text of
``dialplan``/``codecs`` (JavaScript ``JSON.stringify`` form: compact, non-ASCII
kept) match the seed exactly. DragonPBX's additional fields (transport, flow,
callid, cseq, user_agent, expires, owner …) are added after the seed's.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from engine.log import get_logger
from engine.ports import Binding

log = get_logger(__name__)

SEED_BINDING_FIELDS = ("contact", "proxy", "dialplan", "codecs")
OWNER_FIELD = "owner"
TRUNK_ID_FIELD = "trunkID"


def client_key(domain: str, user: str) -> str:
    return f"client:{domain}:{user}"


def call_key(domain: str, call_id: str) -> str:
    return f"call:{domain}:{call_id}"


def regtrunk_key(domain: str, reg_id: str) -> str:
    return f"regtrunk:{domain}:{reg_id}"


def nonce_key(nonce: str) -> str:
    return f"nonce:{nonce}"


class JsonText(str):
    """JSON already encoded in the seed's form (e.g. a config dialplan's cached text): stored
    as it is instead of being decoded and encoded again on every REGISTER."""

    __slots__ = ()


def js_json(value: Any) -> str:
    """``JSON.stringify(value)`` as the seed stored it (compact separators, UTF-8 text)."""
    if isinstance(value, JsonText):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def binding_fields(binding: Binding) -> dict[str, str]:
    """The hash fields of ``binding``: the seed's four first, then DragonPBX's own.

    ``flow`` is left out when there is none (the whole hash is rewritten, so an
    old flow cannot survive a new registration).
    """
    fields = {
        "contact": binding.contact,
        "proxy": binding.proxy,
        "dialplan": js_json(binding.dialplan),
        "codecs": js_json(binding.codecs),
        "transport": binding.transport,
        "callid": binding.callid,
        "cseq": str(int(binding.cseq)),
        "user_agent": binding.user_agent,
        "expires": str(int(binding.expires)),
    }
    if binding.flow is not None:
        fields["flow"] = binding.flow
    return fields


def _json_field(fields: Mapping[str, str], name: str) -> Any:
    raw = fields.get(name)
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        # Written by something else; a binding with an unreadable dialplan routes nowhere
        # (404 at call time) rather than failing the lookup.
        log.warning("binding field is not JSON", field=name)
        return None


def _int_field(fields: Mapping[str, str], name: str) -> int:
    try:
        return int(fields.get(name) or 0)
    except ValueError:
        return 0


def binding_from_fields(fields: Mapping[str, str]) -> Binding:
    """Decode a ``client:*`` hash, including one written by the seed (four fields only)."""
    return Binding(
        contact=fields.get("contact", ""),
        proxy=fields.get("proxy", ""),
        dialplan=_json_field(fields, "dialplan"),
        codecs=_json_field(fields, "codecs"),
        transport=fields.get("transport") or "udp",
        flow=fields.get("flow") or None,
        callid=fields.get("callid", ""),
        cseq=_int_field(fields, "cseq"),
        user_agent=fields.get("user_agent", ""),
        expires=_int_field(fields, "expires"),
    )


def check_ttl(ttl: int | float, what: str) -> int:
    """A positive whole number of seconds (Redis EXPIRE rejects anything else)."""
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or math.isnan(ttl):
        raise ValueError(f"{what}: TTL must be a number of seconds, got {ttl!r}")
    seconds = math.ceil(ttl)
    if seconds <= 0:
        raise ValueError(f"{what}: TTL must be > 0, got {ttl!r}")
    return seconds


__all__ = [
    "OWNER_FIELD", "SEED_BINDING_FIELDS", "TRUNK_ID_FIELD", "binding_fields",
    "binding_from_fields", "call_key", "check_ttl", "client_key", "js_json", "nonce_key",
    "regtrunk_key",
]
