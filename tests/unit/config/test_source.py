"""ConfigSource base behaviour: swap rules, callbacks, lifecycle; the factory."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from engine.config.api_source import ApiSource
from engine.config.factory import make_source
from engine.config.json_source import JsonFileSource
from engine.config.model import ConfigSnapshot, Domain
from engine.config.pg_source import PgSource
from engine.config.source import ConfigSource
from engine.errors import ConfigError, Diagnostic
from engine.settings import Settings, load_settings


def snap(name: str, fingerprint: str | None = None) -> ConfigSnapshot:
    return ConfigSnapshot({name: Domain(name, 1)}, source="fake", fingerprint=fingerprint or name)


class FakeSource(ConfigSource):
    """Loads whatever the test queued; the watch loop waits for explicit nudges."""

    kind = "fake"

    def __init__(self, settings: Settings, results: list[ConfigSnapshot | Exception]):
        super().__init__(settings)
        self.results = results
        self.nudge = asyncio.Event()
        self.closed = False

    @property
    def description(self) -> str:
        return "fake:test"

    async def load(self) -> ConfigSnapshot:
        result = self.results.pop(0)
        if isinstance(result, Exception):
            raise result
        return result

    async def _watch(self) -> None:
        while True:
            await self.nudge.wait()
            self.nudge.clear()
            await self.refresh("nudge")

    async def _close_resources(self) -> None:
        self.closed = True


@pytest.fixture
def settings() -> Settings:
    return load_settings({"DATA_SOURCE": "json"})


def records(caplog: pytest.LogCaptureFixture, message: str) -> list[dict[str, object]]:
    """Structured fields of the log lines whose message starts with ``message``."""
    return [getattr(r, "fields", {}) for r in caplog.records if r.getMessage().startswith(message)]


def refusal() -> ConfigError:
    return ConfigError("bad", [Diagnostic("f", 1, 2, "CONFIG_SCHEMA", "$.x", "broken")])


async def test_lookups_before_start_raise(settings: Settings) -> None:
    src = FakeSource(settings, [])
    assert not src.ready
    with pytest.raises(ConfigError, match="not loaded yet"):
        src.get_domain("a")
    with pytest.raises(ConfigError):
        _ = src.snapshot


async def test_start_propagates_a_refused_first_config(settings: Settings) -> None:
    src = FakeSource(settings, [refusal()])
    with pytest.raises(ConfigError):
        await src.start()
    assert not src.ready


async def test_swaps_and_callbacks(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    first, second = snap("a.example"), snap("b.example")
    src = FakeSource(settings, [first, snap("a.example"), refusal(), second])
    seen: list[ConfigSnapshot] = []
    async_seen: list[ConfigSnapshot] = []

    async def async_cb(s: ConfigSnapshot) -> None:
        async_seen.append(s)

    def broken_cb(s: ConfigSnapshot) -> None:
        raise RuntimeError("callback bug")

    src.on_change(seen.append)
    src.on_change(broken_cb)
    src.on_change(async_cb)
    await src.start()
    try:
        assert src.snapshot is first and seen == []  # no callback for the first load
        assert await src.reload() is False  # same fingerprint: no swap
        assert src.snapshot is first
        with pytest.raises(ConfigError):
            await src.reload()
        assert src.snapshot is first
        (refused,) = records(caplog, "config refused")
        assert refused["diagnostics"] == ["f:1:2 CONFIG_SCHEMA $.x: broken"]
        assert refused["source"] == "fake:test"
        assert not records(caplog, "config change callback failed")
        assert await src.reload() is True
        assert src.snapshot is second and seen == [second] and async_seen == [second]
        # a failing callback is logged and the others are still called
        assert records(caplog, "config change callback failed")
        assert src.get_domain("b.example") is not None and src.get_domain("a.example") is None
    finally:
        await src.close()
    assert src.closed


async def test_watch_refresh_keeps_old_config_on_failure(settings: Settings) -> None:
    first, second = snap("a.example"), snap("b.example")
    src = FakeSource(settings, [first, refusal(), RuntimeError("bug"), second])
    changes: asyncio.Queue[ConfigSnapshot] = asyncio.Queue()
    unsubscribe = src.on_change(changes.put_nowait)
    await src.start()
    try:
        for _ in range(2):
            src.nudge.set()
            await asyncio.sleep(0.01)
            assert src.snapshot is first
        src.nudge.set()
        assert await asyncio.wait_for(changes.get(), 2) is second
        unsubscribe()
        unsubscribe()  # idempotent
    finally:
        await src.close()


async def test_close_is_idempotent_and_start_twice_is_harmless(settings: Settings) -> None:
    src = FakeSource(settings, [snap("a.example")])
    await src.start()
    await src.start()
    await src.close()
    await src.close()


async def test_close_propagates_our_own_cancellation(settings: Settings) -> None:
    src = FakeSource(settings, [snap("a.example")])
    await src.start()
    started = asyncio.Event()

    async def closer() -> None:
        started.set()
        await src.close()

    task = asyncio.create_task(closer())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await src.close()


@pytest.mark.parametrize(("kind", "cls"), [("json", JsonFileSource), ("api", ApiSource),
                                           ("pg", PgSource)])
def test_factory(kind: str, cls: type, tmp_path: Path) -> None:
    settings = load_settings({"DATA_SOURCE": kind, "CONFIG_FILE": str(tmp_path / "c.json")})
    src = make_source(settings)
    assert type(src) is cls
    assert src.precedence == "specific"
    assert "dev-admin-token" not in src.description and "my_password" not in src.description


def test_factory_passes_precedence_and_options(tmp_path: Path) -> None:
    settings = load_settings({"DATA_SOURCE": "json", "DIALPLAN_PRECEDENCE": "legacy"})
    src = make_source(settings, poll_interval=0.5, path=tmp_path / "x.json")
    assert isinstance(src, JsonFileSource)
    assert (src.precedence, src.poll_interval, src.path) == ("legacy", 0.5, tmp_path / "x.json")
