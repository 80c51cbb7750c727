"""DATA_SOURCE=pg against a real PostgreSQL (migrations, import, NOTIFY, polling)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from engine.config.json_source import read_config_file
from engine.config.model import ConfigSnapshot
from engine.config.pg import (
    SchemaNotMigrated,
    applied_migrations,
    connect,
    import_snapshot,
    migrate,
    migrations,
)
from engine.config.pg_source import PgSource
from engine.config.validate import snapshot_from_json_text
from engine.errors import ConfigError
from engine.settings import Settings, load_settings
from tests.fixtures.postgres import PgParams
from tests.fixtures.procs import free_port

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "config.json"


def settings_for(params: PgParams, **extra: str) -> Settings:
    return load_settings({"DATA_SOURCE": "pg", **params.env(), "CONFIG_TTL": "60",
                          "HTTP_TIMEOUT": "5", **extra})


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


@pytest.fixture
async def db(pg_database: PgParams) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A migrated database holding examples/config.json; yields an autocommit connection."""
    conn = await connect(settings_for(pg_database))
    try:
        await migrate(conn)
        await import_snapshot(conn, read_config_file(EXAMPLE))
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def source(pg_database: PgParams, db: psycopg.AsyncConnection[Any]
                 ) -> AsyncIterator[PgSource]:
    src = PgSource(settings_for(pg_database), retry_delay=0.05, debounce=0.01)
    await src.start()
    try:
        await asyncio.wait_for(src.listening.wait(), 5)
        yield src
    finally:
        await src.close()


async def test_migrate_twice_is_idempotent(pg_database: PgParams) -> None:
    settings = settings_for(pg_database)
    conns = [await connect(settings) for _ in range(3)]
    try:
        assert await applied_migrations(conns[0]) == {}
        applied, edited = await migrate(conns[0])
        assert applied == [f"{m.version}_{m.name}" for m in migrations()]
        assert applied[:2] == ["0001_config_tables", "0002_change_notify"] and edited == []
        assert await migrate(conns[0]) == ([], [])
        # concurrent runs serialise on the advisory lock: nothing is applied twice
        results = await asyncio.gather(migrate(conns[1]), migrate(conns[2]))
        assert results == [([], []), ([], [])]
        cur = await conns[0].execute("SELECT count(*) FROM schema_migrations")
        assert (await cur.fetchone()) == (len(migrations()),)
    finally:
        for conn in conns:
            await conn.close()


async def test_concurrent_first_migrations(pg_database: PgParams) -> None:
    settings = settings_for(pg_database)
    a, b = await connect(settings), await connect(settings)
    try:
        results = await asyncio.gather(migrate(a), migrate(b))
        assert sorted(len(r[0]) for r in results) == [0, len(migrations())]
    finally:
        await a.close()
        await b.close()


async def test_import_then_lookups_match_the_json_source(source: PgSource) -> None:
    expected = read_config_file(EXAMPLE)
    snap = source.snapshot
    assert snap.list_domains() == expected.list_domains()
    for name in expected.list_domains():
        want, got = expected.get_domain(name), snap.get_domain(name)
        assert want is not None and got is not None
        assert got.id == want.id
        assert got.clients == want.clients
        assert got.trunks == want.trunks
    # json (not jsonb) dialplans keep their key order
    client = snap.get_domain("pbx.example").clients[0]  # type: ignore[union-attr]
    assert client.dialplan is not None
    assert client.dialplan.keys() == ["1???", "{999,112}", "0*", "09*"]
    assert source.get_trunk_by_ip("pbx.example", "2001:db8:10::5").name == "carrier"  # type: ignore[union-attr]
    assert source.get_trunk_by_id("pbx.example", "2").name == "branch-office"  # type: ignore[union-attr]
    assert [t.id for t in source.get_auth_trunks("pbx.example")] == [2]
    assert [t.id for t in source.get_reg_trunks("pbx.example")] == [3]
    assert source.description.startswith("pg:postgres@127.0.0.1:")


async def test_sql_change_is_picked_up_via_notify(
        source: PgSource, db: psycopg.AsyncConnection[Any],
        caplog: pytest.LogCaptureFixture) -> None:
    assert source.interval == 60  # polling cannot explain anything below
    changes: asyncio.Queue[ConfigSnapshot] = asyncio.Queue()
    source.on_change(changes.put_nowait)
    assert source.get_trunk_by_ip("pbx.example", "192.0.2.10") is None

    await db.execute("UPDATE trunks SET inbound = '[\"192.0.2.0/24\"]' WHERE name = 'carrier'")
    snap = await asyncio.wait_for(changes.get(), 5)
    assert snap.get_trunk_by_ip("pbx.example", "192.0.2.10").name == "carrier"  # type: ignore[union-attr]

    # a new domain with a client, written in one transaction: one swap
    async with db.transaction():
        cur = await db.execute("INSERT INTO domains (domain) VALUES ('new.example') RETURNING id")
        (ref,) = await cur.fetchone()  # type: ignore[misc]
        await db.execute("INSERT INTO clients (domain_ref, username, reghook) VALUES "
                         "(%s, '5*', 'http://hooks.example/reg')", (ref,))
    snap = await asyncio.wait_for(changes.get(), 5)
    dom = snap.get_domain("new.example")
    assert dom is not None and dom.id == ref  # domain_id NULL → the row id
    assert snap.get_reg_hook("new.example", "500").url == "http://hooks.example/reg"  # type: ignore[union-attr]

    # an invalid edit is refused with table and row id; the last good config stays
    cur = await db.execute("SELECT id FROM trunks WHERE name = 'carrier'")
    (row_id,) = await cur.fetchone()  # type: ignore[misc]
    await db.execute("UPDATE trunks SET inbound = '[\"192.0.2.0/99\"]' WHERE id = %s", (row_id,))
    await eventually(lambda: source.last_error is not None)
    diag = source.last_error.diagnostics[0]  # type: ignore[union-attr]
    assert (diag.file, diag.line, diag.code) == (f"pg:{source.settings.db_name}.trunks", row_id,
                                                 "CONFIG_CIDR")
    assert diag.path == "$.domains['pbx.example'].trunks[0].inbound[0]"
    assert source.snapshot is snap and changes.empty()
    assert any(r.getMessage().startswith("config refused") for r in caplog.records)

    await db.execute("UPDATE trunks SET inbound = '[\"192.0.2.0/28\"]' WHERE id = %s", (row_id,))
    snap = await asyncio.wait_for(changes.get(), 5)
    assert snap.get_trunk_by_ip("pbx.example", "192.0.2.20") is None
    assert source.last_error is None
    assert "change-me" not in caplog.text


async def test_polling_fallback_without_notifications(
        pg_database: PgParams, db: psycopg.AsyncConnection[Any]) -> None:
    src = PgSource(settings_for(pg_database, CONFIG_TTL="0.1"), retry_delay=0.05)
    await src.start()
    try:
        await db.execute("ALTER TABLE trunks DISABLE TRIGGER trunks_changed")
        await db.execute("UPDATE trunks SET name = 'renamed' WHERE name = 'carrier'")
        await eventually(lambda: src.get_trunk_by_name("pbx.example", "renamed") is not None)
    finally:
        await src.close()


async def test_listen_connection_is_re_established(
        source: PgSource, db: psycopg.AsyncConnection[Any],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="engine.config")
    await db.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND query LIKE 'LISTEN%%' AND pid <> pg_backend_pid()")
    await eventually(lambda: "config LISTEN connection lost" in caplog.text)
    await asyncio.wait_for(source.listening.wait(), 5)
    await db.execute("UPDATE trunks SET label = 'after-reconnect' WHERE name = 'carrier'")
    await eventually(
        lambda: source.get_trunk_by_name("pbx.example", "after-reconnect") is not None)


async def test_import_modes(pg_database: PgParams, db: psycopg.AsyncConnection[Any]) -> None:
    other = snapshot_from_json_text(
        '{"domains": {"other.example": {"domain_id": "tenant-2", "clients": '
        '[{"username": "*", "reghook": "http://h/reg"}]}}}', file="other.json")
    counts = await import_snapshot(db, other, mode="merge")
    assert counts == {"domains": 1, "clients": 1, "trunks": 0, "removed_domains": 0}
    src = PgSource(settings_for(pg_database))
    try:
        snap = await src.load()
        assert sorted(snap.list_domains()) == ["other.example", "pbx.example"]
        assert snap.get_domain("other.example").id == "tenant-2"  # type: ignore[union-attr]
        # merge again: that domain is replaced, not duplicated
        assert (await import_snapshot(db, other, mode="merge"))["removed_domains"] == 1
        assert sorted((await src.load()).list_domains()) == ["other.example", "pbx.example"]
        # replace: the database holds exactly the imported domains
        counts = await import_snapshot(db, other)
        assert counts["removed_domains"] == 2
        assert (await src.load()).list_domains() == ["other.example"]
    finally:
        await src.close()
    with pytest.raises(ValueError):
        await import_snapshot(db, other, mode="upsert")


async def test_fallback_urls_survive_import_and_load(pg_database: PgParams,
                                                    db: psycopg.AsyncConnection[Any]) -> None:
    """reghookFallback has its own column (migration 0003); callHookFallback lives in the
    dialplan JSON (issue 10, defect 9)."""
    plan = {"1*": {"callHook": "http://h/call", "callHookFallback": "http://b/call"}}
    text = ('{"domains": {"fb.example": {"domain_id": 7, "clients": [{"username": "*", '
            '"reghook": "http://h/reg", "reghookFallback": "http://b/reg", '
            f'"dialplan": {json.dumps(plan)}}}]}}}}}}')
    await import_snapshot(db, snapshot_from_json_text(text, file="fb.json"), mode="merge")
    src = PgSource(settings_for(pg_database))
    try:
        client = (await src.load()).domain("fb.example").clients[0]  # type: ignore[union-attr]
    finally:
        await src.close()
    assert client.reghook_fallback == "http://b/reg"
    assert client.dialplan.match("100").call_hook_fallback == "http://b/call"  # type: ignore[union-attr]
    cur = await db.execute("SELECT id FROM domains LIMIT 1")
    (ref,) = await cur.fetchone()  # type: ignore[misc]
    with pytest.raises(psycopg.errors.CheckViolation):
        await db.execute("INSERT INTO clients (domain_ref, username, reghook, reghook_fallback) "
                         "VALUES (%s, 'x', 'http://h/r', 'http://h/r')", (ref,))


async def test_database_refuses_a_client_without_credentials(
        db: psycopg.AsyncConnection[Any]) -> None:
    cur = await db.execute("SELECT id FROM domains LIMIT 1")
    (ref,) = await cur.fetchone()  # type: ignore[misc]
    with pytest.raises(psycopg.errors.CheckViolation, match="clients_credentials"):
        await db.execute("INSERT INTO clients (domain_ref, username, password) "
                         "VALUES (%s, 'x', '')", (ref,))


async def test_unmigrated_database_is_refused(pg_database: PgParams) -> None:
    src = PgSource(settings_for(pg_database), retry_delay=10)  # no retry may happen
    with pytest.raises(SchemaNotMigrated, match="dragonpbx db migrate"):
        await asyncio.wait_for(src.start(), 5)
    await src.close()


async def test_unreachable_database(pg_database: PgParams) -> None:
    settings = load_settings({"DATA_SOURCE": "pg", **pg_database.env(),
                              "DB_PORT": str(free_port()), "DB_PASSWORD": "secret-db-pw"})
    src = PgSource(settings, retry_delay=0.01, start_attempts=2)
    with pytest.raises(ConfigError, match="after 2 attempts") as info:
        await src.start()
    assert "secret-db-pw" not in str(info.value)
    await src.close()
