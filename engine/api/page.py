"""The live page at ``/``: static HTML, CSS and JavaScript shipped in the package.

The page itself needs no token — it holds no data; the browser asks the user for
``API_TOKEN`` once and sends it on its own ``/api/v1/`` calls. So serving it
cannot weaken the API, and the headers make sure the page cannot be turned
against it either: a strict Content-Security-Policy (scripts only from this
origin, no inline script, no plugins, images only from here or from ``blob:``
URLs the page made itself), no framing, no sniffing, no referrer. No CORS header
is sent anywhere, so only this origin's scripts can read the API's answers.

Only the files named in ``FILES`` are served (no directory walking); they are
read once, when the application is built.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC_DIR = Path(__file__).resolve().parent / "static"

# URL path → (file in STATIC_DIR, content type)
FILES: dict[str, tuple[str, str]] = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
    "/static/favicon.svg": ("favicon.svg", "image/svg+xml"),
}

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    # a daemon upgrade ships a new page: always revalidate
    "Cache-Control": "no-cache",
}


def add_page_routes(app: web.Application) -> None:
    """Mount ``/`` and its few static files on the API's application."""
    for url, (name, content_type) in FILES.items():
        body = (STATIC_DIR / name).read_bytes()

        async def serve(request: web.Request, body: bytes = body,
                        content_type: str = content_type) -> web.Response:
            return web.Response(body=body, headers={"Content-Type": content_type,
                                                    **SECURITY_HEADERS})

        app.router.add_get(url, serve)


__all__ = ["CONTENT_SECURITY_POLICY", "FILES", "add_page_routes"]
