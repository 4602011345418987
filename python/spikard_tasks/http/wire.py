"""HTTP pieces of :mod:`spikard_tasks.asgi` on Starlette: the refusal exception (a
Starlette ``HTTPException``), the JSON response, reading a size-limited body from a
``Request``, strict JSON parsing, and the paths of a (possibly mounted) request."""

from __future__ import annotations

import json
import logging
import math
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable
from http import HTTPStatus
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import request_response
from starlette.types import Message, Receive, Scope, Send

__all__ = [
    "JSON",
    "Endpoint",
    "HTTPError",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "answer_crash",
    "answer_disconnect",
    "answer_refusal",
    "error_response",
    "header",
    "mount_path",
    "not_found",
    "parse_json",
    "read_body",
    "reason",
    "route_path",
]

log = logging.getLogger("spikard_tasks.asgi")


class HTTPError(HTTPException):
    """A refusal: answered as ``status`` with ``{"error": message, **extra}``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        headers: Iterable[tuple[str, str]] = (),
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(status, message, dict(headers) or None)
        self.message = message
        self.extra = extra or {}

    @property
    def status(self) -> int:
        """The HTTP status of the answer."""
        return self.status_code

    def payload(self) -> dict[str, Any]:
        """The JSON body of the response."""
        return {"error": self.message, **self.extra}

    def __str__(self) -> str:
        return self.message


class JSON(Response):
    """An ``application/json`` response (compact, ASCII, no ``NaN``); a ``HEAD``
    request gets its headers without the body."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return json.dumps(content, separators=(",", ":"), allow_nan=False).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("method") != "HEAD":
            await super().__call__(scope, receive, send)
            return
        start = {"type": "http.response.start", "status": self.status_code}
        await send({**start, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": b""})


def error_response(exc: HTTPError) -> JSON:
    """The answer to a refusal."""
    return JSON(exc.payload(), exc.status_code, exc.headers)


def header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of the request header ``name`` (lower case), or ``None``."""
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return bytes(value)
    return None


def route_path(scope: Scope) -> str:
    """The request path below the mount point: ``scope["path"]`` without
    ``scope["root_path"]`` (ASGI servers and Starlette ≥ 0.35 include it in ``path``)
    and without one trailing slash (Litestar mounts add one)."""
    path: str = scope.get("path") or "/"
    root: str = scope.get("root_path") or ""
    if root and path.startswith(root):
        if path == root:
            path = ""
        elif path[len(root)] == "/":
            path = path[len(root) :]
    if len(path) > 1 and path.endswith("/"):
        path = path[:-1]
    return path


def mount_path(scope: Scope) -> str:
    """The path the app is mounted at, as the client sees it: ``scope["root_path"]``,
    or else what ``raw_path`` has in front of ``path`` (mounts that strip ``path`` but
    leave ``root_path`` empty, like Litestar's). Only used to build URLs."""
    root: str = scope.get("root_path") or ""
    if root:
        return root
    raw = scope.get("raw_path")
    path = route_path(scope)
    if not raw or not path:
        return ""
    full = urllib.parse.unquote(bytes(raw).decode("ascii", "replace")).split("?", 1)[0]
    full = full[:-1] if len(full) > 1 and full.endswith("/") else full
    if len(full) > len(path) and full.endswith(path):
        return full[: -len(path)]
    return ""


async def read_body(request: Request, limit: int) -> bytes:
    """Reads the request body, refusing with 413 past ``limit`` bytes: at once when
    ``Content-Length`` says so, otherwise as soon as the streamed bytes exceed it. A
    client that goes away raises Starlette's ``ClientDisconnect``."""
    declared = header(request.scope, b"content-length")
    if declared is not None:
        text = declared.strip()
        if not text.isdigit():
            raise HTTPError(400, "invalid Content-Length header")
        if int(text) > limit:
            raise HTTPError(413, f"request body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPError(413, f"request body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is out of range")
    return value


def parse_json(body: bytes) -> Any:
    """Parses a request body as strict JSON (no ``NaN``/``Infinity``, no number that
    overflows a float); 422 otherwise."""
    try:
        return json.loads(body, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise HTTPError(422, "invalid JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, int digit limits
        raise HTTPError(422, f"invalid JSON: {exc}") from None


def reason(status: int) -> str:
    """The standard reason phrase of ``status`` (lower case), e.g. ``"forbidden"``."""
    try:
        return HTTPStatus(status).phrase.lower()
    except ValueError:
        return "refused"


# -- answers to exceptions, for Starlette's ExceptionMiddleware ----------------------------


async def answer_refusal(request: Request, exc: Exception) -> Response:
    """The answer to an ``HTTPException`` (ours, or Starlette's own)."""
    if isinstance(exc, HTTPError):
        return error_response(exc)
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    default = reason(status) == str(exc.detail).lower()
    return JSON({"error": reason(status) if default else exc.detail}, status, exc.headers)


class _Silence(Response):
    """No answer: the client is gone."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        return None


async def answer_disconnect(request: Request, exc: Exception) -> Response:
    """No answer to a client that went away (Starlette's ``ClientDisconnect``)."""
    return _Silence()


async def answer_crash(request: Request, exc: Exception) -> Response:
    """A bug: logged with its traceback, answered 500 ``{"error": "internal server
    error"}``."""
    scope = request.scope
    log.error("error answering %s %s", scope.get("method"), scope.get("path"), exc_info=exc)
    return JSON({"error": "internal server error"}, 500)


async def not_found(scope: Scope, receive: Receive, send: Send) -> None:
    """The answer to a path that is no route: 404 ``{"error": "not found"}``."""
    await JSON({"error": "not found"}, 404)(scope, receive, send)


class Endpoint:
    """A Starlette request endpoint as a plain ASGI app, so that its ``Route`` lets
    every method through (the endpoint answers 405 itself, with its ``Allow``)."""

    __slots__ = ("app",)

    def __init__(self, endpoint: Callable[[Request], Awaitable[Response]]) -> None:
        self.app = request_response(endpoint)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)
