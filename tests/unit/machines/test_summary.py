"""The summary line (``log.summary``) a registration leaves at each of its endings."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.unit.machines.harness import make_runtime, make_services, run
from tests.unit.machines.test_registration import Phone, challenge_of


def summaries(caplog: pytest.LogCaptureFixture) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for record in caplog.records:
        if record.name == "engine.summary":
            out.append((record.levelname.lower(), dict(record.fields)))  # type: ignore[attr-defined]
    caplog.clear()
    return out


@pytest.fixture
def caplog_debug(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="engine.summary")
    return caplog


async def test_each_ending_gives_one_line_with_its_outcome(
        caplog_debug: pytest.LogCaptureFixture) -> None:
    rt = make_runtime(make_services())
    phone = Phone("alice", "secret")
    ch = await challenge_of(rt, phone)
    ((level, fields),) = summaries(caplog_debug)
    assert (level, fields["outcome"], fields["status"]) == ("debug", "challenged", 401)
    assert "why" not in fields

    await run(rt, "registration", phone.register(challenge=ch))
    ((level, fields),) = summaries(caplog_debug)
    assert level == "info"
    assert fields == {**fields, "outcome": "registered", "status": 200, "expires": 300,
                      "aor": "alice@pbx.test", "username": "alice",
                      "source": "192.0.2.10:5072"}

    await run(rt, "registration", phone.register(challenge=ch, contact=None, expires=None))
    assert [f["outcome"] for _, f in summaries(caplog_debug)] == ["queried"]

    await run(rt, "registration", phone.register(challenge=ch, expires=0))
    assert [f["outcome"] for _, f in summaries(caplog_debug)] == ["unregistered"]

    await run(rt, "registration", phone.register(challenge=ch, expires=10))
    ((level, fields),) = summaries(caplog_debug)
    assert (level, fields["outcome"], fields["status"]) == ("info", "rejected", 423)

    await run(rt, "registration", phone.register(challenge=ch, password="guess"))
    ((level, fields),) = summaries(caplog_debug)
    assert (level, fields["outcome"], fields["status"], fields["why"], fields["username"]) \
        == ("info", "rejected", 403, "invalid credentials", "alice")
