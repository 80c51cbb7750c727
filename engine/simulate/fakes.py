"""In-memory stand-ins for the ports, for ``dragonpbx simulate`` and the unit tests.

Nothing here touches the network: a ``FakeRequest`` records the replies a machine
sends, the hook caller, SIP port, media port, store and abuse service answer from
the script's ``outcomes`` (see ``engine.simulate.outcomes``) and otherwise behave
like a healthy peer (the store is ``engine.store.memory.MemoryStore``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.errors import HookError, MediaError, SipError, StoreError
from engine.ports import HookReply, MediaAnswer, Peer
from engine.simulate.outcomes import Outcomes, current_action
from engine.sip.message import SipRequest, SipResponse
from engine.sip.parser import parse_message
from engine.store.memory import MemoryStore

Recorder = Callable[[dict[str, Any]], None]


def _nothing(_: dict[str, Any]) -> None:
    return None


def _header_items(headers: Any) -> list[tuple[str, str]]:
    if isinstance(headers, dict):
        return [(str(k), str(v)) for k, v in headers.items()]
    return [(str(k), str(v)) for k, v in headers or ()]


# --------------------------------------------------------------------------- SIP


class FakeRequest:
    """An incoming request whose replies are recorded instead of sent."""

    def __init__(self, raw: str, source: Peer | None = None, flow: str | None = None,
                 on_reply: Recorder = _nothing):
        text = raw if "\r\n" in raw else raw.replace("\n", "\r\n")
        message = parse_message(text.encode())
        if not isinstance(message, SipRequest):
            raise ValueError(f"a FakeRequest is built from a request, not {message!r}")
        self.message = message
        self.method = self.message.method
        self.uri = self.message.uri
        self.call_id = self.message.call_id
        self.source = source or Peer("192.0.2.10", 5072, "udp")
        self.flow = flow
        self.replies: list[tuple[int, str | None, list[tuple[str, str]], bytes]] = []
        self.cancel_callbacks: list[Any] = []
        self._on_reply = on_reply
        self._cancelled = False
        self.dialog: FakeDialog | None = None  # set when answered
        self.dialog_record: Recorder = _nothing  # what the answered dialog sends

    @property
    def final_sent(self) -> bool:
        return any(r[0] >= 200 for r in self.replies)

    @property
    def final_status(self) -> int | None:
        return next((r[0] for r in self.replies if r[0] >= 200), None)

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        """The caller CANCELs: the stack would have answered 487 already."""
        if self.final_sent or self._cancelled:
            return
        self._cancelled = True
        self.replies.append((487, "Request Terminated", [], b""))
        for callback in self.cancel_callbacks:
            callback()

    def header(self, name: str) -> str | None:
        return self.message.header(name)

    def header_values(self, name: str) -> list[str]:
        return self.message.header_values(name)

    @property
    def body(self) -> bytes:
        return self.message.body

    def on_cancel(self, cb: Any) -> None:
        self.cancel_callbacks.append(cb)

    async def reply(self, status: int, reason: str | None = None, *, headers: Any = (),
                    body: bytes = b"", content_type: str | None = None) -> None:
        if self.final_sent:
            return
        items = _header_items(headers)
        if content_type:
            items.append(("Content-Type", content_type))
        self.replies.append((status, reason, items, body))
        self._on_reply({"call_id": self.call_id, "method": self.method, "status": status,
                        "reason": reason or "", "headers": items})

    async def answer(self, *, sdp: bytes, headers: Any = ()) -> FakeDialog:
        await self.reply(200, "OK", headers=headers, body=sdp, content_type="application/sdp")
        self.dialog = FakeDialog(self.call_id, local_sdp=sdp, remote_sdp=self.body or None,
                                 party="caller", record=self.dialog_record)
        return self.dialog

    @property
    def status(self) -> int:
        return self.replies[-1][0]

    def reply_header(self, name: str) -> list[str]:
        return [v for k, v in self.replies[-1][2] if k.lower() == name.lower()]


class FakeDialog:
    """An established dialog; in-dialog requests it would send are only recorded."""

    def __init__(self, call_id: str, *, local_sdp: bytes | None = None,
                 remote_sdp: bytes | None = None, remote_tag: str = "sim-remote",
                 party: str = "caller", record: Recorder = _nothing):
        self.party = party  # whose dialog: "caller" (A leg) or "callee" (a B leg)
        self._record = record
        self.id = f"{call_id};sim"
        self.call_id = call_id
        self.local_tag = "sim-local"
        self.remote_tag = remote_tag
        self.local_sdp = local_sdp
        self.remote_sdp = remote_sdp
        self.connected = True
        self.listeners: dict[str, Any] = {}
        self.sent: list[str] = []

    def _send(self, method: str) -> None:
        self.sent.append(method)
        self._record({"sip_request": {"method": method, "uri": f"({self.party} dialog)",
                                      "by": current_action(), "outcome": "default"}})

    async def ack(self, *, sdp: bytes | None = None) -> None:
        self._send("ACK")

    async def bye(self, *, headers: Any = ()) -> None:
        self._send("BYE")
        self.connected = False

    async def reinvite(self, *, sdp: bytes | None, headers: Any = ()) -> SipResponse:
        self._send("INVITE")
        return SipResponse(200, "OK", body=self.local_sdp or b"")

    async def request(self, method: str, *, headers: Any = (), body: bytes = b"",
                      content_type: str | None = None) -> SipResponse:
        self._send(method)
        return SipResponse(200, "OK")

    def on(self, event: str, callback: Any) -> None:
        self.listeners[event] = callback

    def off(self, event: str) -> None:
        self.listeners.pop(event, None)


def response_from(outcome: dict[str, Any]) -> SipResponse:
    """``{status, reason?, headers?, body?}`` → a SIP response."""
    body = outcome.get("body", "")
    return SipResponse(int(outcome.get("status", 200)), str(outcome.get("reason", "")),
                       _header_items(outcome.get("headers")),
                       body.encode() if isinstance(body, str) else body)


class FakeClientLeg:
    """An outgoing INVITE that ends as the script says (default: 200 with an SDP)."""

    def __init__(self, uri: str, outcome: dict[str, Any], call_id: str,
                 on_provisional: Any, port: FakeSipPort):
        self.port = port
        self.uri = uri
        self.call_id = call_id
        self.from_tag = "sim-from"
        # a scripted leg that is "silent" sends not even 100 Trying (a CANCEL must wait)
        self.responded = not outcome.get("silent", False)
        self._outcome = outcome
        self._on_provisional = on_provisional
        self._cancelled = asyncio.get_running_loop().create_future()

    async def cancel(self, *, headers: Any = ()) -> None:
        if not self._cancelled.done():
            self._cancelled.set_result(True)

    async def result(self) -> FakeDialog:
        outcome = self._outcome
        for provisional in outcome.get("provisional", ()):
            if self._on_provisional is not None:
                self._on_provisional(response_from(provisional))
            await asyncio.sleep(0)
        if outcome.get("no_answer"):  # rings until cancelled (the ring timeout decides)
            await self._cancelled
            raise SipError(487, "Request Terminated")
        if self._cancelled.done():
            raise SipError(487, "Request Terminated")
        status = int(outcome.get("status", 200))
        if status >= 300:
            raise SipError(status, str(outcome.get("reason", "")), response_from(outcome))
        sdp = outcome.get("sdp", "v=0\r\no=- 1 1 IN IP4 192.0.2.99\r\ns=-\r\n")
        dialog = FakeDialog(self.call_id, remote_sdp=sdp.encode(), party="callee",
                            record=self.port.record)
        self.port.dialogs.append(dialog)
        return dialog


@dataclass
class FakeSipPort:
    """Requests the machines send get the scripted responses (default 200 OK)."""

    outcomes: Outcomes
    record: Recorder = _nothing
    sent: list[dict[str, Any]] = field(default_factory=list)
    dialogs: list[FakeDialog] = field(default_factory=list)  # answered B legs

    def on_request(self, method: str, handler: Any) -> None:
        return None

    def contact_uri(self, *, transport: str = "udp", user: str | None = None) -> str:
        who = f"{user}@" if user else ""
        suffix = "" if transport == "udp" else f";transport={transport}"
        return f"sip:{who}198.51.100.1:5060{suffix}"

    def _note(self, method: str, uri: str, outcome: dict[str, Any] | None) -> None:
        item = {"method": method, "uri": uri, "by": current_action(),
                "outcome": outcome if outcome is not None else "default"}
        self.sent.append(item)
        self.record({"sip_request": item})

    async def request(self, uri: str, method: str, *, headers: Any = (), body: bytes = b"",
                      content_type: str | None = None, proxy: str | None = None,
                      auth: Any = None, flow: str | None = None) -> SipResponse:
        outcome = self.outcomes.take("sip", method)
        self._note(method, uri, outcome)
        if outcome is None:
            return SipResponse(200, "OK", [("Expires", "3600")])
        return response_from(outcome)

    def invite(self, uri: str, *, sdp: bytes | None, headers: Any = (), proxy: str | None = None,
               auth: Any = None, flow: str | None = None,
               on_provisional: Any = None) -> FakeClientLeg:
        outcome = self.outcomes.take("sip", "INVITE")
        self._note("INVITE", uri, outcome)
        return FakeClientLeg(uri, outcome or {"status": 200}, f"sim-b-{len(self.sent)}",
                             on_provisional, self)


# --------------------------------------------------------------------------- hooks


def hook_reply_from(outcome: dict[str, Any]) -> HookReply:
    """``{status, json}`` / ``{status, body}`` / ``{timeout|unreachable: true}`` → a reply
    or the HookError the real client would raise."""
    if outcome.get("timeout"):
        raise HookError("simulated timeout", kind="timeout")
    if outcome.get("unreachable"):
        raise HookError("simulated connection refused", kind="connect")
    status = int(outcome.get("status", 200))
    if "json" in outcome:
        return HookReply(status, json.dumps(outcome["json"]).encode(), outcome["json"], True)
    return HookReply(status, str(outcome.get("body", "")).encode())


@dataclass
class ScriptedCaller:
    """A HookCaller: replies set per URL by tests (HookReply, HookError or (delay, reply)),
    or the script's outcomes for the calling action or the URL."""

    replies: dict[str, Any] = field(default_factory=dict)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    outcomes: Outcomes = field(default_factory=Outcomes)
    record: Recorder = _nothing

    async def post(self, url: str, payload: Any, *, timeout: float) -> HookReply:
        self.calls.append((url, json.loads(json.dumps(payload))))
        outcome = self.outcomes.take("hook", url)
        self.record({"hook": {"url": url, "by": current_action(),
                              "outcome": outcome if outcome is not None else "default",
                              "payload": self.calls[-1][1]}})
        if outcome is not None:
            return hook_reply_from(outcome)
        reply = self.replies.get(url)
        if isinstance(reply, Exception):
            raise reply
        if reply is None:
            raise HookError("no reply scripted", kind="connect")
        if isinstance(reply, tuple):  # (delay, reply)
            await asyncio.sleep(reply[0])
            reply = reply[1]
        return reply

    def ok(self, url: str, body: Any, status: int = 200) -> None:
        raw = json.dumps(body).encode()
        self.replies[url] = HookReply(status, raw, body, True)

    async def close(self) -> None:
        return None


class RecordingStatusHook:
    """Collects StatusHook events instead of POSTing them."""

    def __init__(self, record: Recorder = _nothing) -> None:
        self.events: list[dict[str, Any]] = []
        self._record = record

    def send(self, url: str | None, call_id: str, event: str, *, label: Any = None,
             **extra: Any) -> bool:
        if not url or label is False:
            return False
        self.events.append({"url": url, "callId": call_id, "event": event, **extra})
        self._record({"statushook": event})
        return True

    def names(self) -> list[str]:
        return [e["event"] for e in self.events]


# --------------------------------------------------------------------------- media, store


class FakeMedia:
    """Records MediaPort calls; ``{error: msg}`` outcomes make one fail."""

    def __init__(self, outcomes: Outcomes | None = None, record: Recorder = _nothing) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.watched: dict[str, Any] = {}
        self.outcomes = outcomes or Outcomes()
        self._record = record

    def _note(self, name: str, outcome: dict[str, Any] | None) -> None:
        self._record({"media": {"op": name, "by": current_action(),
                                "outcome": outcome if outcome is not None else "default"}})

    def _fail_if_scripted(self, name: str) -> dict[str, Any] | None:
        outcome = self.outcomes.take("media", f"media.{name}")
        self._note(name, outcome)
        if outcome is not None and outcome.get("error"):
            raise MediaError(str(outcome["error"]))
        return outcome

    async def delete(self, **kw: Any) -> None:
        self.calls.append(("delete", kw))
        self._note("delete", None)

    def watch(self, call_id: str, lost: Any) -> None:
        """A call asks to hear ``media.lost``; a simulated RTPEngine never loses one
        unless the script posts the event itself."""
        self.watched[call_id] = lost

    def unwatch(self, call_id: str) -> None:
        self.watched.pop(call_id, None)

    async def resolve(self, url: str) -> str:
        self.calls.append(("resolve", {"url": url}))
        return "/simulated/" + url.rsplit("/", 1)[-1]

    def __getattr__(self, name: str) -> Any:
        async def record(**kw: Any) -> Any:
            self.calls.append((name, kw))
            outcome = self._fail_if_scripted(name)
            if name in ("offer", "answer"):
                sdp = (outcome or {}).get("sdp", "v=0\r\no=- 2 2 IN IP4 198.51.100.2\r\n")
                return MediaAnswer(sdp.encode())
            if name == "play_media":
                return int((outcome or {}).get("duration_ms", 1000))
            return None
        return record


class ScriptedStore(MemoryStore):
    """MemoryStore whose operations fail when the script says so (``{error: msg}``) for
    the running action; ``down = True`` still fails every operation."""

    def __init__(self, outcomes: Outcomes, **kw: Any) -> None:
        super().__init__(**kw)
        self.outcomes = outcomes

    def _check(self, op: str) -> None:
        super()._check(op)
        outcome = self.outcomes.take("store", f"store.{op}")
        if outcome is not None and outcome.get("error"):
            raise StoreError(f"simulated: {outcome['error']}")


@dataclass
class ScriptedAbuse:
    """The abuse protection (engine.abuse) as the script says: ``{result: banned}``
    (clear, banned, nonce_spent) or ``{error: msg}``; clear when nothing is scripted."""

    outcomes: Outcomes
    exempt_sources: set[str] = field(default_factory=set)

    def exempt(self, host: str) -> bool:
        return host in self.exempt_sources

    async def check(self, **kw: Any) -> str:
        outcome = self.outcomes.take("abuse") or {}
        if outcome.get("error"):
            raise StoreError(f"simulated: {outcome['error']}")
        return str(outcome.get("result", "clear"))

    async def record_failure(self, **kw: Any) -> None:
        outcome = self.outcomes.take("abuse") or {}
        if outcome.get("error"):
            raise StoreError(f"simulated: {outcome['error']}")
