"""Immutable configuration model and the indexed ``ConfigSnapshot``.

A snapshot is built once per loaded configuration (file change, API poll,
database NOTIFY) and then only read: every REGISTER/INVITE does a domain
lookup and a client glob match against it, so globs, CIDRs and id/name
indexes are compiled here, once, and lookups are dict probes or short scans.

Secrets (client/trunk passwords) are excluded from ``repr`` and from
``Trunk.public_view()`` (S-4, S-5).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from engine.config.matching import (
    Dialplan,
    FirstMatch,
    Glob,
    IPAddress,
    IPNetwork,
    NetworkTable,
    compile_glob,
    parse_network,
)
from engine.errors import Diagnostic

TrunkId = int | str


@dataclass(frozen=True, slots=True)
class Outbound:
    """Where outbound calls to a trunk go, and the digest credentials for them."""

    host: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class RegistrationTarget:
    """What the trunk-registration manager registers: ``sip:{host}`` as ``username``."""

    host: str
    username: str
    password: str = field(repr=False)
    origin: str = "reg"  # "reg" (regHost/regUser/regPass) | "outbound" (outbound.*)


@dataclass(frozen=True)
class Trunk:
    """A SIP trunk (spec §10.1). ``name`` and ``label`` are both accepted (D-23)."""

    id: TrunkId
    name: str | None = None
    label: str | None = None
    inbound: tuple[str, ...] = ()
    outbound: Outbound | None = None
    dialplan: Dialplan | None = None
    codecs: tuple[str, ...] | None = None
    auth_type: str | None = None  # "authentication" | "registration" | None
    auth_user: str | None = None
    auth_pass: str | None = field(default=None, repr=False)
    reg_host: str | None = None
    reg_user: str | None = None
    reg_pass: str | None = field(default=None, repr=False)
    register: bool | None = None  # False = never register, even with credentials
    number_from: str | None = None  # "ruri" | "to" | None (engine default)
    networks: tuple[IPNetwork, ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.inbound and not self.networks:
            object.__setattr__(self, "networks", tuple(parse_network(c) for c in self.inbound))

    @property
    def display_name(self) -> str | None:
        return self.name if self.name is not None else self.label

    def has_name(self, name: str) -> bool:
        return name is not None and name in (self.name, self.label)

    @property
    def registration(self) -> RegistrationTarget | None:
        """Outbound registration of this trunk, or None.

        Registers when ``authType: "registration"`` with regHost/regUser/regPass
        (what the original's code does) or when ``outbound.username/password``
        are present (what its documentation promised), unless ``register: false``.
        """
        if self.register is False:
            return None
        if self.auth_type == "registration" and self.reg_host and self.reg_user and self.reg_pass:
            return RegistrationTarget(self.reg_host, self.reg_user, self.reg_pass, "reg")
        ob = self.outbound
        if ob is not None and ob.host and ob.username and ob.password:
            return RegistrationTarget(ob.host, ob.username, ob.password, "outbound")
        return None

    @property
    def needs_registration(self) -> bool:
        return self.registration is not None

    @property
    def is_auth_trunk(self) -> bool:
        """Inbound calls authenticate with a digest (authUser/authPass)."""
        return self.auth_type == "authentication" and bool(self.auth_user and self.auth_pass)

    def public_view(self) -> dict[str, Any]:
        """What may leave the process (CallHook ``source``): id and name only (S-4)."""
        return {"id": self.id, "name": self.display_name}


@dataclass(frozen=True)
class Client:
    """A client (phone) entry: username glob plus RegHook URL or static password.

    ``reghook_fallback`` (config ``reghookFallback``) is asked when the RegHook fails.
    """

    username: str
    reghook: str | None = None
    password: str | None = field(default=None, repr=False)
    dialplan: Dialplan | None = None
    codecs: tuple[str, ...] | None = None
    expires: int | None = None
    id: Any = None
    reghook_fallback: str | None = None
    glob: Glob = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "glob", compile_glob(self.username))


# --------------------------------------------------------------------------- RegHook results


@dataclass(frozen=True, slots=True)
class RegHookClient:
    """Authenticate through the client's RegHook (HTTP POST to ``url``; to ``fallback``,
    when set, if ``url`` fails)."""

    url: str
    client: Client
    fallback: str | None = None


@dataclass(frozen=True, slots=True)
class PasswordClient:
    """Authenticate locally against ``client.password`` (never empty, S-1)."""

    client: Client


@dataclass(frozen=True, slots=True)
class NoClient:
    """No client glob matches: reject (403), never an empty-password digest (S-1)."""


NO_CLIENT = NoClient()
RegHookResult = RegHookClient | PasswordClient | NoClient


# --------------------------------------------------------------------------- loose ids

_JS_DECIMAL = re.compile(r"^[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?)$")


def js_number(value: Any) -> float | None:
    """JavaScript ``ToNumber`` for ids (None = NaN), so that ``"1" == 1`` as in the original."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value) if not math.isnan(value) else None
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text:
        return 0.0
    low = text.lower()
    try:
        if low.startswith(("0x", "0o", "0b")):
            return float(int(low[2:], {"x": 16, "o": 8, "b": 2}[low[1]]))
        if _JS_DECIMAL.match(text):
            return float(text)
    except ValueError:
        return None
    if text in ("Infinity", "+Infinity", "-Infinity"):
        return float(text.replace("Infinity", "inf"))
    return None


def loose_equal(a: Any, b: Any) -> bool:
    """JavaScript ``==`` restricted to the string/number ids a config can hold."""
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    na, nb = js_number(a), js_number(b)
    return na is not None and na == nb


# --------------------------------------------------------------------------- domain


@dataclass(frozen=True, eq=False)
class Domain:
    """A tenant domain with its clients and trunks, indexed for the hot path."""

    name: str
    id: int | str
    clients: tuple[Client, ...] = ()
    trunks: tuple[Trunk, ...] = ()
    auth_trunks: tuple[Trunk, ...] = field(init=False, repr=False)
    reg_trunks: tuple[Trunk, ...] = field(init=False, repr=False)
    _clients: FirstMatch[Client] = field(init=False, repr=False)
    _by_ip: NetworkTable[Trunk] = field(init=False, repr=False)
    _by_str: dict[str, int] = field(init=False, repr=False)
    _by_num: dict[float, int] = field(init=False, repr=False)
    _by_str_num: dict[float, int] = field(init=False, repr=False)
    _by_name: dict[str, Trunk] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        by_str: dict[str, int] = {}
        by_num: dict[float, int] = {}
        by_str_num: dict[float, int] = {}
        by_name: dict[str, Trunk] = {}
        for index, t in enumerate(self.trunks):
            num = js_number(t.id)
            if isinstance(t.id, str):
                by_str.setdefault(t.id, index)
                if num is not None:
                    by_str_num.setdefault(num, index)
            elif num is not None:
                by_num.setdefault(num, index)
            for n in (t.name, t.label):
                if n is not None:
                    by_name.setdefault(n, t)  # first trunk with that name or label
        values = {
            "auth_trunks": tuple(t for t in self.trunks if t.is_auth_trunk),
            "reg_trunks": tuple(t for t in self.trunks if t.needs_registration),
            "_clients": FirstMatch((c.glob, c) for c in self.clients),
            "_by_ip": NetworkTable((t.networks, t) for t in self.trunks),
            "_by_str": by_str, "_by_num": by_num, "_by_str_num": by_str_num,
            "_by_name": by_name,
        }
        for key, value in values.items():
            object.__setattr__(self, key, value)

    def match_client(self, user: str | None) -> Client | None:
        """First client (array order) whose username glob matches ``user`` (spec §2.4)."""
        return self._clients.find(user)

    def reg_hook(self, user: str | None) -> RegHookResult:
        client = self.match_client(user)
        if client is None:
            return NO_CLIENT
        if client.reghook:
            return RegHookClient(client.reghook, client, client.reghook_fallback)
        if client.password:
            return PasswordClient(client)
        return NO_CLIENT  # unreachable for validated configs (S-1)

    def trunk_by_ip(self, ip: str | IPAddress | None) -> Trunk | None:
        """First trunk (array order) whose inbound CIDRs contain ``ip``."""
        return self._by_ip.find(ip)

    def trunk_by_id(self, trunk_id: Any) -> Trunk | None:
        """First trunk whose id loosely equals ``trunk_id`` ("1" == 1, as in the original)."""
        if trunk_id is None or isinstance(trunk_id, bool):
            return None
        num = js_number(trunk_id)
        hits: list[int | None] = []
        if isinstance(trunk_id, str):
            hits.append(self._by_str.get(trunk_id))  # string == string: exact
            if num is not None:
                hits.append(self._by_num.get(num))  # string == number: numeric
        elif num is not None:
            hits += [self._by_num.get(num), self._by_str_num.get(num)]
        found = [h for h in hits if h is not None]
        return self.trunks[min(found)] if found else None

    def trunk_by_name(self, name: str | None) -> Trunk | None:
        """First trunk whose ``name`` or ``label`` equals ``name`` (D-23)."""
        if name is None:
            return None
        return self._by_name.get(name)

    def auth_trunks_for(self, username: str | None) -> tuple[Trunk, ...]:
        """Auth trunks whose authUser equals the digest username (spec §1.2 step 5)."""
        return tuple(t for t in self.auth_trunks if t.auth_user == username)

    def __repr__(self) -> str:
        return (f"Domain({self.name!r}, id={self.id!r}, clients={len(self.clients)}, "
                f"trunks={len(self.trunks)})")


# --------------------------------------------------------------------------- snapshot


@dataclass(frozen=True, eq=False)
class ConfigSnapshot:
    """One loaded configuration. Every spec §11.3 lookup, all synchronous.

    Unknown domains give None/empty results instead of the original's throw.
    Domain names are matched exactly first, then case-insensitively (host
    names are case-insensitive, RFC 3261 §19.1.4).
    """

    domains: Mapping[str, Domain]
    source: str = ""
    fingerprint: str = ""
    loaded_at: float = field(default_factory=time.time)
    warnings: tuple[Diagnostic, ...] = ()
    precedence: str = "specific"
    _folded: dict[str, Domain] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        domains = MappingProxyType(dict(self.domains))
        object.__setattr__(self, "domains", domains)
        folded: dict[str, Domain] = {}
        for name, dom in domains.items():
            folded.setdefault(name.casefold(), dom)
        object.__setattr__(self, "_folded", folded)

    def domain(self, name: str | None) -> Domain | None:
        if not name:
            return None
        dom = self.domains.get(name)
        if dom is None:
            dom = self._folded.get(name.casefold())
        return dom

    # spec §11.3, one function each
    def get_domain(self, name: str | None) -> Domain | None:
        return self.domain(name)

    def list_domains(self) -> list[str]:
        return list(self.domains)

    def get_reg_hook(self, domain: str | None, user: str | None) -> RegHookResult:
        dom = self.domain(domain)
        return dom.reg_hook(user) if dom is not None else NO_CLIENT

    def get_trunk_by_ip(self, domain: str | None, ip: str | IPAddress | None) -> Trunk | None:
        dom = self.domain(domain)
        return dom.trunk_by_ip(ip) if dom is not None else None

    def get_trunk_by_id(self, domain: str | None, trunk_id: Any) -> Trunk | None:
        dom = self.domain(domain)
        return dom.trunk_by_id(trunk_id) if dom is not None else None

    def get_trunk_by_name(self, domain: str | None, name: str | None) -> Trunk | None:
        dom = self.domain(domain)
        return dom.trunk_by_name(name) if dom is not None else None

    def get_auth_trunks(self, domain: str | None) -> tuple[Trunk, ...]:
        dom = self.domain(domain)
        return dom.auth_trunks if dom is not None else ()

    def get_reg_trunks(self, domain: str | None) -> tuple[Trunk, ...]:
        dom = self.domain(domain)
        return dom.reg_trunks if dom is not None else ()

    def counts(self) -> dict[str, int]:
        return {
            "domains": len(self.domains),
            "clients": sum(len(d.clients) for d in self.domains.values()),
            "trunks": sum(len(d.trunks) for d in self.domains.values()),
            "reg_trunks": sum(len(d.reg_trunks) for d in self.domains.values()),
        }

    def __repr__(self) -> str:
        return f"ConfigSnapshot({self.source!r}, {self.counts()}, {self.fingerprint[:12]!r})"


__all__ = [
    "NO_CLIENT", "Client", "ConfigSnapshot", "Domain", "RegHookClient", "NoClient", "Outbound",
    "PasswordClient", "RegHookResult", "RegistrationTarget", "Trunk", "js_number",
    "loose_equal",
]
