"""SIP requests → machine instances.

The dispatcher is the adapter between the SIP port and the machines: each
out-of-dialog REGISTER spawns a ``registration`` instance, each INVITE an
``inbound_call`` instance (once that machine exists), and OPTIONS addressed to
the PBX is answered 200 here (a keep-alive needs no machine; D-28). It also
declares the events it delivers, which the machine linter checks ``inputs:``
against.
"""

from __future__ import annotations

from typing import Any

from engine.abuse.policy import retry_after_header
from engine.fsm import declare_events
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


class SipDispatcher:
    """Routes requests from a ``SipPort`` to new machine instances."""

    def __init__(self, runtime: Any, sip: Any, routes: dict[str, str] | None = None):
        self.runtime = runtime
        self.sip = sip
        self.routes = dict(ROUTES if routes is None else routes)
        self.draining = False
        self.rejected_while_draining = 0

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
        # Keep-alives and health probes: the PBX itself is always reachable (D-28).
        await req.reply(200, "OK", headers=[("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, "
                                             "REGISTER, INFO, REFER, NOTIFY, UPDATE"),
                                            ("Accept", "application/sdp")])
