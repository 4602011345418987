"""HTTP enqueue: an ASGI 3 app whose endpoints enqueue durable jobs and answer 202.

``create_app(queue)`` returns an ASGI application built on Starlette (routing, requests,
responses and errors; the ``http`` extra) that can be served alone (``spikard-tasks
serve myapp.tasks:queue``) or mounted in Starlette, FastAPI or Litestar. Routes, below
``prefix`` (default ``/tasks``):

* ``POST {prefix}/{task}``, body ``{"args": [...], "kwargs": {...}, "options": {...}}``
  (every field optional) → ``202 {"task_id", "status": "queued"}`` and a ``Location``
  header pointing at the job view. Options: ``priority``, ``delay`` (seconds),
  ``run_at`` (ISO-8601 with a timezone), ``max_attempts``, ``unique_key``, ``timeout``.
* ``POST {prefix}/batch``, body ``{"tasks": [{"task", "args", "kwargs", "options"}]}``
  → ``202 {"queued": n, "status": "all_queued", "task_ids": [...]}``, all or nothing.
* ``GET {prefix}/jobs/{id}`` → ``200 {"task_id", "task", "status", "attempts",
  "result", "error", "progress"}``; ``DELETE {prefix}/jobs/{id}`` → ``200 {"task_id",
  "cancelled": true}`` (``409`` once the job finished).
  ``GET {prefix}/jobs/{id}?view=full`` answers the job's full record instead (as the
  job list shows it: arguments, every attempt's error and traceback, times).
* ``GET {prefix}/openapi.json`` → the OpenAPI 3.1 document of these routes (argument
  schemas from the handlers' annotations, by pydantic).
* The operations routes (stats, job list, retry, bulk cancel and purge, pause,
  workers), documented in :mod:`.ops_routes`, and with ``dashboard=True`` the web
  dashboard at ``{prefix}/dashboard/`` (:mod:`.dashboard`).

The names ``batch``, ``jobs``, ``openapi.json``, ``stats``, ``queues``, ``workers`` and
``dashboard`` are reserved under the prefix: a task with one of them cannot be posted to
its own route (it can still be sent in a batch). With ``read_only=True`` every request
that would change something (enqueue, cancel, retry, purge, pause) is refused with 403.

A 202 is sent once the job is stored. Single-job requests that arrive while a write is
in flight are stored together in the next transaction (group commit); a request with
bad input is then retried alone, so it never refuses another's job.

Refusals are JSON ``{"error": reason}``: 404 unknown task or job, 405 wrong method,
413 body over ``max_body_bytes``, 415 a ``Content-Type`` other than JSON, 422 invalid
JSON, wrong shape or arguments that do not fit the handler, 401/403 from the auth
hook, 503 (with ``Retry-After``) when the backend fails. A refused request enqueues
nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, TypeVar

from starlette.exceptions import HTTPException
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route, Router

from ..exceptions import BackendError, ConfigError, SpikardTasksError, UnknownTask
from ..job import JobInfo
from ..queue import TaskQueue
from ..task import Task
from .calls import OPTIONS, Call, check_content_type, parse_call
from .dashboard import DashboardApp, dashboard_part
from .group_commit import GroupCommit
from .guard import AuthHook, AuthResult, authorize, refuse_read_only
from .openapi import RESERVED, build_openapi
from .ops_routes import OpsRoutes, unavailable
from .ops_views import job_view, view_of
from .wire import (
    JSON,
    Endpoint,
    HTTPError,
    Receive,
    Scope,
    Send,
    answer_crash,
    answer_disconnect,
    answer_refusal,
    error_response,
    mount_path,
    not_found,
    parse_json,
    read_body,
    route_path,
)

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "OPTIONS",
    "RESERVED",
    "AuthHook",
    "AuthResult",
    "TasksApp",
    "create_app",
    "job_view",
]

log = logging.getLogger("spikard_tasks.asgi")

#: Default request-body limit: 1 MiB.
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
#: Scope key holding the request path as sent when the app dropped a trailing slash.
_SENT_PATH = "spikard_tasks.path"

#: What Starlette reads as a path parameter in a route (other braces are literal).
_PATH_PARAMETER = re.compile(r"{[a-zA-Z_][a-zA-Z0-9_]*(:[a-zA-Z_][a-zA-Z0-9_]*)?}")

T = TypeVar("T")

#: Heads of task-route paths that are other routes (jobs, queues, the dashboard).
_ROUTED_HEADS = ("jobs/", "queues/", "dashboard/")


def _allow(request: Request, *allowed: str) -> None:
    method = str(request.scope.get("method", "GET")).upper()
    if method not in allowed:
        raise HTTPError(
            405, f"method {method} not allowed here", headers=[("allow", ", ".join(allowed))]
        )


class TasksApp:
    """The ASGI 3 application built by :func:`create_app` (see the module docstring)."""

    def __init__(
        self,
        queue: TaskQueue,
        *,
        tasks: Iterable[str | Task[Any, Any]] | None = None,
        prefix: str = "/tasks",
        auth: AuthHook | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        read_only: bool = False,
        dashboard: bool = False,
    ) -> None:
        if not isinstance(queue, TaskQueue):
            raise ConfigError(f"create_app() needs a TaskQueue, not {type(queue).__name__}")
        if not isinstance(prefix, str) or (prefix and not prefix.startswith("/")):
            raise ConfigError(f"prefix must be '' or start with '/', got {prefix!r}")
        if _PATH_PARAMETER.search(prefix):
            raise ConfigError(f"prefix must not contain a path parameter {{name}}, got {prefix!r}")
        if isinstance(max_body_bytes, bool) or not isinstance(max_body_bytes, int):
            raise ConfigError("max_body_bytes must be an integer")
        if max_body_bytes < 1:
            raise ConfigError("max_body_bytes must be at least 1")
        if auth is not None and not callable(auth):
            raise ConfigError("auth must be a callable taking the ASGI scope")
        self.queue = queue
        self.prefix = prefix.rstrip("/")
        self.auth = auth
        self.max_body_bytes = max_body_bytes
        self.read_only = bool(read_only)
        self._group_commit = GroupCommit(self._enqueue, self._run)
        self._allowed: dict[str, Task[Any, Any] | None] | None = None
        if tasks is not None:
            self._allowed = {}
            for item in tasks:
                if isinstance(item, Task):
                    if item.queue is not queue:
                        raise ConfigError(f"task {item.name!r} is registered on another queue")
                    self._allowed[item.name] = item
                elif isinstance(item, str) and item:
                    self._allowed[item] = None
                else:
                    raise ConfigError(f"tasks must be names or Task objects, not {item!r}")
        base = self.prefix
        self._task_head = base + "/"
        self.ops = OpsRoutes(queue, base=base, auth=auth, read_only=self.read_only)
        self.dashboard: DashboardApp | None = None
        if dashboard:
            self.dashboard = DashboardApp(auth=auth, read_only=self.read_only, api="../")
        self._router = Router(
            routes=[
                # endpoints as ASGI apps: every method reaches them (they answer 405)
                Route(base + "/openapi.json", Endpoint(self._openapi_route)),
                Route(base + "/batch", Endpoint(self._batch_route)),
                *self.ops.routes(),
                Route(base + "/jobs/{job_id}", Endpoint(self._job_route)),
                Route(base + "/{task:path}", Endpoint(self._task_route)),
            ],
            redirect_slashes=False,
            default=not_found,
            lifespan=self._lifespan,
        )
        self._asgi = ExceptionMiddleware(
            self._router,
            handlers={
                HTTPException: answer_refusal,
                ClientDisconnect: answer_disconnect,
                Exception: answer_crash,
            },
        )

    # -- tasks -------------------------------------------------------------------------

    def enqueueable(self) -> dict[str, Task[Any, Any] | None]:
        """The tasks this app accepts: name → ``Task`` (``None`` for an allowed name
        that is not registered in this process; its arguments are not checked)."""
        registered = self.queue.tasks
        if self._allowed is None:
            return dict(registered)
        return {name: task or registered.get(name) for name, task in self._allowed.items()}

    def _lookup(self, name: str) -> tuple[bool, Task[Any, Any] | None]:
        registered = self.queue.tasks
        if self._allowed is None:
            task = registered.get(name)
            return task is not None, task
        if name not in self._allowed:
            return False, None
        return True, self._allowed[name] or registered.get(name)

    def openapi(self, root_path: str = "") -> dict[str, Any]:
        """The OpenAPI 3.1 document of this app (``root_path`` becomes its server URL)."""
        from .._native import __version__

        return build_openapi(
            self.enqueueable(),
            prefix=self.prefix,
            root_path=root_path,
            version=__version__,
            read_only=self.read_only,
        )

    # -- ASGI --------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI 3 entry point (``http`` and ``lifespan`` scopes)."""
        kind = scope["type"]
        if kind == "http":
            part = None if self.dashboard is None else dashboard_part(scope, self.prefix)
            if part is not None:
                assert self.dashboard is not None
                await self.dashboard.serve(scope, receive, send, part)
                return
            path = scope.get("path") or "/"
            if len(path) > 1 and path.endswith("/"):  # Litestar mounts add one
                scope = {**scope, "path": path[:-1], _SENT_PATH: path}
            name = self._posted_task(scope)
            if name is None:
                await self._asgi(scope, receive, send)
            else:
                await self._post_fast(scope, receive, send, name)
        elif kind == "lifespan":
            await self._asgi(scope, receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1003})
        else:
            raise RuntimeError(f"spikard_tasks.asgi does not handle {kind!r} scopes")

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Any) -> AsyncIterator[None]:
        try:
            await self._run(self._open)
        except HTTPError:
            log.error("task backend unavailable at startup; answering 503 until it is")
        yield

    async def _authorize(self, scope: Scope) -> None:
        if _SENT_PATH in scope:
            scope = {**scope, "path": scope[_SENT_PATH]}
        await authorize(self.auth, scope)

    async def _read_json(self, request: Request, empty: Any) -> Any:
        check_content_type(request.scope)
        body = await read_body(request, self.max_body_bytes)
        return empty if not body.strip() else parse_json(body)

    # -- routes ------------------------------------------------------------------------

    async def _task_route(self, request: Request) -> Response:
        return await self._accept(request, request.path_params["task"])

    async def _accept(self, request: Request, name: str) -> Response:
        """``POST {prefix}/{name}``: the 202 path."""
        scope = request.scope
        await self._authorize(scope)
        if name == "jobs" or name.startswith("jobs/"):
            raise HTTPError(404, f"not found; job routes are {self.prefix}/jobs/{{id}}")
        _allow(request, "POST")
        refuse_read_only(self.read_only, scope)
        if not name or not self._lookup(name)[0]:
            raise HTTPError(404, f"unknown task {name!r}")
        call = parse_call(await self._read_json(request, {}), "body", self._lookup, name)
        job_id = await self._group_commit.submit(call)
        location = f"{mount_path(scope)}{self.prefix}/jobs/" + urllib.parse.quote(job_id, safe="")
        return JSON({"task_id": job_id, "status": "queued"}, 202, {"location": location})

    def _posted_task(self, scope: Scope) -> str | None:
        """The task of a ``POST {prefix}/{task}`` that the router would send to
        :meth:`_task_route`, or ``None`` (another route, or not a ``POST``)."""
        if scope.get("method") != "POST":
            return None
        path = route_path(scope)
        if not path.startswith(self._task_head):
            return None
        name = path[len(self._task_head) :]
        if name in RESERVED or name.startswith(_ROUTED_HEADS) or "\n" in name:
            return None
        return name

    async def _post_fast(self, scope: Scope, receive: Receive, send: Send, name: str) -> None:
        """The 202 path without the router and the exception middleware (the same
        endpoint, the same answers): a Starlette ``Request`` in, a ``Response`` out."""
        request = Request(scope, receive, send)
        try:
            response = await self._accept(request, name)
        except HTTPError as exc:
            response = error_response(exc)
        except ClientDisconnect:
            return
        except Exception as exc:
            response = await answer_crash(request, exc)
        await response(scope, receive, send)

    async def _batch_route(self, request: Request) -> Response:
        await self._authorize(request.scope)
        _allow(request, "POST")
        refuse_read_only(self.read_only, request.scope)
        body = await self._read_json(request, None)
        if not isinstance(body, dict) or set(body) != {"tasks"}:
            raise HTTPError(422, 'body must be {"tasks": [{"task", "args", "kwargs", "options"}]}')
        items = body["tasks"]
        if not isinstance(items, list) or not items:
            raise HTTPError(422, "tasks must be a non-empty array")
        calls = [parse_call(item, f"tasks[{i}]", self._lookup) for i, item in enumerate(items)]
        ids = await self._run(self._enqueue, calls)
        return JSON({"queued": len(ids), "status": "all_queued", "task_ids": ids}, 202)

    async def _job_route(self, request: Request) -> Response:
        await self._authorize(request.scope)
        _allow(request, "GET", "HEAD", "DELETE")
        job_id: str = request.path_params["job_id"]
        if request.scope.get("method", "GET").upper() != "DELETE":
            view = view_of(request)
            info = await self._run(self._job_info, job_id)
            if info is None:
                raise HTTPError(404, f"no job {job_id!r}")
            return JSON(view(info))
        refuse_read_only(self.read_only, request.scope)
        cancelled, info = await self._run(self._cancel, job_id)
        if cancelled:
            return JSON({"task_id": job_id, "cancelled": True})
        if info is None:
            raise HTTPError(404, f"no job {job_id!r}")
        raise HTTPError(
            409,
            f"job already finished ({info.status.value})",
            extra={"task_id": job_id, "status": info.status.value},
        )

    async def _openapi_route(self, request: Request) -> Response:
        await self._authorize(request.scope)
        _allow(request, "GET", "HEAD")
        return JSON(self.openapi(mount_path(request.scope)))

    # -- blocking work, run off the event loop -----------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not asyncio (e.g. trio): call directly
            return fn(*args)
        return await loop.run_in_executor(None, functools.partial(fn, *args))

    def _open(self) -> None:
        try:
            self.queue.open()
        except SpikardTasksError as exc:
            log.error("cannot open the task backend: %s: %s", type(exc).__name__, exc)
            raise unavailable() from None

    def _enqueue(self, calls: list[Call]) -> list[str]:
        self._open()
        try:
            if len(calls) == 1:
                c = calls[0]
                job = self.queue.enqueue(
                    c.task or c.name, c.args, c.kwargs, strict=False, **c.options
                )
                return [job.id]
            specs = [
                {"task": c.task or c.name, "args": c.args, "kwargs": c.kwargs, **c.options}
                for c in calls
            ]
            return [job.id for job in self.queue.enqueue_many(specs, strict=False)]
        except BackendError as exc:
            log.warning("enqueue failed: %s", exc)
            raise unavailable() from None
        except UnknownTask as exc:
            raise HTTPError(404, str(exc)) from None
        except (ValueError, TypeError, OverflowError) as exc:  # ConfigError, SerializationError
            raise HTTPError(422, str(exc)) from None

    def _job_info(self, job_id: str) -> JobInfo | None:
        self._open()
        try:
            job = self.queue.get_job(job_id)
            return None if job is None else job.info()
        except BackendError:
            raise unavailable() from None
        except (LookupError, ValueError):
            return None

    def _cancel(self, job_id: str) -> tuple[bool, JobInfo | None]:
        self._open()
        try:
            if self.queue.cancel(job_id):
                return True, None
            job = self.queue.get_job(job_id)
            return False, None if job is None else job.info()
        except BackendError:
            raise unavailable() from None
        except (LookupError, ValueError):
            return False, None

    def __repr__(self) -> str:
        return f"<TasksApp prefix={self.prefix!r} queue={self.queue!r}>"


def create_app(
    queue: TaskQueue,
    tasks: Iterable[str | Task[Any, Any]] | None = None,
    prefix: str = "/tasks",
    auth: AuthHook | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    *,
    read_only: bool = False,
    dashboard: bool = False,
) -> TasksApp:
    """An ASGI 3 app that enqueues jobs of ``queue`` over HTTP (routes in the module
    docstring). Needs the ``http`` extra: ``pip install 'spikard-tasks[http]'``.

    Args:
        queue: the queue jobs go to.
        tasks: the allow-list (names or ``Task`` objects); ``None`` allows every task
            registered on ``queue`` (looked up per request). An allowed name that is
            not registered in this process is enqueued without argument checks (a
            producer that does not import the handlers).
        prefix: the path below which the routes live (``""`` for none).
        auth: an optional hook ``auth(scope)`` (sync or ``async``) called before every
            request: ``True`` allows it, ``False`` answers 401, a 4xx status answers
            that status, raising ``PermissionError`` answers 403.
        max_body_bytes: request bodies above this size are refused with 413.
        read_only: refuse (403) every request that would change something: enqueue,
            cancel, retry, purge, pause and resume (reads still answer).
        dashboard: serve the web dashboard at ``{prefix}/dashboard/`` (its actions
            hidden when ``read_only``).
    """
    return TasksApp(
        queue,
        tasks=tasks,
        prefix=prefix,
        auth=auth,
        max_body_bytes=max_body_bytes,
        read_only=read_only,
        dashboard=dashboard,
    )
