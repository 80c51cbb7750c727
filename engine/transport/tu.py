"""What the embedded stack's parts may ask of the port: the transaction-user (TU)
interface.

``EmbeddedSipPort`` (port.py) owns the pure ``EndpointCore``, the socket driver and the
tables of transactions and dialogs, and builds the parts — incoming requests
(requests.py), dialogs (dialogs.py), INVITE legs (legs.py), client transactions
(client.py, uac.py). The parts never reach the core or the driver: they depend on this
Protocol only, so imports run one way (port → parts → this interface) and a part's
needs are listed in one place.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from engine.ports import Clock, Credentials, Peer
from engine.sip.builders import IdGenerator
from engine.sip.effects import TimerConfig
from engine.sip.message import SipRequest, SipResponse
from engine.transport.resolve import Resolver

if TYPE_CHECKING:  # the parts' own classes, which name this interface in turn
    from engine.transport.client import ClientUser
    from engine.transport.dialogs import EmbeddedDialog
    from engine.transport.requests import EmbeddedIncomingRequest


class TransactionUser(Protocol):
    """The port as its parts see it."""

    ids: IdGenerator
    clock: Clock
    timers: TimerConfig
    user_agent: str | None

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    @property
    def resolver(self) -> Resolver: ...

    # ---- running application code
    def spawn(self, coro: Coroutine[Any, Any, Any], what: str) -> asyncio.Task[Any]: ...

    def safe_call(self, callback: Callable[..., Any], what: str, *args: Any) -> None: ...

    def fire(self, callback: Callable[[Any], Any], req: EmbeddedIncomingRequest,
             what: str) -> None: ...

    # ---- server transactions
    def send_response(self, tx: int, status: int, reason: str | None,
                      items: list[tuple[str, str]], body: bytes,
                      content_type: str | None) -> SipResponse: ...

    def answered(self, req: EmbeddedIncomingRequest) -> None: ...

    def answer_invite(self, req: EmbeddedIncomingRequest, status: int, reason: str | None,
                      items: list[tuple[str, str]], body: bytes,
                      content_type: str | None) -> EmbeddedDialog | None: ...

    def track_invite(self, req: EmbeddedIncomingRequest) -> None: ...

    # ---- client transactions
    def send_request(self, request: SipRequest, dest: Peer, flow: str | None,
                     user: ClientUser) -> int: ...

    def cancel_request(self, tx: int, headers: list[tuple[str, str]]) -> None: ...

    def send_ack(self, ack: SipRequest, dest: Peer, invite_tx: int | None,
                 flow: str | None) -> None: ...

    def authorized_copy(self, request: SipRequest, challenge: SipResponse,
                        auth: Credentials, cseq: int) -> SipRequest | None: ...

    def ack_and_bye(self, request: SipRequest | None, response: SipResponse,
                    invite_tx: int | None, dest: Peer | None, flow: str | None,
                    reason: str, transport: str = "udp") -> None: ...

    # ---- dialogs and connections
    def add_dialog(self, dialog: EmbeddedDialog) -> None: ...

    def remove_dialog(self, dialog: EmbeddedDialog) -> None: ...

    def flow_alive(self, flow: str | None) -> bool: ...

    def tcp_flow_to(self, host: str, port: int) -> str | None: ...

    def local_contact(self, transport: str, peer_host: str | None = None,
                      flow: str | None = None) -> str: ...
