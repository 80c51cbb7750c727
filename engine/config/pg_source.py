"""``DATA_SOURCE=pg``: configuration in PostgreSQL, picked up without restart.

Changes arrive two ways: triggers on the tables ``NOTIFY dragonpbx_config``
(migration 0002) and a dedicated connection ``LISTEN``s, so an edit is live
within milliseconds; and every ``CONFIG_TTL`` seconds the tables are read
anyway, which covers a lost LISTEN connection or a missed notification.
Each read is validated like any other source before it may replace the
current snapshot; a bad row is logged with its table and id and the last
good configuration keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import psycopg

from engine.config.model import ConfigSnapshot
from engine.config.pg import (
    CHANNEL,
    SchemaNotMigrated,
    check_schema,
    connect,
    describe,
    first_line,
    load_snapshot,
)
from engine.config.source import ConfigSource, sleep_backoff
from engine.errors import ConfigError
from engine.settings import Settings


class PgSource(ConfigSource):
    """Configuration read from the ``domains``/``clients``/``trunks`` tables."""

    kind = "pg"

    def __init__(self, settings: Settings, *, precedence: str | None = None,
                 interval: float | None = None, start_attempts: int = 5,
                 retry_delay: float = 1.0, debounce: float = 0.05):
        super().__init__(settings, precedence=precedence)
        self.interval = interval if interval is not None else settings.config_ttl
        self.start_attempts = max(1, start_attempts)
        self.retry_delay = retry_delay
        self.debounce = debounce  # coalesce the NOTIFY burst of a multi-statement edit
        self.timeout = settings.http_timeout
        self.listening = asyncio.Event()  # set while the LISTEN connection is up
        self._changed = asyncio.Event()
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._schema_checked = False

    @property
    def description(self) -> str:
        return describe(self.settings)

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = await connect(self.settings, statement_timeout=self.timeout)
        return self._conn

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error, OSError):
                await conn.close()

    async def load(self) -> ConfigSnapshot:
        try:
            async with asyncio.timeout(self.timeout):
                conn = await self._connection()
                if not self._schema_checked:
                    await check_schema(conn, self.description)
                    self._schema_checked = True
                return await load_snapshot(conn, dbname=self.settings.db_name,
                                           precedence=self.precedence,
                                           source=self.description)
        except TimeoutError:
            await self._drop_connection()
            raise ConfigError(f"{self.description}: no answer within {self.timeout:g} s"
                              ) from None
        except psycopg.Error as exc:
            await self._drop_connection()
            raise ConfigError(f"{self.description}: {first_line(exc)}") from None

    async def _initial_load(self) -> ConfigSnapshot:
        last: ConfigError | None = None
        for attempt in range(1, self.start_attempts + 1):
            try:
                return await self.load()
            except ConfigError as exc:
                if isinstance(exc, SchemaNotMigrated) or exc.diagnostics:
                    raise  # an unmigrated schema or invalid rows will not heal by waiting
                last = exc
                self.log.warning("config database not available yet", source=self.description,
                                 attempt=attempt, of=self.start_attempts, error=str(exc))
            if attempt < self.start_attempts:
                await sleep_backoff(attempt, self.retry_delay, max(self.retry_delay,
                                                                   self.interval))
        assert last is not None
        raise ConfigError(f"no configuration from {self.description} after "
                          f"{self.start_attempts} attempts: {last}")

    async def _watch(self) -> None:
        listener = asyncio.create_task(self._listen(), name="config-pg-listen")
        failures = 0
        try:
            while True:
                wait = self.interval
                if failures:
                    wait = min(self.interval, self.retry_delay * 2 ** (failures - 1))
                try:
                    async with asyncio.timeout(wait):  # not wait_for: a cancel must not be lost
                        await self._changed.wait()
                    reason = "notify"
                    await asyncio.sleep(self.debounce)
                except TimeoutError:
                    reason = "poll"
                self._changed.clear()
                await self.refresh(reason)
                failures = failures + 1 if self.last_error is not None else 0
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    async def _listen(self) -> None:
        """Keep a LISTEN connection; each notification (or reconnect) triggers a reload."""
        attempt = 0
        first = True
        while True:
            conn: psycopg.AsyncConnection[Any] | None = None
            try:
                conn = await connect(self.settings)
                await conn.execute(f"LISTEN {CHANNEL}")
                if not first:
                    self._changed.set()  # changes made while nobody listened
                first, attempt = False, 0
                self.listening.set()
                self.log.debug("listening for config changes", source=self.description)
                async with contextlib.aclosing(conn.notifies()) as notifies:
                    async for _ in notifies:
                        self._changed.set()
                raise ConfigError("notification stream ended")
            except (ConfigError, psycopg.Error, OSError) as exc:
                attempt += 1
                self.log.warning("config LISTEN connection lost; polling every CONFIG_TTL "
                                 "until it is back", source=self.description,
                                 error=first_line(exc), attempt=attempt)
            finally:
                self.listening.clear()
                if conn is not None:
                    with contextlib.suppress(psycopg.Error, OSError):
                        await conn.close()
            await sleep_backoff(attempt, self.retry_delay, max(self.retry_delay, self.interval))

    async def _close_resources(self) -> None:
        await self._drop_connection()


__all__ = ["PgSource"]
