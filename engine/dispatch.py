"""SIP requests → machine instances.

The dispatcher is the adapter between the SIP port and the machines: each
out-of-dialog REGISTER spawns a ``registration`` instance, each INVITE an
``inbound_call`` instance (once that machine exists), and OPTIONS addressed to
the PBX is answered here (a keep-alive needs no machine; D-28): 200 while the
instance can serve, 503 with ``Retry-After`` and an ``X-Reason`` naming the
cause while it is draining, overloaded or a dependency is down (``engine.health``), so a
SIP load balancer probing with OPTIONS takes the node out. It also declares
the events it delivers, which the machine linter checks ``inputs:`` against.
"""

from __future__ import annotations

from typing import Any

from engine.abuse.policy import retry_after_header
from engine.fsm import declare_events
from engine.health import Health
from engine.log import get_logger

log = get_logger("engine.dispatch")

declare_events(
    "sip.dispatcher",
    ["start"],
    "start: a new out-of-dialog request was routed to a new instance (vars.req)",
)
declare_events(
    "sip.request",
    ["sip.cancel"],
    "sip.cancel: the caller CANCELled the INVITE (200/487 already sent by the stack)",
)

# method → machine that handles it
ROUTES: dict[str, str] = {"REGISTER": "registration", "INVITE": "inbound_call"}

_ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, INFO, REFER, NOTIFY, UPDATE"
# Retry-After on an unhealthy OPTIONS: a drain lasts SHUTDOWN_GRACE_SECS (the INVITE
# refusal says 30 too); a dependency outage is re-checked every second or so, an
# overload (engine.overload) is over after SIP_OVERLOAD_RECOVER_SECS without shedding.
_RETRY_AFTER_DRAINING = "30"
_RETRY_AFTER_DEPENDENCY = "5"


class SipDispatcher:
    """Routes requests from a ``SipPort`` to new machine instances."""

    def __init__(self, runtime: Any, sip: Any, routes: dict[str, str] | None = None,
                 health: Health | None = None):
        self.runtime = runtime
        self.sip = sip
        self.routes = dict(ROUTES if routes is None else routes)
        self.health = health if health is not None else Health()
        self.rejected_while_draining = 0

    @property
    def draining(self) -> bool:
        return self.health.draining

    @draining.setter
    def draining(self, value: bool) -> None:
        self.health.draining = value

    def install(self) -> None:
        for method, machine in self.routes.items():
            if machine in self.runtime.library:
                self.sip.on_request(method, self._handler(machine))
        self.sip.on_request("OPTIONS", self._options)

    def _handler(self, machine: str) -> Any:
        runtime = self.runtime

        async def handle(req: Any) -> None:
            if self.draining and req.method == "INVITE":
                self.rejected_while_draining += 1
                await req.reply(503, "Service Unavailable",
                                headers=[("Retry-After", "30"), ("X-Reason", "shutting down")])
                return
            wait = self._rate_wait(req)
            if wait:
                await req.reply(503, "Service Unavailable",
                                headers=[("Retry-After", retry_after_header(wait)),
                                         ("X-Reason", "rate limited")])
                return
            inst = runtime.spawn(machine, vars={"req": req})
            if req.method == "INVITE":
                req.on_cancel(lambda: inst.post("sip.cancel"))
            await inst.send("start")

        return handle

    def _rate_wait(self, req: Any) -> float:
        """Pike-like admission: seconds a source over ABUSE_RATE_LIMIT must wait (0 = go on)
        before any machine runs (README "Abuse protection"); exempt sources always pass."""
        guard = getattr(getattr(self.runtime, "services", None), "abuse", None)
        return guard.admit(req.source.host) if guard is not None else 0.0

    async def _options(self, req: Any) -> None:
        # Keep-alives and health probes (D-28): 200 only while this instance can serve.
        problems = self.health.problems()
        if not problems:
            await req.reply(200, "OK", headers=[("Allow", _ALLOW),
                                                ("Accept", "application/sdp")])
            return
        retry = _RETRY_AFTER_DRAINING if self.draining else _RETRY_AFTER_DEPENDENCY
        await req.reply(503, "Service Unavailable",
                        headers=[("Retry-After", retry), ("X-Reason", ", ".join(problems)),
                                 ("Allow", _ALLOW)])
