"""Run shipped machines against in-memory fakes (pure logic; real peers are in e2e).

``FakeRequest`` records replies; services use ``MemoryStore``, a scripted
HookCaller, the real DigestAuthenticator and a ConfigSnapshot built from JSON.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import engine.actions  # noqa: F401 - registers the shipped actions
from engine.clock import FakeClock
from engine.config.validate import snapshot_from_json_text
from engine.errors import HookError
from engine.fsm import MachineLibrary, Runtime
from engine.hooks.callhook import CallHook
from engine.hooks.reghook import RegHook
from engine.hooks.templates import CallTemplates
from engine.paths import machines_dir
from engine.ports import HookReply, Peer
from engine.settings import load_settings
from engine.sip.digest import DigestAuthenticator, StoreNonceCounter
from engine.sip.message import parse_message
from engine.store.memory import MemoryStore

_LIBRARY: MachineLibrary | None = None


def library() -> MachineLibrary:
    global _LIBRARY
    if _LIBRARY is None:
        _LIBRARY = MachineLibrary(machines_dir())
        _LIBRARY.load()
    return _LIBRARY


class FakeRequest:
    def __init__(self, raw: str, source: Peer | None = None, flow: str | None = None):
        self.message = parse_message(raw.replace("\n", "\r\n").encode())
        self.method = self.message.method
        self.uri = self.message.uri
        self.call_id = self.message.call_id
        self.source = source or Peer("192.0.2.10", 5072, "udp")
        self.flow = flow
        self.replies: list[tuple[int, str | None, list[tuple[str, str]], bytes]] = []
        self.cancel_callbacks: list[Any] = []

    @property
    def final_sent(self) -> bool:
        return any(r[0] >= 200 for r in self.replies)

    @property
    def cancelled(self) -> bool:
        return False

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
        self.replies.append((status, reason, list(headers), body))

    @property
    def status(self) -> int:
        return self.replies[-1][0]

    def reply_header(self, name: str) -> list[str]:
        return [v for k, v in self.replies[-1][2] if k.lower() == name.lower()]


@dataclass
class ScriptedCaller:
    """A HookCaller whose replies the test sets: HookReply, HookError or a delay."""

    replies: dict[str, Any] = field(default_factory=dict)
    calls: list[tuple[str, Any]] = field(default_factory=list)

    async def post(self, url: str, payload: Any, *, timeout: float) -> HookReply:
        self.calls.append((url, json.loads(json.dumps(payload))))
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

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def send(self, url: str | None, call_id: str, event: str, *, label: Any = None,
             **extra: Any) -> bool:
        if not url or label is False:
            return False
        self.events.append({"url": url, "callId": call_id, "event": event, **extra})
        return True

    def names(self) -> list[str]:
        return [e["event"] for e in self.events]


class FakeMedia:
    """Records MediaPort calls (unit tests of the machines' decisions only)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def delete(self, **kw: Any) -> None:
        self.calls.append(("delete", kw))

    def __getattr__(self, name: str) -> Any:
        async def record(**kw: Any) -> Any:
            self.calls.append((name, kw))
        return record


CONFIG = {
    "domains": {
        "pbx.test": {
            "domain_id": 1,
            "clients": [
                {"username": "alice", "password": "secret", "codecs": ["PCMU"],
                 "dialplan": {"1???": "http://hooks/call"}, "expires": 600},
                {"username": "2*", "reghook": "http://hooks/reg"},
            ],
            "trunks": [
                {"id": 7, "name": "carrier", "inbound": ["203.0.113.0/24"],
                 "outbound": {"host": "sip.carrier.test"}, "codecs": ["PCMA"],
                 "dialplan": {"44*": "http://hooks/did", "99*": "file:script.json"}},
            ],
        }
    }
}


def make_services(config: dict[str, Any] | None = None, **env: str) -> SimpleNamespace:
    settings = load_settings(env)
    templates_dir = env.get("FILE_PATH")
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    caller = ScriptedCaller()
    snapshot = snapshot_from_json_text(json.dumps(config or CONFIG), file="test.json")
    return SimpleNamespace(
        settings=settings, config=snapshot, store=store, clock=clock, caller=caller,
        digest=DigestAuthenticator(b"k" * 32, counter=StoreNonceCounter(store)),
        reghook=RegHook(caller, timeout=settings.reghook_timeout),
        callhook=CallHook(caller, timeout=settings.callhook_timeout),
        templates=CallTemplates(templates_dir or settings.file_path, now=clock.time),
        statushook=RecordingStatusHook(), media=FakeMedia(),
    )


def make_runtime(services: SimpleNamespace) -> Runtime:
    return Runtime(library(), services, services.clock)


async def run(rt: Runtime, machine: str, req: FakeRequest, settle: int = 50,
              tick: float = 0.0) -> Any:
    """Start ``machine`` for ``req`` and let it run; ``tick`` advances the fake clock
    that much per step (for timers)."""
    inst = rt.spawn(machine, vars={"req": req})
    await inst.send("start")
    for _ in range(settle):
        if inst.done:
            break
        await asyncio.sleep(0)
        if tick:
            rt.clock.advance(tick)
    return inst
