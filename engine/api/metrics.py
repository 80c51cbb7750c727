"""Prometheus metrics (``/metrics``), fed from a few central places.

Where each number comes from, so the hot path pays one cached-child ``inc()``:

* SIP requests and responses: the transaction layer's two counting hooks
  (``EndpointCore.count_request`` / ``count_response``): every new request
  received and every response sent, retransmissions excluded;
* registrations, calls, machine transitions and failures: the runtime's
  ``finish_observers`` — one call per instance that ends (its final state is the
  outcome, its trace length the transitions it took);
* webhooks: ``TimedHookCaller`` wraps the shared webhook client the three hook
  callers use; RTPEngine: ``TimedNgClient`` wraps the ng client's ``command``;
* gauges (live calls, dependency health, Redis errors, event-loop lag) are read
  at scrape time, so they cost nothing between scrapes.

Label values from the network (SIP methods) are bounded: unknown methods count
as ``other``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from engine.errors import HookError

SIP_METHODS = frozenset(("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "INFO",
                         "REFER", "NOTIFY", "UPDATE", "PRACK", "SUBSCRIBE", "MESSAGE",
                         "PUBLISH"))
CALL_MACHINE = "inbound_call"
REGISTRATION_MACHINE = "registration"
_HOOK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_NG_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)
LAG_INTERVAL = 0.5


class Metrics:
    """Every DragonPBX metric, in a registry of its own."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        ProcessCollector(registry=r)
        self.sip_requests = Counter("dragonpbx_sip_requests", "SIP requests received "
                                    "(new transactions, not retransmissions)", ["method"],
                                    registry=r)
        self.sip_responses = Counter("dragonpbx_sip_responses", "SIP responses sent",
                                     ["method", "status_class"], registry=r)
        self.registrations = Counter("dragonpbx_registrations", "REGISTER requests handled, "
                                     "by the registration machine's final state", ["outcome"],
                                     registry=r)
        self.calls = Counter("dragonpbx_calls", "calls (INVITEs) ended, by the inbound_call "
                             "machine's final state", ["outcome"], registry=r)
        self.transitions = Counter("dragonpbx_machine_transitions", "machine steps taken by "
                                   "instances that ended", ["machine"], registry=r)
        self.failures = Counter("dragonpbx_machine_failures", "instances that ended failed "
                                "(uncaught action error or the on_failure state)", ["machine"],
                                registry=r)
        self.hook_duration = Histogram("dragonpbx_webhook_duration_seconds", "webhook request "
                                       "latency by hook and outcome (HTTP status class or "
                                       "failure kind)", ["hook", "outcome"],
                                       buckets=_HOOK_BUCKETS, registry=r)
        self.ng_duration = Histogram("dragonpbx_rtpengine_command_duration_seconds",
                                     "RTPEngine ng command latency", ["command"],
                                     buckets=_NG_BUCKETS, registry=r)
        self.ng_errors = Counter("dragonpbx_rtpengine_command_errors", "RTPEngine ng commands "
                                 "that failed", ["command"], registry=r)
        self.loop_lag = Gauge("dragonpbx_event_loop_lag_seconds", "how late the event loop "
                              f"ran a timer due every {LAG_INTERVAL:g} s (last sample)",
                              registry=r)
        self._req: dict[str, Any] = {}
        self._resp: dict[tuple[str, int], Any] = {}
        self._children: dict[tuple[int, str], Any] = {}
        self._lag_task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ SIP (hot path)
    def count_request(self, method: str) -> None:
        child = self._req.get(method)
        if child is None:
            label = method if method in SIP_METHODS else "other"
            child = self._req[method] = self.sip_requests.labels(label)
        child.inc()

    def count_response(self, request: Any, status: int) -> None:
        method = request.method if request is not None else "other"
        key = (method, status // 100)
        child = self._resp.get(key)
        if child is None:
            label = method if method in SIP_METHODS else "other"
            child = self._resp[key] = self.sip_responses.labels(label, f"{status // 100}xx")
        child.inc()

    def attach_sip(self, core: Any) -> None:
        """Count on ``core`` (an ``EndpointCore``)."""
        core.count_request = self.count_request
        core.count_response = self.count_response

    # ------------------------------------------------------------------ instances
    def _child(self, counter: Counter, slot: int, value: str) -> Any:
        key = (slot, value)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = counter.labels(value)
        return child

    def instance_finished(self, inst: Any) -> None:
        machine = inst.machine
        name = machine.name
        steps = len(inst.trace.entries) + inst.trace.dropped
        if steps:
            self._child(self.transitions, 0, name).inc(steps)
        if inst.status == "failed" or (machine.on_failure is not None
                                       and inst.state == machine.on_failure):
            self._child(self.failures, 1, name).inc()
        if name == REGISTRATION_MACHINE:
            self._child(self.registrations, 2, inst.state).inc()
        elif name == CALL_MACHINE:
            self._child(self.calls, 3, inst.state).inc()

    # ------------------------------------------------------------------ scrape-time values
    def watch(self, *, runtime: Any, health: Any, store: Any) -> None:
        """Gauges read when scraped: live calls, dependencies, Redis errors."""
        self.registry.register(_ScrapeTime(runtime, health, store))

    def start_lag_probe(self) -> None:
        if self._lag_task is None:
            self._lag_task = asyncio.get_running_loop().create_task(self._probe_lag())

    async def _probe_lag(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + LAG_INTERVAL
            await asyncio.sleep(LAG_INTERVAL)
            self.loop_lag.set(max(0.0, loop.time() - due))

    async def stop(self) -> None:
        task, self._lag_task = self._lag_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _ScrapeTime(Collector):
    def __init__(self, runtime: Any, health: Any, store: Any) -> None:
        self.runtime = runtime
        self.health = health
        self.store = store

    def collect(self) -> Iterator[Any]:
        live = GaugeMetricFamily("dragonpbx_calls_active", "calls in progress (live "
                                 "inbound_call instances)")
        live.add_metric([], sum(1 for i in list(self.runtime.live.values())
                                if i.machine.name == CALL_MACHINE))
        yield live
        instances = GaugeMetricFamily("dragonpbx_machine_instances", "live machine instances",
                                      labels=["machine"])
        counts: dict[str, int] = {}
        for inst in list(self.runtime.live.values()):
            counts[inst.machine.name] = counts.get(inst.machine.name, 0) + 1
        for name, n in sorted(counts.items()):
            instances.add_metric([name], n)
        yield instances
        up = GaugeMetricFamily("dragonpbx_dependency_up", "1 while a dependency is usable "
                               "(redis, rtpengine, sip)", labels=["dependency"])
        for name, state in self.health.snapshot().items():
            up.add_metric([name], 1.0 if state["up"] else 0.0)
        yield up
        draining = GaugeMetricFamily("dragonpbx_draining", "1 while shutting down")
        draining.add_metric([], 1.0 if self.health.draining else 0.0)
        yield draining
        errors = CounterMetricFamily("dragonpbx_redis_errors", "Redis commands that failed "
                                     "to reach Redis (refused, timed out, connection lost)")
        errors.add_metric([], float(getattr(self.store, "errors", 0)))
        yield errors


class TimedHookCaller:
    """A ``HookCaller`` that times every webhook request for one hook kind."""

    def __init__(self, inner: Any, metrics: Metrics, hook: str) -> None:
        self._inner = inner
        self._metrics = metrics
        self._hook = hook
        self._children: dict[str, Any] = {}

    def _observe(self, outcome: str, seconds: float) -> None:
        child = self._children.get(outcome)
        if child is None:
            child = self._children[outcome] = self._metrics.hook_duration.labels(
                self._hook, outcome)
        child.observe(seconds)

    async def post(self, url: str, payload: Mapping[str, Any] | Sequence[Any], *,
                   timeout: float) -> Any:
        t0 = time.perf_counter()
        try:
            reply = await self._inner.post(url, payload, timeout=timeout)
        except HookError as exc:
            self._observe(exc.kind, time.perf_counter() - t0)
            raise
        self._observe(f"{reply.status // 100}xx", time.perf_counter() - t0)
        return reply

    async def close(self) -> None:
        await self._inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class TimedNgClient:
    """Wraps an RTPEngine client: ``command`` is timed and failures counted."""

    def __init__(self, inner: Any, metrics: Metrics) -> None:
        self._inner = inner
        self._metrics = metrics
        self._children: dict[str, tuple[Any, Any]] = {}

    async def command(self, body: Mapping[str, Any], *args: Any, **kwargs: Any) -> Any:
        name = str(body.get("command", "unknown"))
        pair = self._children.get(name)
        if pair is None:
            pair = self._children[name] = (self._metrics.ng_duration.labels(name),
                                           self._metrics.ng_errors.labels(name))
        t0 = time.perf_counter()
        try:
            return await self._inner.command(body, *args, **kwargs)
        except Exception:
            pair[1].inc()
            raise
        finally:
            pair[0].observe(time.perf_counter() - t0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


__all__ = ["Metrics", "TimedHookCaller", "TimedNgClient"]
