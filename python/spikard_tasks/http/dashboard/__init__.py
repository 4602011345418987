"""The web dashboard: one HTML page, a style sheet and a script (``index.html``,
``app.css``, ``app.js``, package data next to this module; no CDN, no web font), which
read and act through the operations routes (:mod:`..ops_routes`).

``create_app(queue, dashboard=True)`` serves it at ``{prefix}/dashboard/`` next to the
routes it calls; ``dashboard_app(queue)`` (:mod:`..standalone`) builds it alone (the
page at ``/``, its API below ``/api``) to mount anywhere. The page finds its API by a
relative URL, so it works behind any mount point or proxy prefix. Every asset is served
with a strict ``Content-Security-Policy`` (scripts and styles from this origin only)."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ..guard import AuthHook, authorize
from ..wire import HTTPError, Receive, Scope, Send, error_response

__all__ = ["ASSETS", "DashboardApp", "dashboard_part"]

#: An ASGI 3 application.
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_HERE = Path(__file__).resolve().parent
#: The files served, by their path below the dashboard, with their media type.
ASSETS = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.css": ("app.css", "text/css; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
}
_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-cache"),
]


@functools.lru_cache(maxsize=8)
def _asset(name: str) -> bytes:
    return (_HERE / name).read_bytes()


def _inner_path(scope: Scope) -> str:
    """``scope["path"]`` below ``scope["root_path"]``, trailing slash kept."""
    path: str = scope.get("path") or "/"
    root: str = scope.get("root_path") or ""
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        path = path[len(root) :]
    return path


def dashboard_part(scope: Scope, prefix: str) -> str | None:
    """The path below ``{prefix}/dashboard`` of a request for the dashboard (``""``
    for the bare ``{prefix}/dashboard``), or ``None`` for any other request."""
    path = _inner_path(scope)
    head = prefix + "/dashboard"
    if path == head:
        return ""
    if path.startswith(head + "/"):
        return path[len(head) :]
    return None


async def _send(send: Send, scope: Scope, status: int, headers: list[Any], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    head = scope.get("method") == "HEAD"
    await send({"type": "http.response.body", "body": b"" if head else body})


class DashboardApp:
    """The dashboard's page and assets (and, built by ``dashboard_app``, its API
    below ``/api``). ``api`` is the URL of the operations routes relative to the page."""

    def __init__(
        self,
        *,
        auth: AuthHook | None,
        read_only: bool,
        api: str,
        api_app: ASGIApp | None = None,
    ) -> None:
        self.auth = auth
        self.read_only = read_only
        self.api = api
        self.api_app = api_app

    def page(self) -> bytes:
        """``index.html`` with the API location and the read-only flag filled in."""
        text = _asset("index.html").decode()
        text = text.replace("__API__", self.api).replace(
            "__READ_ONLY__", "true" if self.read_only else "false"
        )
        return text.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI 3 entry point of the app ``dashboard_app`` builds."""
        if scope["type"] != "http":
            if self.api_app is not None:
                await self.api_app(scope, receive, send)
            elif scope["type"] == "lifespan":  # pragma: no cover - always built with one
                await receive()
                await send({"type": "lifespan.startup.complete"})
            return
        path = _inner_path(scope)
        if self.api_app is not None and (path == "/api" or path.startswith("/api/")):
            await self.api_app(scope, receive, send)
            return
        await self.serve(scope, receive, send, path)

    async def serve(self, scope: Scope, receive: Receive, send: Send, part: str) -> None:
        """Answers the request for ``part``, the path below the dashboard: ``""`` is
        redirected to ``/`` (so the page's relative URLs resolve below it)."""
        try:
            await authorize(self.auth, scope)
            method = str(scope.get("method", "GET")).upper()
            if method not in ("GET", "HEAD"):
                allow = [("allow", "GET, HEAD")]
                raise HTTPError(405, f"method {method} not allowed here", headers=allow)
            if part == "":
                last = _inner_path(scope).rstrip("/").rsplit("/", 1)[-1]
                location = (last or ".") + "/"
                await _send(send, scope, 308, [(b"location", location.encode())], b"")
                return
            found = ASSETS.get(part)
            if found is None:
                raise HTTPError(404, "not found")
            name, media = found
            body = self.page() if name == "index.html" else _asset(name)
        except HTTPError as exc:
            await error_response(exc)(scope, receive, send)
            return
        headers = [
            (b"content-type", media.encode()),
            (b"content-length", str(len(body)).encode()),
            *_HEADERS,
        ]
        await _send(send, scope, 200, headers, body)
