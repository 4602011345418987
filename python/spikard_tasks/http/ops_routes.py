"""The operations routes of the HTTP app, below its prefix (``/tasks`` by default):

* ``GET {prefix}/stats`` → ``{"at", "counts", "queues": [{"queue", "counts",
  "oldest_ready_age", "succeeded_last_minute", "failed_last_minute", "paused"}],
  "limits": [{"scope", "name", "rate_limit", "max_running", "running", "next_start"}]}``
* ``GET {prefix}/jobs?status=&task=&queue=&since=&until=&limit=&cursor=`` →
  ``{"jobs": [record], "next_cursor"}``, newest first (``status`` may list several
  states, comma-separated; ``since``/``until`` are ISO-8601 or seconds since the epoch).
* ``POST {prefix}/jobs/{id}/retry`` → ``{"task_id", "retried": true}`` (409 unless the
  job failed or was cancelled); ``POST {prefix}/jobs/{id}/cancel`` → ``{"task_id",
  "cancelled": true}`` (409 once finished).
* ``POST {prefix}/jobs/retry`` / ``…/jobs/cancel`` / ``…/jobs/purge``, body the filter
  ``{"status", "task", "queue", "since", "until"}`` (plus ``older_than`` seconds for a
  purge) → ``{"retried"|"cancelled"|"purged": n}``.
* ``GET {prefix}/queues`` → ``{"queues": [{"queue", "paused", "counts"}]}``;
  ``POST {prefix}/queues/{name}/pause`` / ``…/resume`` → ``{"queue", "paused",
  "changed"}``.
* ``GET {prefix}/workers`` → ``{"workers": [{"name", "host", "pid", "queues",
  "concurrency", "started_at", "last_heartbeat", "jobs_held", "version"}]}``.

Every route calls the app's ``auth`` hook first. A ``POST`` is refused with 403 in
read-only mode, and when a browser sends it from another origin.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..exceptions import BackendError, ConfigError, SpikardTasksError
from ..queue import TaskQueue
from .calls import check_content_type
from .guard import AuthHook, authorize, refuse_cross_origin, refuse_read_only
from .ops_params import body_filter, list_query, query_pairs
from .ops_views import job_record, stats_view, worker_view
from .wire import JSON, Endpoint, HTTPError, parse_json, read_body

__all__ = ["OPS_RESERVED", "OpsRoutes", "unavailable"]

log = logging.getLogger("spikard_tasks.asgi")

#: Names under the prefix that the operations routes take (a task so named cannot be
#: posted to its own route).
OPS_RESERVED = frozenset({"stats", "queues", "workers", "dashboard"})
#: Seconds a client is told to wait (``Retry-After``) when the backend fails.
RETRY_AFTER_SECONDS = 1
#: Bulk bodies are small filters.
_MAX_FILTER_BYTES = 64 * 1024

T = TypeVar("T")


def unavailable() -> HTTPError:
    """The 503 answered when the backend fails."""
    return HTTPError(
        503,
        "the task backend is unavailable; retry later",
        headers=[("retry-after", str(RETRY_AFTER_SECONDS))],
    )


def _allow(request: Request, *allowed: str) -> str:
    method = str(request.scope.get("method", "GET")).upper()
    if method not in allowed:
        raise HTTPError(
            405, f"method {method} not allowed here", headers=[("allow", ", ".join(allowed))]
        )
    return method


class OpsRoutes:
    """The routes above for ``queue``, as Starlette ``Route`` objects under ``base``."""

    def __init__(
        self, queue: TaskQueue, *, base: str, auth: AuthHook | None, read_only: bool
    ) -> None:
        self.queue = queue
        self.base = base
        self.auth = auth
        self.read_only = read_only

    def routes(self) -> list[Route]:
        """The routes, to put before the app's catch-all task route."""
        b = self.base
        return [
            Route(b + "/stats", Endpoint(self._stats)),
            Route(b + "/jobs", Endpoint(self._list)),
            Route(b + "/jobs/retry", Endpoint(self._bulk_retry)),
            Route(b + "/jobs/cancel", Endpoint(self._bulk_cancel)),
            Route(b + "/jobs/purge", Endpoint(self._bulk_purge)),
            Route(b + "/jobs/{job_id}/retry", Endpoint(self._retry_one)),
            Route(b + "/jobs/{job_id}/cancel", Endpoint(self._cancel_one)),
            Route(b + "/queues", Endpoint(self._queues)),
            Route(b + "/queues/{name}/pause", Endpoint(self._pause)),
            Route(b + "/queues/{name}/resume", Endpoint(self._resume)),
            Route(b + "/workers", Endpoint(self._workers)),
        ]

    # -- the guard and the blocking calls ----------------------------------------------

    async def _read(self, request: Request, *allowed: str) -> None:
        """Guards a read."""
        await authorize(self.auth, request.scope)
        _allow(request, *allowed)

    async def _write(self, request: Request) -> Any:
        """Guards a ``POST`` and returns its JSON body (``None`` when empty)."""
        await authorize(self.auth, request.scope)
        _allow(request, "POST")
        refuse_read_only(self.read_only, request.scope)
        refuse_cross_origin(request.scope)
        check_content_type(request.scope)
        body = await read_body(request, _MAX_FILTER_BYTES)
        return None if not body.strip() else parse_json(body)

    async def run(self, refused: int, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` off the event loop; a ``BackendError`` is a 503, a
        ``ConfigError`` a ``refused`` status with its text."""
        call = functools.partial(self._call, refused, fn, *args, **kwargs)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not asyncio (e.g. trio): call directly
            return call()
        return await loop.run_in_executor(None, call)

    def _call(self, refused: int, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            self.queue.open()
            return fn(*args, **kwargs)
        except BackendError as exc:
            log.warning("operation failed: %s", exc)
            raise unavailable() from None
        except ConfigError as exc:
            raise HTTPError(refused, str(exc)) from None
        except SpikardTasksError as exc:
            log.error("cannot open the task backend: %s: %s", type(exc).__name__, exc)
            raise unavailable() from None

    # -- reads -------------------------------------------------------------------------

    async def _stats(self, request: Request) -> Response:
        await self._read(request, "GET", "HEAD")
        stats = await self.run(400, self.queue.stats)
        return JSON(stats_view(stats))

    async def _list(self, request: Request) -> Response:
        await self._read(request, "GET", "HEAD")
        query = list_query(query_pairs(request.scope))
        page = await self.run(400, self.queue.list_jobs, **query)
        return JSON({"jobs": [job_record(j) for j in page.jobs], "next_cursor": page.next_cursor})

    async def _queues(self, request: Request) -> Response:
        await self._read(request, "GET", "HEAD")
        stats = await self.run(400, self.queue.stats)
        rows = {
            q.queue: {"queue": q.queue, "paused": q.paused, "counts": q.counts}
            for q in stats.queues
        }
        if self.queue.name not in rows:
            empty = dict.fromkeys(stats.counts, 0)
            rows[self.queue.name] = {"queue": self.queue.name, "paused": False, "counts": empty}
        return JSON({"queues": [rows[name] for name in sorted(rows)]})

    async def _workers(self, request: Request) -> Response:
        await self._read(request, "GET", "HEAD")
        workers = await self.run(400, self.queue.workers)
        return JSON({"workers": [worker_view(w) for w in workers]})

    # -- one job -----------------------------------------------------------------------

    async def _missing_or_conflict(self, job_id: str, problem: str) -> HTTPError:
        job = await self.run(404, self.queue.get_job, job_id)
        info = None if job is None else await self.run(404, job.info)
        if info is None:
            return HTTPError(404, f"no job {job_id!r}")
        status = info.status.value
        return HTTPError(
            409, problem.format(status=status), extra={"task_id": job_id, "status": status}
        )

    async def _retry_one(self, request: Request) -> Response:
        await self._write(request)
        job_id: str = request.path_params["job_id"]
        if await self.run(404, self.queue.retry, job_id):
            return JSON({"task_id": job_id, "retried": True})
        raise await self._missing_or_conflict(
            job_id, "job is {status}; only a failed or cancelled job can be retried"
        )

    async def _cancel_one(self, request: Request) -> Response:
        await self._write(request)
        job_id: str = request.path_params["job_id"]
        if await self.run(404, self.queue.cancel, job_id):
            return JSON({"task_id": job_id, "cancelled": True})
        raise await self._missing_or_conflict(job_id, "job already finished ({status})")

    # -- bulk --------------------------------------------------------------------------

    async def _bulk(
        self, request: Request, fn: Callable[..., int], key: str, *, purge: bool = False
    ) -> Response:
        found = body_filter(await self._write(request), purge=purge)
        touched = await self.run(422, fn, **found)
        return JSON({key: touched})

    async def _bulk_retry(self, request: Request) -> Response:
        return await self._bulk(request, self.queue.retry_jobs, "retried")

    async def _bulk_cancel(self, request: Request) -> Response:
        return await self._bulk(request, self.queue.cancel_jobs, "cancelled")

    async def _bulk_purge(self, request: Request) -> Response:
        return await self._bulk(request, self.queue.purge, "purged", purge=True)

    # -- queues ------------------------------------------------------------------------

    async def _toggle(self, request: Request, fn: Callable[[str], bool], paused: bool) -> Response:
        body = await self._write(request)
        if body not in (None, {}):
            raise HTTPError(422, "this route takes no body")
        name: str = request.path_params["name"]
        changed = await self.run(422, fn, name)
        return JSON({"queue": name, "paused": paused, "changed": bool(changed)})

    async def _pause(self, request: Request) -> Response:
        return await self._toggle(request, self.queue.pause, True)

    async def _resume(self, request: Request) -> Response:
        return await self._toggle(request, self.queue.resume, False)
