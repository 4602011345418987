"""Small ASGI HTTP helpers for :mod:`spikard_tasks.asgi`: reading a size-limited body,
parsing strict JSON and sending JSON responses. No framework dependency."""

from __future__ import annotations

import json
import math
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from http import HTTPStatus
from typing import Any

__all__ = [
    "ClientDisconnected",
    "HTTPError",
    "Message",
    "Receive",
    "Responder",
    "Scope",
    "Send",
    "header",
    "mount_path",
    "parse_json",
    "read_body",
    "reason",
    "route_path",
]

#: The ASGI connection scope.
Scope = MutableMapping[str, Any]
#: One ASGI event.
Message = MutableMapping[str, Any]
#: The ASGI ``receive`` callable.
Receive = Callable[[], Awaitable[Message]]
#: The ASGI ``send`` callable.
Send = Callable[[Message], Awaitable[None]]


class HTTPError(Exception):
    """A refusal: answered as ``status`` with ``{"error": message, **extra}``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        headers: Iterable[tuple[str, str]] = (),
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = list(headers)
        self.extra = extra or {}

    def payload(self) -> dict[str, Any]:
        """The JSON body of the response."""
        return {"error": self.message, **self.extra}


class ClientDisconnected(Exception):
    """The client went away before its request body was read."""


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


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """Reads the request body, refusing with 413 past ``limit`` bytes: at once when
    ``Content-Length`` says so, otherwise as soon as the streamed bytes exceed it."""
    too_large = HTTPError(413, f"request body is larger than {limit} bytes")
    declared = header(scope, b"content-length")
    if declared is not None:
        text = declared.strip()
        if not text.isdigit():
            raise HTTPError(400, "invalid Content-Length header")
        if int(text) > limit:
            raise too_large
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        kind = message.get("type")
        if kind == "http.disconnect":
            raise ClientDisconnected
        if kind != "http.request":
            continue
        chunk = message.get("body") or b""
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
        if not message.get("more_body", False):
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


def _encode(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()


class Responder:
    """Sends one JSON response (headers without a body for ``HEAD``)."""

    def __init__(self, send: Send, *, head: bool = False) -> None:
        self._send = send
        self._head = head
        self.started = False

    async def json(
        self, status: int, payload: Any, headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        """Sends ``payload`` as ``application/json`` with ``status``."""
        body = _encode(payload)
        raw = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers),
        ]
        self.started = True
        await self._send({"type": "http.response.start", "status": status, "headers": raw})
        await self._send({"type": "http.response.body", "body": b"" if self._head else body})

    async def error(self, exc: HTTPError) -> None:
        """Sends a refusal."""
        await self.json(exc.status, exc.payload(), exc.headers)


def reason(status: int) -> str:
    """The standard reason phrase of ``status`` (lower case), e.g. ``"forbidden"``."""
    try:
        return HTTPStatus(status).phrase.lower()
    except ValueError:
        return "refused"
