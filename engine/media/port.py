"""``RtpEngineMedia``: the MediaPort the call flows use (engine.ports.MediaPort).

Built from settings with :meth:`RtpEngineMedia.from_settings`, started with
``await media.start()`` (opens the ng sockets, pings the instances) and
closed with ``await media.close()``. What each method sends is built by the
pure :mod:`engine.media.commands` and :mod:`engine.media.codecs`; this class
adds the I/O (ng client, media fetch) and the error semantics:

* every failure is an ``engine.errors.MediaError`` subclass (typed: see
  :mod:`engine.rtpengine.errors` and :mod:`engine.media.errors`);
* ``delete`` is idempotent: an unknown call (never created, already deleted,
  lost in a daemon restart) is success; one that could not reach RTPEngine
  (frozen, down) is retried in the background for RTPENGINE_DELETE_RETRY_SECS
  (:mod:`engine.media.cleanup`) and never delays the caller;
* ``watch(call_id, on_lost)``: the call's owner is told when RTPEngine lost the
  call's session (instance restart, "Unknown call-id"), see
  :meth:`engine.rtpengine.client.RtpEngineClient.on_lost`;
* ``play_media`` accepts a media URL as ``file`` and resolves it first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from engine.log import get_logger
from engine.media import commands
from engine.media.cleanup import DeleteRetrier
from engine.media.codecs import codec_options
from engine.media.fetch import MediaFetcher
from engine.media.files import MediaResolver, is_file_url, is_http_url
from engine.ports import MediaAnswer
from engine.rtpengine.client import InstanceStatus, LostListener, RtpEngineClient, UpListener
from engine.rtpengine.errors import MediaTimeout, MediaUnavailable, NgSdpError, NgUnknownCall

log = get_logger(__name__)

#: ``on_lost(instance, why)`` for one watched call.
LostCallback = Callable[[str, str], None]


def _sdp_bytes(reply: Mapping[str, Any], command: str) -> bytes:
    sdp = reply.get("sdp")
    if not isinstance(sdp, str) or not sdp:
        raise NgSdpError(command, "reply carries no SDP", reply)
    return sdp.encode("utf-8", "surrogateescape")


class NgClient(Protocol):
    """What the media port uses of the ng client: ``RtpEngineClient`` itself, or a
    wrapper around it (``engine.api.metrics.TimedNgClient`` times each command)."""

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    def statuses(self) -> list[InstanceStatus]: ...
    def forget(self, call_id: str) -> None: ...
    def on_lost(self, listener: LostListener | None) -> None: ...
    def on_up(self, listener: UpListener) -> None: ...
    async def command(self, body: Mapping[str, Any]) -> dict[str, Any]: ...


class RtpEngineMedia:
    """MediaPort over RTPEngine's ng protocol."""

    def __init__(self, client: NgClient, resolver: MediaResolver, *,
                 default_codecs: Sequence[str] = ("PCMU",), delete_retry_secs: float = 120.0):
        self.client: NgClient = client
        self.resolver = resolver
        self.default_codecs = tuple(default_codecs)
        self._watchers: dict[str, LostCallback] = {}
        self.deletes = DeleteRetrier(self._delete_once, delete_retry_secs,
                                     on_give_up=client.forget)
        client.on_lost(self._lost)
        client.on_up(lambda _instance: self.deletes.wake())

    @classmethod
    def from_settings(cls, settings: Any, *, client: NgClient | None = None,
                      fetcher: MediaFetcher | None = None) -> RtpEngineMedia:
        """Wire the ng client (``RTPENGINE_HOST``) and media resolver (``MEDIA_*``)."""
        return cls(client or RtpEngineClient.from_settings(settings),
                   MediaResolver(settings.media_path,
                                 fetcher or MediaFetcher.from_settings(settings)),
                   default_codecs=settings.default_codecs,
                   delete_retry_secs=getattr(settings, "rtpengine_delete_retry_secs", 120.0))

    async def start(self) -> None:
        await self.client.start()

    async def close(self) -> None:
        try:
            await self.deletes.close()
            await self.client.close()
        finally:
            await self.resolver.close()

    def statuses(self) -> list[InstanceStatus]:
        """Health of every RTPEngine instance (for the HTTP API / CLI)."""
        return self.client.statuses()

    # ------------------------------------------------------------------ lost sessions

    def watch(self, call_id: str, on_lost: LostCallback) -> None:
        """Call ``on_lost(instance, why)`` if RTPEngine loses ``call_id``'s session."""
        self._watchers[call_id] = on_lost

    def unwatch(self, call_id: str) -> None:
        self._watchers.pop(call_id, None)

    def forget(self, call_id: str) -> None:
        """Forget where ``call_id`` was placed: its next offer goes to any healthy
        instance (re-creating a session its instance lost)."""
        self.client.forget(call_id)

    def _lost(self, call_id: str, instance: str, why: str) -> None:
        on_lost = self._watchers.get(call_id)
        if on_lost is not None:
            on_lost(instance, why)

    # ------------------------------------------------------------------ offer / answer

    async def offer(
        self, *, call_id: str, from_tag: str, sdp: bytes, source_codecs: Sequence[str] = (),
        dest_codecs: Sequence[str] = (), branch: str | None = None,
        received_from: str | None = None, to_tag: str | None = None,
    ) -> MediaAnswer:
        """Offer the caller's SDP; returns the SDP to send to the callee.

        ``to_tag`` marks a re-offer within an established call (a re-INVITE from
        either side: ``from_tag`` is then the sender's tag, ``to_tag`` the other's).

        With neither codec list the offer carries no codec options (the session
        build offer, spec §6.2). With either, the B-leg policy of spec §7.3
        applies and a missing list falls back to DEFAULT_CODECS (D-6). Give each
        fork its own ``branch`` (and the same one to :meth:`answer`) so forks do
        not overwrite each other's codec policy (D-34).
        """
        codec = None
        if source_codecs or dest_codecs:
            codec = codec_options(source_codecs, dest_codecs, offer_sdp=sdp,
                                  default=self.default_codecs)
        body = commands.offer_body(call_id=call_id, from_tag=from_tag, sdp=sdp, codec=codec,
                                   branch=branch, received_from=received_from, to_tag=to_tag)
        reply = await self.client.command(body)
        return MediaAnswer(_sdp_bytes(reply, "offer"), reply)

    async def answer(
        self, *, call_id: str, from_tag: str, to_tag: str, sdp: bytes,
        branch: str | None = None, received_from: str | None = None,
    ) -> MediaAnswer:
        """Answer with the callee's SDP; returns the SDP to send to the caller.

        ``from_tag`` stays the caller's tag; ``to_tag`` is the callee's.
        """
        body = commands.answer_body(call_id=call_id, from_tag=from_tag, to_tag=to_tag, sdp=sdp,
                                    branch=branch, received_from=received_from)
        reply = await self.client.command(body)
        return MediaAnswer(_sdp_bytes(reply, "answer"), reply)

    # ------------------------------------------------------------------ teardown / query

    async def delete(self, *, call_id: str, from_tag: str | None = None) -> None:
        """Remove the call from RTPEngine. Unknown calls are fine (idempotent); a delete
        that cannot reach RTPEngine is retried in the background (never raises for it)."""
        self.unwatch(call_id)
        try:
            await self._delete_once(call_id, from_tag)
        except NgUnknownCall:  # the daemon answers a warning, or this error with "fatal"
            log.debug("rtpengine delete: call already gone", call_id=call_id)
        except (MediaTimeout, MediaUnavailable) as exc:
            self.deletes.schedule(call_id, exc)

    async def _delete_once(self, call_id: str, from_tag: str | None = None) -> None:
        try:
            await self.client.command(commands.delete_body(call_id=call_id, from_tag=from_tag))
        except NgUnknownCall:
            self.client.forget(call_id)
            raise

    async def query(self, *, call_id: str) -> Mapping[str, Any]:
        return await self.client.command(commands.query_body(call_id=call_id))

    # ------------------------------------------------------------------ media

    async def play_media(
        self, *, call_id: str, from_tag: str, file: str | None = None,
        blob: bytes | None = None, repeat: int | None = None,
    ) -> int | None:
        """Play to the party ``from_tag`` (use the callee's tag to reach the callee).

        ``file`` is an absolute path or a media URL (``file:``/``http(s):``, then
        resolved first). Returns one pass's duration in ms when RTPEngine reports it.
        """
        if file is not None and (is_file_url(file) or is_http_url(file)):
            file = await self.resolve(file)
        body = commands.play_media_body(call_id=call_id, from_tag=from_tag, file=file,
                                        blob=blob, repeat=repeat)
        reply = await self.client.command(body)
        duration = reply.get("duration")
        return duration if isinstance(duration, int) else None

    async def stop_media(self, *, call_id: str, from_tag: str) -> None:
        await self.client.command(commands.stop_media_body(call_id=call_id, from_tag=from_tag))

    async def play_dtmf(
        self, *, call_id: str, from_tag: str, code: str, duration: int = 250
    ) -> None:
        """Inject a DTMF event *from* the party ``from_tag`` towards the other party.

        Needs ``inject-DTMF`` on offer and answer (always sent) and RTP flowing
        from that party at the time; otherwise RTPEngine answers ok and sends nothing.
        """
        await self.client.command(commands.play_dtmf_body(
            call_id=call_id, from_tag=from_tag, code=code, duration=duration))

    async def resolve(self, url: str) -> str:
        return await self.resolver.resolve(url)


__all__ = ["RtpEngineMedia"]
