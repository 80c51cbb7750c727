"""Message ids and request/response correlation (pure)."""

from __future__ import annotations

import pytest

from engine.drachtio.wire import Correlator, MessageIds, ResponseFrame, parse_server_frame
from tests.unit.drachtio import spec_frames as spec


def answer(request_id: str, status: str = "OK", *fields: str) -> ResponseFrame:
    frame = parse_server_frame("|".join(["s", "response", request_id, status, *fields]).encode())
    assert isinstance(frame, ResponseFrame)
    return frame


def test_message_ids_are_unique_and_safe_in_a_field() -> None:
    ids = MessageIds()
    made = [ids() for _ in range(10_000)]
    assert len(set(made)) == len(made)
    assert not any(c in "".join(made) for c in "|\r\n")
    assert all(len(i) < 128 for i in made)
    assert MessageIds().prefix != ids.prefix  # per-process random prefix


def test_a_response_resolves_its_request_once() -> None:
    corr: Correlator[str] = Correlator()
    corr.add("m1", "ping", "handle-1")
    corr.add("m2", "route", "handle-2")
    entry = corr.resolve(answer("m2"))
    assert entry is not None and entry.token == "handle-2" and entry.done
    assert entry.kind == "route" and [r.request_id for r in entry.responses] == ["m2"]
    assert "m2" not in corr and "m1" in corr and len(corr) == 1
    assert corr.resolve(answer("m2")) is None  # a duplicate or late answer resolves nothing


def test_unknown_ids_resolve_nothing() -> None:
    corr: Correlator[int] = Correlator()
    assert corr.resolve(answer("nobody")) is None


def test_proxy_answers_marked_continue_keep_the_entry() -> None:
    corr: Correlator[str] = Correlator()
    corr.add("8db6d0b4-…", "proxy", "p")
    first = corr.resolve(parse_server_frame(spec.wire_text(spec.PROXY_CONTINUE)))  # type: ignore[arg-type]
    assert first is not None and not first.done and "8db6d0b4-…" in corr
    last = corr.resolve(parse_server_frame(spec.wire_text(spec.PROXY_DONE)))  # type: ignore[arg-type]
    assert last is first and last.done and len(last.responses) == 2
    assert "8db6d0b4-…" not in corr


def test_a_failure_completes_a_proxy_too() -> None:
    corr: Correlator[str] = Correlator()
    corr.add("p1", "proxy", "p")
    entry = corr.resolve(answer("p1", "NOK", "Unknown transaction id: t"))
    assert entry is not None and entry.done and entry.responses[-1].reason.startswith("Unknown")


def test_duplicate_ids_are_refused() -> None:
    corr: Correlator[str] = Correlator()
    corr.add("m1", "ping", "a")
    with pytest.raises(ValueError):
        corr.add("m1", "ping", "b")


def test_large_frames_are_tracked_until_answered_or_discarded() -> None:
    corr: Correlator[str] = Correlator()
    corr.add("small", "sip", "s")
    assert not corr.large_outstanding
    corr.add("big1", "sip", "b1", large=True)
    corr.add("big2", "sip", "b2", large=True)
    assert corr.large_outstanding
    corr.resolve(answer("big1"))
    assert corr.large_outstanding
    assert corr.discard("big2") is not None
    assert not corr.large_outstanding
    assert corr.discard("big2") is None


def test_drain_hands_back_everything_pending() -> None:
    corr: Correlator[str] = Correlator()
    corr.add("a", "sip", "1")
    corr.add("b", "proxy", "2", large=True)
    drained = corr.drain()
    assert sorted(e.token for e in drained) == ["1", "2"]
    assert len(corr) == 0 and not corr.large_outstanding
