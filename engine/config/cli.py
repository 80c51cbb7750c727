"""CLI commands for configuration: ``config check``, ``db migrate``, ``db import``.

The main CLI mounts them with ``register(subparsers)``; each parser sets
``func``, called as ``func(args, settings) -> exit code``. The functions are
synchronous (they run their own event loop) so they also work from tests and
scripts; ``*_async`` variants exist for callers that already run a loop.
Exit codes: 0 success, 1 invalid configuration or failed operation.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any, TextIO

from engine.config.api_source import redact_url
from engine.config.model import ConfigSnapshot, Domain, Trunk
from engine.errors import ConfigError
from engine.settings import Settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``config`` and ``db`` command groups to the main CLI's subparsers."""
    fmt = argparse.RawDescriptionHelpFormatter
    config = subparsers.add_parser(
        "config", help="inspect the configuration (domains, clients, trunks)",
        description="Commands about the configuration data source chosen by DATA_SOURCE "
                    "(json: CONFIG_FILE, api: CONFIG_URL, pg: DB_*).")
    config_cmds = config.add_subparsers(dest="config_command", metavar="COMMAND", required=True)
    check = config_cmds.add_parser(
        "check", formatter_class=fmt, help="validate the configuration and print a summary",
        description="Load and validate the configuration exactly as the engine would, then "
                    "print each domain with its clients and trunks\n(and which trunks "
                    "register outbound). Problems are printed as\n"
                    "  file:line:col CODE $.json.path: message\n"
                    "and make the command exit with status 1.")
    check.add_argument("--file", type=Path, metavar="FILE",
                       help="check this JSON file instead of the configured DATA_SOURCE")
    check.add_argument("-q", "--quiet", action="store_true",
                       help="print nothing but problems")
    check.set_defaults(func=cmd_config_check)

    db = subparsers.add_parser(
        "db", help="manage the PostgreSQL configuration store (DATA_SOURCE=pg)",
        description="The PostgreSQL configuration store, reached with DB_HOST, DB_PORT, "
                    "DB_USER, DB_PASSWORD and DB_NAME.")
    db_cmds = db.add_subparsers(dest="db_command", metavar="COMMAND", required=True)
    migrate = db_cmds.add_parser(
        "migrate", help="create or upgrade the configuration tables",
        description="Apply the shipped SQL migrations that the database has not seen yet "
                    "(recorded in schema_migrations). Safe to run repeatedly and from several "
                    "hosts at once.")
    migrate.set_defaults(func=cmd_db_migrate)
    imp = db_cmds.add_parser(
        "import", formatter_class=fmt, help="load a JSON configuration file into the database",
        description="Validate FILE (the DATA_SOURCE=json format) and write it in one "
                    "transaction.\nRunning engines pick the change up at once (NOTIFY).\n\n"
                    "  --mode replace  the database ends up holding exactly FILE's domains\n"
                    "  --mode merge    FILE's domains replace the same-named ones; other\n"
                    "                  domains are kept")
    imp.add_argument("file", type=Path, metavar="FILE", help="JSON configuration file")
    imp.add_argument("--mode", choices=("replace", "merge"), default="replace",
                     help="replace everything (default) or merge by domain")
    imp.add_argument("--dry-run", action="store_true",
                     help="validate and show what would be imported, write nothing")
    imp.set_defaults(func=cmd_db_import)


# --------------------------------------------------------------------------- output


def _print_diagnostics(exc: ConfigError, err: TextIO) -> None:
    print(f"error: {exc}", file=err)
    for diag in exc.diagnostics:
        print(f"  {diag}" + (" (warning)" if diag.severity != "error" else ""), file=err)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _trunk_line(t: Trunk) -> str:
    parts = []
    if t.networks:
        parts.append("inbound " + ", ".join(str(n) for n in t.networks))
    if t.is_auth_trunk:
        parts.append(f"digest auth as {t.auth_user}")
    reg = t.registration
    if reg is not None:
        parts.append(f"registers as {reg.username}@{reg.host}"
                     + (" (outbound credentials)" if reg.origin == "outbound" else ""))
    if t.outbound is not None and t.outbound.host:
        parts.append(f"outbound {t.outbound.host}")
    if t.dialplan is not None:
        parts.append(_plural(len(t.dialplan), "pattern"))
    return f"    {t.id!s:<6} {t.display_name or '-':<18} " + "; ".join(parts or ["(no routes)"])


def _domain_lines(dom: Domain) -> list[str]:
    lines = [f"{dom.name} (domain_id {dom.id!r}): {_plural(len(dom.clients), 'client')}, "
             f"{_plural(len(dom.trunks), 'trunk')}"]
    for c in dom.clients:
        how = f"reghook {redact_url(c.reghook)}" if c.reghook else "password"
        if c.reghook and c.reghook_fallback:
            how += f" (fallback {redact_url(c.reghook_fallback)})"
        extra = f"; {_plural(len(c.dialplan), 'pattern')}" if c.dialplan is not None else ""
        lines.append(f"    client {c.username:<12} {how}{extra}")
    lines.extend(_trunk_line(t) for t in dom.trunks)
    return lines


def summary(snapshot: ConfigSnapshot) -> str:
    counts = snapshot.counts()
    lines = [f"OK {snapshot.source}: {_plural(counts['domains'], 'domain')}, "
             f"{_plural(counts['clients'], 'client')}, {_plural(counts['trunks'], 'trunk')} "
             f"({counts['reg_trunks']} registering)"]
    for dom in snapshot.domains.values():
        lines.extend(_domain_lines(dom))
    return "\n".join(lines)


# --------------------------------------------------------------------------- commands


async def config_check_async(args: argparse.Namespace, settings: Settings, out: TextIO,
                             err: TextIO) -> int:
    try:
        file = getattr(args, "file", None)
        if file is not None:
            from engine.config.json_source import read_config_file

            snapshot = await asyncio.to_thread(read_config_file, Path(file),
                                               settings.dialplan_precedence)
        else:
            from engine.config.factory import make_source

            source = make_source(settings)
            try:
                snapshot = await source.load()
            finally:
                await source.close()
    except ConfigError as exc:
        _print_diagnostics(exc, err)
        return 1
    for warning in snapshot.warnings:
        print(f"warning: {warning}", file=err)
    if not getattr(args, "quiet", False):
        print(summary(snapshot), file=out)
    return 0


async def db_migrate_async(args: argparse.Namespace, settings: Settings, out: TextIO,
                           err: TextIO) -> int:
    import psycopg

    from engine.config.pg import connect, describe, migrate, migrations

    try:
        conn = await connect(settings)
        try:
            applied, edited = await migrate(conn)
        finally:
            await conn.close()
    except ConfigError as exc:
        _print_diagnostics(exc, err)
        return 1
    except psycopg.Error as exc:  # e.g. a conflicting object: show it, no traceback
        print(f"error: {describe(settings)}: migration failed, nothing applied: {exc}", file=err)
        return 1
    for name in edited:
        print(f"warning: migration {name} was changed after it was applied", file=err)
    if applied:
        print(f"{describe(settings)}: applied {', '.join(applied)}", file=out)
    else:
        print(f"{describe(settings)}: schema is up to date "
              f"({_plural(len(migrations()), 'migration')})", file=out)
    return 0


async def db_import_async(args: argparse.Namespace, settings: Settings, out: TextIO,
                          err: TextIO) -> int:
    import psycopg

    from engine.config.json_source import read_config_file
    from engine.config.pg import check_schema, connect, describe, import_snapshot

    mode = getattr(args, "mode", "replace")
    try:
        snapshot = await asyncio.to_thread(read_config_file, Path(args.file),
                                           settings.dialplan_precedence)
    except ConfigError as exc:
        _print_diagnostics(exc, err)
        return 1
    for warning in snapshot.warnings:
        print(f"warning: {warning}", file=err)
    if getattr(args, "dry_run", False):
        print(f"dry run, nothing written ({mode}):\n{summary(snapshot)}", file=out)
        return 0
    try:
        conn = await connect(settings)
        try:
            await check_schema(conn, describe(settings))
            counts = await import_snapshot(conn, snapshot, mode=mode)
        finally:
            await conn.close()
    except ConfigError as exc:
        _print_diagnostics(exc, err)
        return 1
    except psycopg.Error as exc:
        print(f"error: {describe(settings)}: import failed, nothing written: {exc}", file=err)
        return 1
    print(f"{describe(settings)}: imported {_plural(counts['domains'], 'domain')}, "
          f"{_plural(counts['clients'], 'client')}, {_plural(counts['trunks'], 'trunk')} "
          f"({mode}; {_plural(counts['removed_domains'], 'domain')} replaced or removed)",
          file=out)
    return 0


def _run(impl: Any, args: argparse.Namespace, settings: Settings, out: TextIO | None,
         err: TextIO | None) -> int:
    return asyncio.run(impl(args, settings, out or sys.stdout, err or sys.stderr))


def cmd_config_check(args: argparse.Namespace, settings: Settings, *, out: TextIO | None = None,
                     err: TextIO | None = None) -> int:
    """``dragonpbx config check``."""
    return _run(config_check_async, args, settings, out, err)


def cmd_db_migrate(args: argparse.Namespace, settings: Settings, *, out: TextIO | None = None,
                   err: TextIO | None = None) -> int:
    """``dragonpbx db migrate``."""
    return _run(db_migrate_async, args, settings, out, err)


def cmd_db_import(args: argparse.Namespace, settings: Settings, *, out: TextIO | None = None,
                  err: TextIO | None = None) -> int:
    """``dragonpbx db import FILE``."""
    return _run(db_import_async, args, settings, out, err)


__all__ = [
    "cmd_config_check", "cmd_db_import", "cmd_db_migrate", "config_check_async",
    "db_import_async", "db_migrate_async", "register", "summary",
]
