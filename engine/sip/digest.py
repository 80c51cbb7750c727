"""HTTP Digest authentication for SIP (RFC 3261 §22, RFC 2617, RFC 7616, RFC 8760).

Server side (:class:`DigestAuthenticator`): challenges with ``realm`` = the SIP
domain, ``qop="auth"``, MD5 and optionally SHA-256; nonces are stateless and
self-validating (timestamp + random, HMAC'd with a secret shared by every
engine instance), expire into ``stale=true``; verification returns a precise
:class:`DigestOutcome`. Replay protection of ``nc`` needs state, kept behind the
small :class:`NonceCounter` protocol (Redis in production, :class:`LocalNonceCounter`
as the in-process fallback).

Client side (:class:`DigestClient`): answers a 401/407 for a request we sent.

Interop note: SIPp puts ``sip:<remote host>:<port>`` in ``uri`` instead of the
Request-URI. The response is verified against the ``uri`` the credentials
carry (which is what RFC 2617/7616 compute over), so that passes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import struct
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from engine.sip.errors import SipParseError
from engine.sip.headers import quote, unquote

_HASHES: dict[str, Callable[[bytes], str]] = {
    "MD5": lambda b: hashlib.md5(b).hexdigest(),
    "SHA-256": lambda b: hashlib.sha256(b).hexdigest(),
}
SUPPORTED_ALGORITHMS = ("MD5", "SHA-256", "MD5-sess", "SHA-256-sess")
_CANON_ALG = {a.upper(): a for a in SUPPORTED_ALGORITHMS}


class DigestOutcome(StrEnum):
    OK = "ok"
    STALE = "stale"  # right password, expired nonce: re-challenge with stale=true
    BAD_NONCE = "bad_nonce"  # not ours / forged / wrong opaque: re-challenge
    WRONG_REALM = "wrong_realm"
    BAD_RESPONSE = "bad_response"  # wrong password (or user): 403
    REPLAY = "replay"  # nc not above the highest seen for this nonce
    UNSUPPORTED_ALGORITHM = "unsupported_algorithm"
    MALFORMED = "malformed"  # missing/invalid fields: 400


# --------------------------------------------------------------------------- parsing

_PARAM = r'([A-Za-z0-9_\-*]+)[ \t]*=[ \t]*("[^"\\]*(?:\\.[^"\\]*)*"|[^\s,"]*)'
_PARAM_RE = re.compile(_PARAM)
# The whole list in one pass (C speed); only when it fails do we walk it to say why.
_LIST_RE = re.compile(rf"[ \t,]*(?:{_PARAM}[ \t]*(?:,[ \t,]*|$))*")


def parse_auth_params(value: str) -> tuple[str, dict[str, str]]:
    """``Digest a="b",c=d`` -> (``"digest"``, {a: b, c: d}); names lower-cased,
    values unquoted. Tolerates missing/extra spaces (SIPp sends none after
    commas); rejects duplicates and garbage."""
    value = value.strip()
    scheme, _, rest = value.partition(" ")
    if not scheme or "=" in scheme:
        raise SipParseError("Malformed authentication header: no scheme")
    if _LIST_RE.fullmatch(rest) is None:
        raise SipParseError(_list_defect(rest))
    params: dict[str, str] = {}
    for raw_name, val in _PARAM_RE.findall(rest):
        name = raw_name.lower()
        if name in params:
            raise SipParseError(f"Duplicate authentication parameter {name}")
        params[name] = unquote(val) if val[:1] == '"' else val
    return scheme.lower(), params


def _list_defect(rest: str) -> str:
    pos, n = 0, len(rest)
    while pos < n:
        if rest[pos] in ", \t":
            pos += 1
            continue
        m = _PARAM_RE.match(rest, pos)
        if m is None:
            return "Malformed authentication parameter"
        pos = m.end()
        while pos < n and rest[pos] in " \t":
            pos += 1
        if pos < n and rest[pos] != ",":
            return "Malformed authentication parameter list"
    return "Malformed authentication parameter"


def _is_digest(value: str) -> bool:
    v = value.lstrip()
    return v[:6].lower() == "digest" and v[6:7] in (" ", "\t")


@dataclass(slots=True)
class DigestCredentials:
    """A parsed ``Authorization``/``Proxy-Authorization`` header (built once per
    REGISTER, hence not frozen: that would cost more than the parse itself)."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str = field(repr=False)
    algorithm: str = "MD5"
    qop: str | None = None
    nc: str | None = None
    cnonce: str | None = field(default=None, repr=False)
    opaque: str | None = None
    params: dict[str, str] = field(default_factory=dict, repr=False)

    def auth_data(self) -> dict[str, str]:
        """The digest fields the RegHook receives (behaviour spec §2.2), in order;
        ``qop``/``nc``/``cnonce``/``opaque`` only when present."""
        out = {"scheme": "digest", "username": self.username, "realm": self.realm,
               "nonce": self.nonce, "uri": self.uri, "response": self.response,
               "algorithm": self.algorithm}
        for k in ("qop", "nc", "cnonce", "opaque"):
            v = getattr(self, k)
            if v is not None:
                out[k] = v
        return out


def parse_credentials(value: str) -> DigestCredentials:
    """Parse an Authorization header value; :class:`SipParseError` if unusable."""
    if not _is_digest(value):
        raise SipParseError("Authorization scheme is not Digest")
    _, p = parse_auth_params(value)
    for name in ("username", "realm", "nonce", "uri", "response"):
        if name not in p:
            raise SipParseError(f"Authorization without {name}")
    alg = p.get("algorithm", "MD5")
    return DigestCredentials(
        username=p["username"], realm=p["realm"], nonce=p["nonce"], uri=p["uri"],
        response=p["response"], algorithm=_CANON_ALG.get(alg.upper(), alg),
        qop=p.get("qop"), nc=p.get("nc"), cnonce=p.get("cnonce"), opaque=p.get("opaque"),
        params=p,
    )


def find_credentials(request: object, realm: str, *,
                     proxy: bool = False) -> DigestCredentials | None:
    """The credentials of ``request`` meant for ``realm`` (a request may carry one
    Authorization per realm). If none names ``realm`` the first parseable one is
    returned, so verification reports WRONG_REALM. None when there are none at all;
    :class:`SipParseError` when every one present is malformed."""
    name = "proxy-authorization" if proxy else "authorization"
    values = request.header_lines(name)  # type: ignore[attr-defined]
    if not values:
        return None
    first: DigestCredentials | None = None
    error: SipParseError | None = None
    for value in values:
        try:
            c = parse_credentials(value)
        except SipParseError as err:
            error = error or err
            continue
        if c.realm == realm:
            return c
        first = first or c
    if first is None and error is not None:
        raise error
    return first


@dataclass(frozen=True, slots=True)
class DigestChallenge:
    """A parsed ``WWW-Authenticate``/``Proxy-Authenticate`` header."""

    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False
    params: dict[str, str] = field(default_factory=dict, repr=False)


def parse_challenge(value: str) -> DigestChallenge:
    if not _is_digest(value):
        raise SipParseError("Challenge scheme is not Digest")
    _, p = parse_auth_params(value)
    if "nonce" not in p or "realm" not in p:
        raise SipParseError("Challenge without realm or nonce")
    alg = p.get("algorithm", "MD5")
    qop = tuple(q.strip().lower() for q in p.get("qop", "").split(",") if q.strip())
    return DigestChallenge(
        realm=p["realm"], nonce=p["nonce"], algorithm=_CANON_ALG.get(alg.upper(), alg),
        qop=qop, opaque=p.get("opaque"), stale=p.get("stale", "").lower() == "true", params=p,
    )


# --------------------------------------------------------------------------- the computation


def compute_ha1(algorithm: str, username: str, realm: str, password: str) -> str:
    """H(username:realm:password) — what a user database may store instead of passwords."""
    h = _HASHES[algorithm.removesuffix("-sess")]
    return h(f"{username}:{realm}:{password}".encode())


def compute_response(
    algorithm: str, ha1: str, *, method: str, uri: str, nonce: str,
    qop: str | None = None, nc: str | None = None, cnonce: str | None = None,
) -> str:
    """The ``response`` value (RFC 2617 §3.2.2 / RFC 7616 §3.4.1), qop ``auth`` or none."""
    base = algorithm.removesuffix("-sess")
    h = _HASHES[base]
    if algorithm.endswith("-sess"):
        ha1 = h(f"{ha1}:{nonce}:{cnonce or ''}".encode())
    ha2 = h(f"{method}:{uri}".encode())
    if qop:
        return h(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}".encode())
    return h(f"{ha1}:{nonce}:{ha2}".encode())


# --------------------------------------------------------------------------- nonce counting


class NonceCounter(Protocol):
    """Keeps the highest ``nc`` seen per nonce, for ``ttl`` seconds."""

    async def advance(self, nonce: str, nc: int, ttl: int) -> bool:
        """Record ``nc`` if higher than any seen for ``nonce``; False = replay."""
        ...


class LocalNonceCounter:
    """In-process bounded LRU fallback when no shared store is configured.

    Bounded memory means an evicted nonce forgets its high-water mark; with the
    default size that needs >100k distinct live nonces within one TTL.
    """

    def __init__(self, max_entries: int = 100_000,
                 clock: Callable[[], float] = time.monotonic):
        self._max = max_entries
        self._clock = clock
        self._seen: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    async def advance(self, nonce: str, nc: int, ttl: int) -> bool:
        now = self._clock()
        entry = self._seen.get(nonce)
        if entry is not None:
            high, expires = entry
            if expires > now and nc <= high:
                return False
        self._seen[nonce] = (nc, now + ttl)
        self._seen.move_to_end(nonce)
        while len(self._seen) > self._max:
            self._seen.popitem(last=False)
        return True


class StoreNonceCounter:
    """Adapts ``ports.StateStore.advance_nonce_count`` to :class:`NonceCounter`."""

    def __init__(self, store: object):
        self._store = store

    async def advance(self, nonce: str, nc: int, ttl: int) -> bool:
        return await self._store.advance_nonce_count(  # type: ignore[attr-defined]
            nonce=nonce, nc=nc, ttl=ttl)


# --------------------------------------------------------------------------- server


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


_NONCE_RE = re.compile(r"[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{22}")
_NC_RE = re.compile(r"[0-9A-Fa-f]{8}")
_MAX_CLOCK_SKEW = 60  # seconds a nonce may come "from the future" (instances' clocks)


class DigestAuthenticator:
    """Server side: challenges and verification.

    ``secret``: HMAC key shared by all instances (settings NONCE_SECRET; random
    per process when None). ``ttl``: nonce lifetime before ``stale``.
    ``algorithms``: offered, most preferred first (e.g. ``("SHA-256", "MD5")``).
    ``wall_clock``: seconds since the epoch (nonces cross instances, so not
    monotonic). ``counter``: nc replay tracking; None disables it.
    """

    def __init__(
        self, secret: bytes | str | None = None, *, ttl: int = 300,
        algorithms: tuple[str, ...] = ("MD5",), opaque: str | None = None,
        counter: NonceCounter | None = None,
        wall_clock: Callable[[], float] = time.time,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ):
        if isinstance(secret, str):
            secret = secret.encode()
        self._secret = secret or os.urandom(32)
        self.ttl = ttl
        for alg in algorithms:
            if alg not in _HASHES:
                raise ValueError(f"unsupported digest algorithm {alg!r}")
        self.algorithms = algorithms
        self.opaque = opaque
        self.counter = counter
        self._clock = wall_clock
        self._random = random_bytes

    # ---- nonces

    def make_nonce(self, realm: str) -> str:
        body = struct.pack(">Q", int(self._clock())) + self._random(8)
        return f"{_b64(body)}.{_b64(self._mac(body, realm))}"

    def _mac(self, body: bytes, realm: str) -> bytes:
        return hmac.new(self._secret, body + realm.encode(), hashlib.sha256).digest()[:16]

    def check_nonce(self, nonce: str, realm: str) -> DigestOutcome:
        """OK, STALE (authentic but expired) or BAD_NONCE — without any state."""
        if not _NONCE_RE.fullmatch(nonce):
            return DigestOutcome.BAD_NONCE
        body_txt, mac_txt = nonce.split(".")
        body = _unb64(body_txt)
        # Compare the canonical text, not decoded bytes: base64's last character
        # carries spare bits, so several strings decode to the same bytes and
        # nonce-keyed state (nc counting) must see one spelling only.
        if body_txt != _b64(body) or not hmac.compare_digest(
                mac_txt.encode(), _b64(self._mac(body, realm)).encode()):
            return DigestOutcome.BAD_NONCE
        issued = struct.unpack(">Q", body[:8])[0]
        now = self._clock()
        if issued > now + _MAX_CLOCK_SKEW:
            return DigestOutcome.BAD_NONCE
        if now - issued > self.ttl:
            return DigestOutcome.STALE
        return DigestOutcome.OK

    # ---- challenges

    def challenge(self, realm: str, *, stale: bool = False) -> list[str]:
        """Header values for ``WWW-Authenticate`` (401) or ``Proxy-Authenticate`` (407),
        one per offered algorithm, preferred first (RFC 8760 §2.4)."""
        nonce = self.make_nonce(realm)
        out = []
        for alg in self.algorithms:
            parts = [f"Digest realm={quote(realm)}", f'nonce="{nonce}"']
            if self.opaque is not None:
                parts.append(f"opaque={quote(self.opaque)}")
            if stale:
                parts.append("stale=true")
            parts += [f"algorithm={alg}", 'qop="auth"']
            out.append(", ".join(parts))
        return out

    def challenge_headers(self, realm: str, *, stale: bool = False,
                          proxy: bool = False) -> list[tuple[str, str]]:
        name = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        return [(name, v) for v in self.challenge(realm, stale=stale)]

    # ---- verification

    async def verify(
        self, credentials: DigestCredentials | str, *, method: str, realm: str,
        password: str | None = None, ha1: str | None = None,
        static: DigestOutcome | None = None,
    ) -> DigestOutcome:
        """Check credentials for a request with ``method`` against ``realm``.

        Give the user's ``password``, or ``ha1`` = :func:`compute_ha1` for the
        credentials' algorithm. The nc counter is advanced only for a correct
        response, so wrong guesses cannot burn a legitimate client's counts.
        """
        if isinstance(credentials, str):
            try:
                credentials = parse_credentials(credentials)
            except SipParseError:
                return DigestOutcome.MALFORMED
        c = credentials
        # ``static``: the caller already ran check_static for these credentials (the
        # registrar's guards do): skip the second HMAC.
        outcome = static if static is not None else self.check_static(c, realm=realm)
        if outcome is not DigestOutcome.OK and outcome is not DigestOutcome.STALE:
            return outcome
        nonce_state = outcome
        if ha1 is None:
            if password is None:
                raise ValueError("verify() needs password or ha1")
            ha1 = compute_ha1(c.algorithm, c.username, c.realm, password)
        expected = compute_response(c.algorithm, ha1, method=method, uri=c.uri, nonce=c.nonce,
                                    qop=c.qop, nc=c.nc, cnonce=c.cnonce)
        if not hmac.compare_digest(expected.encode(), c.response.lower().encode()):
            return DigestOutcome.BAD_RESPONSE
        if nonce_state is DigestOutcome.STALE:
            return DigestOutcome.STALE
        if self.counter is not None and c.nc is not None and not await self.counter.advance(
                c.nonce, int(c.nc, 16), self.ttl + _MAX_CLOCK_SKEW):
            return DigestOutcome.REPLAY
        return DigestOutcome.OK

    def check_static(self, c: DigestCredentials, *, realm: str) -> DigestOutcome:
        """Every check that needs no password: fields, algorithm, realm, opaque, nonce.

        Returns OK, STALE or the failure. Useful when a webhook verifies the
        response itself but the nonce must still be ours and fresh.
        """
        if c.algorithm not in self.algorithms:
            return DigestOutcome.UNSUPPORTED_ALGORITHM
        if c.realm != realm:
            return DigestOutcome.WRONG_REALM
        if c.params.get("userhash", "false").lower() == "true":
            return DigestOutcome.MALFORMED  # RFC 7616 userhash is not supported
        if c.qop is None:
            # we always offer qop=auth; the RFC 2069 form has no replay protection
            return DigestOutcome.MALFORMED
        if c.qop.lower() != "auth" or not c.nc or not _NC_RE.fullmatch(c.nc) or not c.cnonce:
            return DigestOutcome.MALFORMED
        if not re.fullmatch(r"[0-9A-Fa-f]+", c.response) or len(c.response) != (
                32 if c.algorithm.startswith("MD5") else 64):
            return DigestOutcome.MALFORMED
        if self.opaque is not None and c.opaque != self.opaque:
            return DigestOutcome.BAD_NONCE
        return self.check_nonce(c.nonce, realm)


# --------------------------------------------------------------------------- client


class DigestClient:
    """Answers challenges to requests we send (srf's digest client, §7.3, done right:
    ``auth`` chosen from a qop list, SHA-256 preferred when offered, nc counted per
    nonce so a reused nonce gets increasing counts, the Request-URI as sent)."""

    def __init__(self, random_bytes: Callable[[int], bytes] = os.urandom,
                 max_nonces: int = 1024):
        self._random = random_bytes
        self._nc: OrderedDict[str, int] = OrderedDict()
        self._max = max_nonces

    def next_nc(self, nonce: str) -> int:
        n = self._nc.get(nonce, 0) + 1
        self._nc[nonce] = n
        self._nc.move_to_end(nonce)
        while len(self._nc) > self._max:
            self._nc.popitem(last=False)
        return n

    def authorization(
        self, challenge: DigestChallenge, *, method: str, uri: str, username: str,
        password: str,
    ) -> str:
        """The ``Authorization``/``Proxy-Authorization`` value answering ``challenge``."""
        alg = challenge.algorithm
        if alg not in _CANON_ALG.values():
            raise SipParseError(f"Unsupported digest algorithm {alg}")
        qop = "auth" if "auth" in challenge.qop else None
        if challenge.qop and qop is None:
            raise SipParseError("Challenge offers no qop we support")
        ha1 = compute_ha1(alg, username, challenge.realm, password)
        parts = [f"Digest username={quote(username)}", f"realm={quote(challenge.realm)}",
                 f"nonce={quote(challenge.nonce)}", f"uri={quote(uri)}"]
        nc = cnonce = None
        if qop or alg.endswith("-sess"):
            cnonce = self._random(8).hex()
        if qop:
            nc = f"{self.next_nc(challenge.nonce):08x}"
        response = compute_response(alg, ha1, method=method, uri=uri, nonce=challenge.nonce,
                                    qop=qop, nc=nc, cnonce=cnonce)
        parts += [f'response="{response}"', f"algorithm={alg}"]
        if challenge.opaque is not None:
            parts.append(f"opaque={quote(challenge.opaque)}")
        if qop:
            parts += [f"qop={qop}", f"nc={nc}", f'cnonce="{cnonce}"']
        elif cnonce:
            parts.append(f'cnonce="{cnonce}"')
        return ", ".join(parts)

    def answer(self, response: object, request: object, *, username: str,
               password: str) -> list[tuple[str, str]]:
        """Headers to add to the re-sent ``request`` after the 401/407 ``response``.

        One credentials header per realm challenged (a 407 can carry several);
        per realm the strongest algorithm we support wins. ``request.uri`` is the
        Request-URI as sent; the re-sent request must keep it.
        """
        status = response.status  # type: ignore[attr-defined]
        if status == 401:
            in_name, out_name = "www-authenticate", "Authorization"
        elif status == 407:
            in_name, out_name = "proxy-authenticate", "Proxy-Authorization"
        else:
            raise SipParseError(f"{status} is not a challenge")
        best: dict[str, DigestChallenge] = {}
        for value in response.header_values(in_name):  # type: ignore[attr-defined]
            try:
                ch = parse_challenge(value)
            except SipParseError:
                continue  # another scheme (Basic, Bearer…) or garbage: try the next
            if ch.algorithm not in _CANON_ALG.values():
                continue
            prev = best.get(ch.realm)
            if prev is None or _strength(ch.algorithm) > _strength(prev.algorithm):
                best[ch.realm] = ch
        if not best:
            raise SipParseError("No usable digest challenge")
        method = request.method  # type: ignore[attr-defined]
        uri = request.uri  # type: ignore[attr-defined]
        return [(out_name, self.authorization(ch, method=method, uri=uri, username=username,
                                              password=password)) for ch in best.values()]


def _strength(alg: str) -> int:
    return 2 if alg.startswith("SHA-256") else 1
