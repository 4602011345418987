"""Prometheus metrics and health checks, with no dependency.

``render(queue)`` is the text exposition (format 0.0.4) of this process' metrics: the
engine's counters and histograms, kept in Rust with atomics (jobs enqueued, started,
succeeded, failed, retried and cancelled by task and queue; attempt duration and
enqueue→start latency histograms), plus the queue's depth by state (read from the store
at most every ``depth_ttl`` seconds, whatever the scrape rate) and the workers alive in
this process. ``ready(queue)`` says whether the backend answers. ``serve_metrics`` serves
``/metrics``, ``/healthz`` and ``/readyz`` on a port of its own (``spikard-tasks worker
--metrics-port``); :func:`spikard_tasks.asgi.metrics_app` serves them in an ASGI app.
"""

from __future__ import annotations

import concurrent.futures
import http.server
import json
import threading
import time
from collections.abc import Iterable
from typing import Any, Protocol

from . import _native
from .worker import running_workers

__all__ = ["MetricsServer", "Probe", "QueueProbe", "serve_metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class QueueProbe(Protocol):
    """What the probe reads of a ``TaskQueue``."""

    @property
    def name(self) -> str: ...

    @property
    def is_durable(self) -> bool: ...

    def counts(self, queue: str | None = None) -> dict[str, int]: ...


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Probe:
    """Metrics and readiness of one queue, safe to call from any thread.

    The depth gauge is cached for ``depth_ttl`` seconds; the readiness check runs at most
    one store query at a time and answers "not ready" when it takes longer than
    ``timeout`` seconds (a database that hangs does not pile up threads).
    """

    def __init__(
        self,
        queue: QueueProbe,
        *,
        queues: Iterable[str] = (),
        depth_ttl: float = 5.0,
        timeout: float = 2.0,
    ) -> None:
        self.queue = queue
        self.queues = sorted({queue.name, *queues})
        self.depth_ttl = depth_ttl
        self.timeout = timeout
        self._lock = threading.Lock()
        self._depth: tuple[float, dict[str, dict[str, int]] | None, str | None] = (
            -1e18,
            None,
            None,
        )
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="spikard-probe")
        self._check: concurrent.futures.Future[dict[str, dict[str, int]]] | None = None

    def _read_depth(self) -> dict[str, dict[str, int]]:
        return {name: self.queue.counts(name) for name in self.queues}

    def _ask(self) -> tuple[dict[str, dict[str, int]] | None, str | None]:
        """The store's counts, or why not (one query in flight at most)."""
        with self._lock:
            if self._check is None or self._check.done():
                self._check = self._pool.submit(self._read_depth)
            check = self._check
        try:
            return check.result(self.timeout), None
        except concurrent.futures.TimeoutError:
            return None, f"the backend did not answer within {self.timeout:g}s"
        except Exception as exc:
            return None, f"{type(exc).__name__}: {exc}"

    def depth(self) -> tuple[dict[str, dict[str, int]] | None, str | None]:
        """Counts per queue and state (cached), or ``None`` and the error."""
        now = time.monotonic()
        at, counts, error = self._depth
        if now - at < self.depth_ttl:
            return counts, error
        counts, error = self._ask()
        self._depth = (now, counts, error)
        return counts, error

    def ready(self) -> tuple[bool, str]:
        """Whether the backend answers now (not cached), and a word on it."""
        counts, error = self._ask()
        if counts is None:
            return False, error or "not ready"
        self._depth = (time.monotonic(), counts, None)
        return True, "the backend answers"

    def render(self) -> str:
        """The exposition text of every metric."""
        lines = [_native.metrics_text().rstrip("\n")] if self.queue.is_durable else []
        counts, _error = self.depth()
        lines += [
            "# HELP spikard_tasks_backend_up Whether the queue's backend answered the last read.",
            "# TYPE spikard_tasks_backend_up gauge",
            f"spikard_tasks_backend_up {0 if counts is None else 1}",
        ]
        if counts is not None:
            lines += [
                "# HELP spikard_tasks_queue_jobs Jobs in the store by queue and state.",
                "# TYPE spikard_tasks_queue_jobs gauge",
            ]
            for name, states in sorted(counts.items()):
                for state, n in sorted(states.items()):
                    lines.append(
                        f'spikard_tasks_queue_jobs{{queue="{_label(name)}",'
                        f'state="{_label(state)}"}} {n}'
                    )
        alive = len(running_workers(self.queue))  # type: ignore[arg-type]
        lines += [
            "# HELP spikard_tasks_workers_alive Workers of this queue running in this process.",
            "# TYPE spikard_tasks_workers_alive gauge",
            f"spikard_tasks_workers_alive {alive}",
        ]
        return "\n".join(line for line in lines if line) + "\n"

    def close(self) -> None:
        """Stops the probe's query thread."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def answer(probe: Probe, path: str) -> tuple[int, str, bytes]:
    """``(status, content type, body)`` for ``/metrics``, ``/healthz``, ``/readyz``."""
    if path == "/metrics":
        return 200, CONTENT_TYPE, probe.render().encode()
    if path == "/healthz":
        return 200, "application/json", b'{"status": "ok"}'
    if path == "/readyz":
        ok, detail = probe.ready()
        body = json.dumps({"status": "ready" if ok else "unavailable", "detail": detail})
        return (200 if ok else 503), "application/json", body.encode()
    return 404, "application/json", b'{"error": "not found"}'


class MetricsServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` on a port of their own, served by a
    daemon thread; :meth:`close` stops it."""

    def __init__(self, probe: Probe, host: str, port: int) -> None:
        self.probe = probe

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, kind, body = answer(probe, self.path.split("?", 1)[0])
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return None  # scrapes every few seconds are not worth a log line

        self._server = http.server.ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.host, self.port = self._server.server_address[:2]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="spikard-metrics", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stops serving and frees the port."""
        self._server.shutdown()
        self._server.server_close()
        self.probe.close()


def serve_metrics(
    queue: QueueProbe, port: int, host: str = "127.0.0.1", *, queues: Iterable[str] = ()
) -> MetricsServer:
    """Serves ``/metrics``, ``/healthz`` (always 200 while the process runs) and
    ``/readyz`` (200 while the backend answers, 503 otherwise) for ``queue`` on
    ``host:port`` (port 0: a free one, see ``.port``), in the background."""
    return MetricsServer(Probe(queue, queues=queues), host, port)
