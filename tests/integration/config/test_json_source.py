"""DATA_SOURCE=json: the file is hot-reloaded; invalid edits are refused and logged."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from engine.config.json_source import JsonFileSource
from engine.config.model import ConfigSnapshot
from engine.errors import ConfigError
from engine.settings import load_settings

pytestmark = pytest.mark.integration

SECRET = "pw-that-must-not-be-logged"


def config(domain: str, **client: Any) -> dict[str, Any]:
    return {"domains": {domain: {"domain_id": 1, "clients": [
        {"username": "1000", "password": SECRET, **client}]}}}


def write(path: Path, data: Any) -> None:
    path.write_text(data if isinstance(data, str) else json.dumps(data, indent=2))


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


@pytest.fixture
async def source(tmp_path: Path) -> AsyncIterator[JsonFileSource]:
    path = tmp_path / "config.json"
    write(path, config("a.example"))
    settings = load_settings({"DATA_SOURCE": "json", "CONFIG_FILE": str(path)})
    src = JsonFileSource(settings, poll_interval=0.02)
    await src.start()
    try:
        yield src
    finally:
        await src.close()


def refused_logs(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [getattr(r, "fields", {}) for r in caplog.records
            if r.getMessage().startswith("config refused")]


async def test_invalid_edit_is_refused_then_valid_edit_is_picked_up(
        source: JsonFileSource, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="engine.config")
    changes: asyncio.Queue[ConfigSnapshot] = asyncio.Queue()
    source.on_change(changes.put_nowait)
    first = source.snapshot
    assert source.get_domain("a.example") is not None

    # invalid: the client lost its password (S-1) and a trunk has a broken CIDR
    bad = config("b.example", password=None)
    bad["domains"]["b.example"]["trunks"] = [{"id": 1, "inbound": ["10.0.0.999"]}]
    write(source.path, bad)
    await eventually(lambda: bool(refused_logs(caplog)))
    assert source.snapshot is first and changes.empty()
    assert source.last_error is not None
    (log,) = refused_logs(caplog)
    diagnostics = log["diagnostics"]
    assert any(d.startswith(f"{source.path}:") and "CONFIG_CLIENT_AUTH" in d for d in diagnostics)
    assert any("CONFIG_CIDR $.domains['b.example'].trunks[0].inbound[0]" in d
               for d in diagnostics)
    await asyncio.sleep(0.1)
    assert len(refused_logs(caplog)) == 1  # logged once per version of the file

    # a syntax error is refused the same way
    write(source.path, '{"domains": ')
    await eventually(lambda: len(refused_logs(caplog)) == 2)
    assert "CONFIG_SYNTAX" in refused_logs(caplog)[1]["diagnostics"][0]
    assert source.snapshot is first

    # valid again: swapped, callback called with the new snapshot
    write(source.path, config("b.example"))
    new = await asyncio.wait_for(changes.get(), 5)
    assert source.snapshot is new and source.last_error is None
    assert source.get_domain("b.example") is not None and source.get_domain("a.example") is None
    assert SECRET not in caplog.text
    for record in caplog.records:
        assert SECRET not in json.dumps(getattr(record, "fields", {}), default=str)


async def test_atomic_replace_and_unchanged_content(source: JsonFileSource) -> None:
    changes: asyncio.Queue[ConfigSnapshot] = asyncio.Queue()
    source.on_change(changes.put_nowait)
    # rewriting identical content (new mtime) does not swap or call back
    write(source.path, config("a.example"))
    os.utime(source.path, ns=(1, 1))
    await asyncio.sleep(0.15)
    assert changes.empty()
    # editors that write a temporary file and rename it over the original
    tmp = source.path.with_suffix(".tmp")
    write(tmp, config("c.example"))
    os.replace(tmp, source.path)
    snap = await asyncio.wait_for(changes.get(), 5)
    assert snap.list_domains() == ["c.example"]


async def test_missing_file_keeps_config_until_it_returns(
        source: JsonFileSource, caplog: pytest.LogCaptureFixture) -> None:
    first = source.snapshot
    source.path.unlink()
    await eventually(lambda: "config file missing" in caplog.text)
    assert source.snapshot is first
    write(source.path, config("d.example"))
    await eventually(lambda: source.get_domain("d.example") is not None)


async def test_reload_on_demand(source: JsonFileSource) -> None:
    source.poll_interval = 3600  # only the explicit reload may notice
    await asyncio.sleep(0.05)
    write(source.path, config("e.example"))
    assert await source.reload() is True
    assert source.list_domains() == ["e.example"]
    assert await source.reload() is False
    write(source.path, "[]")
    with pytest.raises(ConfigError):
        await source.reload()
    assert source.list_domains() == ["e.example"]


async def test_start_refuses_an_invalid_file(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    write(path, config("a.example", password=""))
    src = JsonFileSource(load_settings({"DATA_SOURCE": "json", "CONFIG_FILE": str(path)}))
    with pytest.raises(ConfigError) as info:
        await src.start()
    assert info.value.diagnostics[0].code == "CONFIG_CLIENT_AUTH"
    assert not src.ready
    await src.close()
