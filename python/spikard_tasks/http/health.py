"""``/metrics``, ``/healthz`` and ``/readyz`` as a plain ASGI 3 app (no framework needed),
to mount in any ASGI app or to serve next to the enqueue routes (``spikard-tasks serve``
does)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from ..metrics import Probe, QueueProbe, answer

__all__ = ["HEALTH_PATHS", "MetricsApp", "metrics_app", "with_health"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The paths :class:`MetricsApp` answers.
HEALTH_PATHS = frozenset({"/metrics", "/healthz", "/readyz"})


class MetricsApp:
    """The ASGI app of :func:`metrics_app`."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    self.probe.close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        path = str(scope.get("path", ""))
        root = str(scope.get("root_path", ""))
        if root and path.startswith(root):
            path = path[len(root) :]
        if scope.get("method", "GET") not in ("GET", "HEAD"):
            status, kind, body = 405, "application/json", b'{"error": "method not allowed"}'
        else:
            # The store query of /readyz and /metrics runs off the event loop.
            status, kind, body = await asyncio.to_thread(answer, self.probe, path or "/")
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", kind.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send(
            {"type": "http.response.body", "body": b"" if scope.get("method") == "HEAD" else body}
        )


def metrics_app(queue: QueueProbe, *, queues: Iterable[str] = ()) -> MetricsApp:
    """An ASGI app answering ``GET /metrics`` (Prometheus text: the engine's counters and
    histograms, the depth of ``queue`` and of ``queues`` by state, workers alive),
    ``/healthz`` (200 while the process serves) and ``/readyz`` (200 while the backend
    answers, else 503), relative to where it is mounted."""
    return MetricsApp(Probe(queue, queues=queues))


def with_health(app: ASGIApp, health: MetricsApp) -> ASGIApp:
    """``app`` with :data:`HEALTH_PATHS` answered by ``health`` at the root."""

    async def combined(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path") in HEALTH_PATHS:
            await health(scope, receive, send)
        else:
            await app(scope, receive, send)

    return combined
