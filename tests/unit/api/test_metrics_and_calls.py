"""Metrics counted where instances end and SIP messages pass, and the call book's
recent calls (kept by Call-ID, bounded in count and age) — on the real runtime."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from engine.api.calls import CallBook, call_view
from engine.api.metrics import Metrics
from tests.unit.fsm.test_runtime import CHILD, PARENT, runtime, settle

CALL = PARENT.replace("machine: parent", "machine: inbound_call")


def samples(m: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(m.exposition().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_sip_counts_bound_unknown_methods() -> None:
    m = Metrics()
    for method in ("REGISTER", "REGISTER", "FOO", "BAR"):
        m.count_request(method)
    m.count_response(SimpleNamespace(method="REGISTER"), 401)
    m.count_response(SimpleNamespace(method="REGISTER"), 200)
    m.count_response(None, 503)
    s = samples(m)
    assert s[("dragonpbx_sip_requests_total", (("method", "REGISTER"),))] == 2
    assert s[("dragonpbx_sip_requests_total", (("method", "other"),))] == 2
    key = ("dragonpbx_sip_responses_total", (("method", "REGISTER"), ("status_class", "4xx")))
    assert s[key] == 1
    assert s[("dragonpbx_sip_responses_total", (("method", "other"),
                                                ("status_class", "5xx")))] == 1


async def test_instances_that_end_are_counted_and_calls_kept_by_call_id() -> None:
    rt, clock = runtime(CALL, CHILD)
    m = Metrics()
    book = CallBook(rt, keep_secs=60, keep_max=2, clock=clock.time)
    rt.finish_observers += [m.instance_finished, book.instance_finished]

    async def one_call(call_id: str) -> Any:
        inst = rt.spawn("inbound_call", vars={"log": [], "req": SimpleNamespace(
            call_id=call_id, final_sent=True, message=None)})
        await inst.send("start")
        await settle()
        return inst

    first = await one_call("a@x")
    assert first.state == "done"
    s = samples(m)
    assert s[("dragonpbx_calls_total", (("outcome", "done"),))] == 1
    assert s[("dragonpbx_machine_transitions_total", (("machine", "inbound_call"),))] >= 2
    assert s[("dragonpbx_machine_transitions_total", (("machine", "child"),))] >= 1
    ended = book.ended_calls()
    assert [e.root.id for e in ended] == [first.id]
    # the child that ended under the call is kept with it, with its trace
    view = call_view(ended[0].root, ended[0].instances, ended[0], trace=True)
    assert [i["machine"] for i in view["instances"]] == ["inbound_call", "child"]
    assert view["outcome"] == "done (done)" and view["live"] is False
    assert all(i["trace"] for i in view["instances"])
    # the same Call-ID again (an INVITE re-sent after a challenge) replaces; at most 2 kept
    again = await one_call("a@x")
    assert [e.root.id for e in book.ended_calls()] == [again.id]
    await one_call("b@x")
    await one_call("c@x")
    assert [call_view(e.root, e.instances, e)["call_id"] for e in book.ended_calls()] == \
        ["c@x", "b@x"]
    assert book.find("a@x") is None and book.find("c@x") is not None
    clock.advance(61)
    assert book.ended_calls() == []
