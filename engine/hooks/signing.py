'''HMAC-SHA256 signatures on webhook requests (S-6).

When ``DRAGONPBX_WEBHOOK_SECRET`` is set every RegHook, CallHook and StatusHook
request carries two headers::

    X-DragonPBX-Timestamp: 1767225600
    X-DragonPBX-Signature: v1=<hex HMAC-SHA256(secret, b"1767225600." + raw body)>

The timestamp is part of the signed text so that a captured request cannot be
replayed later: receivers reject requests whose timestamp is more than a few
minutes away from their own clock. ``v1=`` names the scheme so it can evolve
without ambiguity. Always verify the *raw* body bytes as received (re-serialising
parsed JSON changes them).

Verifying in Python (for a receiver; ``headers`` is any case-insensitive or
plain mapping)::

    import hashlib, hmac, time

    def verify(secret: str, headers, body: bytes, tolerance: int = 300) -> bool:
        ts = headers.get("X-DragonPBX-Timestamp", "")
        sig = headers.get("X-DragonPBX-Signature", "")
        if not ts.isdigit() or abs(time.time() - int(ts)) > tolerance:
            return False
        mac = hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256)
        return hmac.compare_digest(sig, "v1=" + mac.hexdigest())

Verifying in a shell (``body.json`` holds the raw body, ``$TS`` the timestamp
header, ``$SIG`` the signature header)::

    expected="v1=$( { printf '%s.' "$TS"; cat body.json; } \\
        | openssl dgst -sha256 -hmac "$SECRET" -r | cut -d' ' -f1 )"
    [ "$expected" = "$SIG" ] && echo valid
'''

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

TIMESTAMP_HEADER = "X-DragonPBX-Timestamp"
SIGNATURE_HEADER = "X-DragonPBX-Signature"
SCHEME = "v1"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-DragonPBX-Signature`` value for ``body`` sent at ``timestamp`` (unix seconds)."""
    mac = hmac.new(secret.encode("utf-8"), f"{int(timestamp)}.".encode() + body,
                   hashlib.sha256)
    return f"{SCHEME}={mac.hexdigest()}"


def signature_headers(secret: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Both signing headers, ready to merge into a request."""
    return {TIMESTAMP_HEADER: str(int(timestamp)), SIGNATURE_HEADER: sign(secret, timestamp, body)}


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    low = name.lower()
    for key, val in headers.items():  # plain dicts are case-sensitive; HTTP names are not
        if key.lower() == low:
            return val
    return None


def verify(secret: str, headers: Mapping[str, str], body: bytes, tolerance: int = 300,
           *, now: float | None = None) -> bool:
    """True if ``headers`` carry a valid signature of ``body`` made within ``tolerance`` s.

    ``now`` (unix seconds) is injectable for tests; by default the wall clock.
    Comparison is constant-time so the check does not leak the expected MAC.
    """
    ts_text = _header(headers, TIMESTAMP_HEADER)
    sig = _header(headers, SIGNATURE_HEADER)
    if not ts_text or not sig or not ts_text.strip().isdigit():
        return False
    timestamp = int(ts_text.strip())
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        return False
    return hmac.compare_digest(sig.strip().encode(), sign(secret, timestamp, body).encode())


__all__ = ["SIGNATURE_HEADER", "TIMESTAMP_HEADER", "sign", "signature_headers", "verify"]
