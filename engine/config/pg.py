"""PostgreSQL configuration store: connection, migrations, import, snapshot loading.

* ``migrate(conn)`` applies ``engine/config/migrations/NNNN_name.sql`` in
  version order, each recorded in ``schema_migrations`` (with a checksum),
  all in one transaction under an advisory lock: idempotent and safe to run
  from several hosts at once.
* ``import_snapshot(conn, snapshot, mode)`` writes a validated configuration
  in one transaction. ``replace`` (default): the database ends up holding
  exactly the file's domains. ``merge``: the file's domains replace the
  same-named ones (with all their clients and trunks); other domains stay.
* ``load_snapshot(conn, …)`` reads the three tables in one REPEATABLE READ
  transaction, rebuilds the JSON shape and validates it like any other
  source; diagnostics name the table and row id (``pg:<db>.trunks:<id>:0``).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Json, Jsonb

from engine.config.jsonpos import JsonPath
from engine.config.model import ConfigSnapshot
from engine.config.validate import Collector, Locator, snapshot_from_internal
from engine.errors import ConfigError
from engine.settings import Settings

CHANNEL = "dragonpbx_config"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK_KEY = 0x647062782D636667  # "dpbx-cfg": serialises migrate/import across hosts


class SchemaNotMigrated(ConfigError):
    """The database lacks shipped migrations: ``dragonpbx db migrate`` is needed."""


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@cache
def migrations() -> tuple[Migration, ...]:
    found = []
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        m = _MIGRATION_FILE.match(path.name)
        if not m:
            raise RuntimeError(f"migration file name {path.name!r} is not NNNN_name.sql")
        found.append(Migration(m.group(1), m.group(2), path.read_text(encoding="utf-8")))
    return tuple(found)


def describe(settings: Settings) -> str:
    """``pg:user@host:port/db`` — never the password."""
    return f"pg:{settings.db_user}@{settings.db_host}:{settings.db_port}/{settings.db_name}"


async def connect(settings: Settings, *, statement_timeout: float | None = None
                  ) -> psycopg.AsyncConnection[Any]:
    """An autocommit connection from the DB_* settings; ``ConfigError`` if it fails."""
    options = ""
    if statement_timeout:
        options = f"-c statement_timeout={int(statement_timeout * 1000)}"
    try:
        return await psycopg.AsyncConnection.connect(
            host=settings.db_host, port=settings.db_port, user=settings.db_user,
            password=settings.db_password, dbname=settings.db_name, autocommit=True,
            connect_timeout=max(2, int(min(settings.http_timeout, 30))),
            application_name="dragonpbx", options=options,
        )
    except psycopg.Error as exc:
        raise ConfigError(f"{describe(settings)}: cannot connect: {first_line(exc)}") from None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# --------------------------------------------------------------------------- migrations


async def applied_migrations(conn: psycopg.AsyncConnection[Any]) -> dict[str, str]:
    """version → checksum of what the database has applied ({} before the first migrate)."""
    cur = await conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
    row = await cur.fetchone()
    if not row or not row[0]:
        return {}
    cur = await conn.execute("SELECT version, checksum FROM schema_migrations")
    return {v: c for v, c in await cur.fetchall()}


async def migrate(conn: psycopg.AsyncConnection[Any]) -> tuple[list[str], list[str]]:
    """Apply pending migrations. Returns (applied now, already applied but edited since)."""
    applied_now: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version TEXT PRIMARY KEY, "
            "name TEXT NOT NULL, checksum TEXT NOT NULL, "
            "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
        done = await applied_migrations(conn)
        for mig in migrations():
            if mig.version in done:
                continue
            await conn.execute(mig.sql.encode())  # no parameters: a multi-statement script
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                (mig.version, mig.name, mig.checksum))
            applied_now.append(f"{mig.version}_{mig.name}")
    edited = [f"{m.version}_{m.name}" for m in migrations()
              if m.version in done and done[m.version] != m.checksum]
    return applied_now, edited


async def check_schema(conn: psycopg.AsyncConnection[Any], source: str) -> None:
    """``ConfigError`` unless every shipped migration has been applied."""
    done = await applied_migrations(conn)
    missing = [f"{m.version}_{m.name}" for m in migrations() if m.version not in done]
    if missing:
        raise SchemaNotMigrated(f"{source}: database schema is not up to date (missing "
                          f"{', '.join(missing)}); run `dragonpbx db migrate`")


# --------------------------------------------------------------------------- import


def _jsonb(value: Any) -> Jsonb | None:
    return None if value is None else Jsonb(value)


async def import_snapshot(conn: psycopg.AsyncConnection[Any], snapshot: ConfigSnapshot, *,
                          mode: str = "replace") -> dict[str, int]:
    """Write ``snapshot`` in one transaction (see the module docstring for the modes)."""
    if mode not in ("replace", "merge"):
        raise ValueError("mode must be 'replace' or 'merge'")
    counts = {"domains": 0, "clients": 0, "trunks": 0, "removed_domains": 0}
    async with conn.transaction(), conn.cursor() as cur:
        await cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        if mode == "replace":
            await cur.execute("DELETE FROM domains")
        else:
            await cur.execute("DELETE FROM domains WHERE domain = ANY(%s)",
                              (list(snapshot.domains),))
        counts["removed_domains"] = max(cur.rowcount, 0)
        for dom in snapshot.domains.values():
            await cur.execute("INSERT INTO domains (domain, domain_id) VALUES (%s, %s) "
                              "RETURNING id", (dom.name, Jsonb(dom.id)))
            row = await cur.fetchone()
            assert row is not None
            ref = row[0]
            await cur.executemany(
                "INSERT INTO clients (domain_ref, position, client_id, username, reghook, "
                "password, dialplan, codecs, expires, reghook_fallback) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                [(ref, pos, _jsonb(c.id), c.username, c.reghook, c.password,
                  Json(c.dialplan.as_dict()) if c.dialplan is not None else None,
                  _jsonb(list(c.codecs) if c.codecs is not None else None), c.expires,
                  c.reghook_fallback)
                 for pos, c in enumerate(dom.clients)])
            await cur.executemany(
                "INSERT INTO trunks (domain_ref, position, trunk_id, name, label, inbound, "
                "outbound_host, outbound_username, outbound_password, dialplan, codecs, "
                "auth_type, auth_user, auth_pass, reg_host, reg_user, reg_pass, register, "
                "number_from) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
                "%s, %s, %s, %s, %s)",
                [(ref, pos, Jsonb(t.id), t.name, t.label, Jsonb(list(t.inbound)),
                  t.outbound.host if t.outbound else None,
                  t.outbound.username if t.outbound else None,
                  t.outbound.password if t.outbound else None,
                  Json(t.dialplan.as_dict()) if t.dialplan is not None else None,
                  _jsonb(list(t.codecs) if t.codecs is not None else None), t.auth_type,
                  t.auth_user, t.auth_pass, t.reg_host, t.reg_user, t.reg_pass, t.register,
                  t.number_from)
                 for pos, t in enumerate(dom.trunks)])
            counts["domains"] += 1
            counts["clients"] += len(dom.clients)
            counts["trunks"] += len(dom.trunks)
    return counts


# --------------------------------------------------------------------------- loading


class RowLocator(Locator):
    """Diagnostics name the table and the row id: ``pg:<db>.<table>:<row id>:0``."""

    def __init__(self, dbname: str, rows: dict[JsonPath, tuple[str, int]]):
        super().__init__(f"pg:{dbname}")
        self.rows = rows

    def locate(self, path: JsonPath, *, key: bool = False) -> tuple[str, int, int]:
        probe = tuple(path)
        while probe:
            if probe in self.rows:
                table, row_id = self.rows[probe]
                return f"{self.file}.{table}", row_id, 0
            probe = probe[:-1]
        return self.file, 0, 0


def _present(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


async def fetch_internal(conn: psycopg.AsyncConnection[Any]
                         ) -> tuple[dict[str, Any], dict[JsonPath, tuple[str, int]]]:
    """The tables as the JSON configuration shape, plus JSON path → (table, row id)."""
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        await cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        await cur.execute("SELECT id, domain, domain_id FROM domains ORDER BY id")
        domains = await cur.fetchall()
        await cur.execute("SELECT * FROM clients ORDER BY domain_ref, position, id")
        clients = await cur.fetchall()
        await cur.execute("SELECT * FROM trunks ORDER BY domain_ref, position, id")
        trunks = await cur.fetchall()
    out: dict[str, Any] = {}
    rows: dict[JsonPath, tuple[str, int]] = {}
    by_ref: dict[int, tuple[str, dict[str, Any]]] = {}
    for d in domains:
        entry = {"domain_id": d["domain_id"] if d["domain_id"] is not None else d["id"],
                 "clients": [], "trunks": []}
        out[d["domain"]] = entry
        by_ref[d["id"]] = (d["domain"], entry)
        rows[("domains", d["domain"])] = ("domains", d["id"])
    for c in clients:
        name, entry = by_ref[c["domain_ref"]]
        rows[("domains", name, "clients", len(entry["clients"]))] = ("clients", c["id"])
        entry["clients"].append(_present({
            "id": c["client_id"], "username": c["username"], "reghook": c["reghook"],
            "password": c["password"], "dialplan": c["dialplan"], "codecs": c["codecs"],
            "expires": c["expires"], "reghookFallback": c.get("reghook_fallback")}))
    for t in trunks:
        name, entry = by_ref[t["domain_ref"]]
        rows[("domains", name, "trunks", len(entry["trunks"]))] = ("trunks", t["id"])
        outbound = _present({"host": t["outbound_host"], "username": t["outbound_username"],
                             "password": t["outbound_password"]})
        entry["trunks"].append(_present({
            "id": t["trunk_id"] if t["trunk_id"] is not None else t["id"], "name": t["name"],
            "label": t["label"], "inbound": t["inbound"], "outbound": outbound or None,
            "dialplan": t["dialplan"], "codecs": t["codecs"], "authType": t["auth_type"],
            "authUser": t["auth_user"], "authPass": t["auth_pass"], "regHost": t["reg_host"],
            "regUser": t["reg_user"], "regPass": t["reg_pass"], "register": t["register"],
            "number_from": t["number_from"]}))
    return {"domains": out}, rows


async def load_snapshot(conn: psycopg.AsyncConnection[Any], *, dbname: str, precedence: str,
                        source: str) -> ConfigSnapshot:
    data, rows = await fetch_internal(conn)
    locator = RowLocator(dbname, rows)
    return snapshot_from_internal(data, locator=locator, precedence=precedence, source=source,
                                  col=Collector(locator))


__all__ = [
    "CHANNEL", "Migration", "RowLocator", "SchemaNotMigrated", "applied_migrations",
    "check_schema", "connect", "describe", "fetch_internal", "import_snapshot", "load_snapshot",
    "migrate", "migrations",
]
