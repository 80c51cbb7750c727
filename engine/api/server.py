"""The HTTP server on ``WEBHOST:WEBPORT`` (aiohttp): API, ``/metrics``, ``/health``,
and the live page at ``/`` (engine/api/page.py).

Auth: ``/health``, ``/ready`` and ``/metrics`` are open (probes and Prometheus);
everything under ``/api/v1/`` needs ``Authorization: Bearer $API_TOKEN``
(compared in constant time) when ``API_TOKEN`` is set. Without a token the API
is open, so the daemon refuses to start when ``WEBHOST`` is not a loopback
address: an unauthenticated hang-up button must not face a network.

The component starts last (everything it shows exists by then) and stops first;
while the daemon drains it keeps serving, so ``/ready`` answers 503 "draining".
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from engine.api import routes
from engine.api.calls import CallBook
from engine.api.metrics import Metrics
from engine.api.openapi import ROUTES
from engine.api.page import add_page_routes
from engine.app import Component
from engine.errors import ConfigError
from engine.log import get_logger
from engine.settings import Settings, is_loopback_host

log = get_logger("engine.api")

API_PREFIX = "/api/v1/"


def check_exposure(settings: Settings) -> None:
    """Refuse an open API on a non-loopback address (one clear line at start-up)."""
    if settings.webport and not settings.api_token and not is_loopback_host(settings.webhost):
        raise ConfigError(f"WEBHOST={settings.webhost} is not a loopback address and "
                          "API_TOKEN is not set: set API_TOKEN (or WEBHOST=127.0.0.1, or "
                          "WEBPORT=0 to turn the HTTP API off)")


def _authorised(request: web.Request, token: bytes | None) -> bool:
    if token is None:
        return True
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token)


def make_app(ctx: routes.ApiContext, token: str | None) -> web.Application:
    secret = token.encode() if token else None
    Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        api = request.path.startswith(API_PREFIX)
        if api and not _authorised(request, secret):
            return routes.error(401, "unauthorized", "missing or wrong bearer token "
                                "(Authorization: Bearer $API_TOKEN)")
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            code = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}.get(
                exc.status, "error")
            text = exc.text if exc.text and exc.status == 400 else exc.reason
            return routes.error(exc.status, code, text or exc.reason)

    app = web.Application(middlewares=[guard])
    app[routes.CTX] = ctx
    for r in ROUTES:
        app.router.add_route(r.method, r.path, r.handler)
    add_page_routes(app)  # the live page at / (static files; its API calls need the token)
    return app


class ApiComponent(Component):
    """The HTTP API and metrics (WEBPORT; 0 = off)."""

    name = "api"

    def __init__(self, services: Any, metrics: Metrics | None):
        self.settings = settings = services.settings
        check_exposure(settings)
        self.services = services
        self.metrics = metrics
        self.calls = CallBook(services.runtime, keep_secs=settings.api_recent_calls_secs,
                              keep_max=settings.api_recent_calls_max)
        services.runtime.finish_observers.append(self.calls.instance_finished)
        self.ctx = routes.ApiContext(services, self.calls, metrics)
        self._runner: web.AppRunner | None = None
        self.bound: list[str] = []

    def attach(self, app: Any) -> None:
        self.ctx.app = app

    def _note_machine_versions(self) -> None:
        library = self.services.runtime.library
        now = time.time()
        loads = self.ctx.machine_loads
        for name, version in library.versions().items():
            if loads.get(name, ("", 0.0))[0] != version:
                loads[name] = (version, now)

    async def start(self) -> None:
        self._note_machine_versions()
        if self.metrics is not None:
            self.metrics.watch(runtime=self.services.runtime, health=self.services.health,
                               store=self.services.store)
            self.metrics.start_lag_probe()
        runner = web.AppRunner(make_app(self.ctx, self.settings.api_token),
                               access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.settings.webhost, self.settings.webport,
                           reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigError(f"WEBPORT: cannot listen on {self.settings.webhost}:"
                              f"{self.settings.webport} ({exc.strerror or exc})") from exc
        self._runner = runner
        self.bound = [f"http://{self.settings.webhost}:{self.settings.webport}"]

    async def reload(self) -> None:
        self._note_machine_versions()

    async def stop(self) -> None:
        if self.metrics is not None:
            await self.metrics.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def summary(self) -> dict[str, Any]:
        return {"api": self.bound[0] if self.bound else None,
                "api_token": bool(self.settings.api_token)}


__all__ = ["ApiComponent", "check_exposure", "make_app"]
