"""``TaskRegistry``: what a ``TaskQueue`` knows of this process' code — its tasks, the
middleware wrapping every job, and the hooks run when a worker starts and stops."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, ParamSpec, Protocol, TypeVar, cast, overload

from ._flow import check_max_running, check_rate
from ._hooks import Hook
from ._normalize import handler_callable
from ._text import check_text
from .config import Backoff
from .exceptions import ConfigError
from .job import Job
from .task import AsyncTask, ExceptionTypes, Task, TaskHandler

__all__ = ["Hook", "Middleware", "TaskDecorator", "TaskRegistry"]

P = ParamSpec("P")
R = TypeVar("R")
M = TypeVar("M", bound=Callable[..., Any])
H = TypeVar("H", bound=Callable[[], Any])

#: A middleware: a generator function (or async generator function) taking the
#: ``JobContext`` and yielding once, around the handler (see ``TaskRegistry.middleware``).
Middleware = Callable[..., Any]


class TaskDecorator(Protocol):
    """What ``@queue.task(...)`` returns: it registers the function it decorates."""

    @overload
    def __call__(self, fn: type[TaskHandler], /) -> Task[..., Any]: ...

    @overload
    def __call__(self, fn: TaskHandler, /) -> Task[..., Any]: ...

    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> AsyncTask[P, R]: ...

    @overload
    def __call__(self, fn: Callable[P, R], /) -> Task[P, R]: ...


class TaskRegistry:
    """Tasks, middleware and worker hooks of one queue (the base of ``TaskQueue``)."""

    def __init__(self) -> None:
        self._tasks: dict[str, Task[Any, Any]] = {}
        self._middleware: list[Middleware] = []
        self._on_start: list[Hook] = []
        self._on_stop: list[Hook] = []

    def _enqueue_one(
        self, name: str, args: list[Any], kwargs: dict[str, Any], options: dict[str, Any]
    ) -> Job[Any]:
        raise NotImplementedError

    @property
    def tasks(self) -> Mapping[str, Task[Any, Any]]:
        """Registered tasks by name."""
        return dict(self._tasks)

    @property
    def middleware_chain(self) -> tuple[Middleware, ...]:
        """The registered middleware, outermost first."""
        return tuple(self._middleware)

    @property
    def worker_hooks(self) -> tuple[tuple[Hook, ...], tuple[Hook, ...]]:
        """``(on_worker_start hooks, on_worker_stop hooks)`` in registration order."""
        return tuple(self._on_start), tuple(self._on_stop)

    # -- tasks -------------------------------------------------------------------------

    @overload
    def task(self, fn: type[TaskHandler], /) -> Task[..., Any]: ...

    @overload
    def task(self, fn: TaskHandler, /) -> Task[..., Any]: ...

    @overload
    def task(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> AsyncTask[P, R]: ...

    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def task(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        max_attempts: int | None = None,
        priority: int | None = None,
        timeout: float | None = None,
        queue: str | None = None,
        retry_on: ExceptionTypes | None = None,
        dont_retry_on: ExceptionTypes | None = None,
        backoff: Backoff | dict[str, Any] | None = None,
        rate_limit: str | None = None,
        max_running: int | None = None,
    ) -> TaskDecorator: ...

    def task(
        self,
        fn: Any = None,
        /,
        *,
        name: str | None = None,
        max_attempts: int | None = None,
        priority: int | None = None,
        timeout: float | None = None,
        queue: str | None = None,
        retry_on: ExceptionTypes | None = None,
        dont_retry_on: ExceptionTypes | None = None,
        backoff: Backoff | dict[str, Any] | None = None,
        rate_limit: str | None = None,
        max_running: int | None = None,
    ) -> Any:
        """Registers a function (sync or ``async def``), a ``TaskHandler`` subclass or
        instance as a task. Usable bare (``@queue.task``) or with options; every option
        is optional:

        - ``name``: defaults to ``module.qualname``;
        - ``max_attempts``, ``priority``, ``timeout``, ``queue``: defaults of its jobs;
        - ``retry_on``: only these exception classes are retried, any other fails the
          job at once; ``dont_retry_on``: these fail the job at once (it wins over
          ``retry_on``). ``Retry``/``Cancel`` and timeouts are not affected;
        - ``backoff``: a ``Backoff`` (or dict) for this task's retries instead of the
          queue's;
        - ``rate_limit``: at most this many starts, spaced evenly, across every worker on
          every host (``"100/s"``, ``"600/m"``, ``"10/h"``, ``"5/d"``);
        - ``max_running``: at most this many of its jobs ``running`` at once across every
          worker. Both are stored by each worker that registers the task when it starts
          (a worker without them removes them); jobs held back stay ``pending``.
        """
        rate = check_rate(rate_limit)
        cap = check_max_running(max_running)
        defaults = {
            "max_attempts": max_attempts,
            "priority": priority,
            "timeout": timeout,
            "queue": queue,
        }
        defaults = {k: v for k, v in defaults.items() if v is not None}

        def register(target: Any) -> Task[Any, Any]:
            func, default_name = handler_callable(target)
            task_name = name or default_name
            if not task_name:
                raise ConfigError("task name must not be empty")
            check_text("task name", task_name)
            existing = self._tasks.get(task_name)
            if existing is not None and existing.fn is not func:
                raise ConfigError(f"a different handler is already registered as {task_name!r}")
            cls: type[Task[Any, Any]] = Task
            if inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
                getattr(func, "__call__", None)  # noqa: B004 - async callables (instances)
            ):
                cls = AsyncTask
            task = cls(
                self,
                func,
                name=task_name,
                defaults=defaults,
                retry_on=retry_on,
                dont_retry_on=dont_retry_on,
                backoff=backoff,
                rate_limit=rate,
                max_running=cap,
            )
            self._tasks[task_name] = task
            return task

        if fn is not None:
            return register(fn)
        return cast(TaskDecorator, register)

    # -- middleware and hooks ----------------------------------------------------------

    def middleware(self, fn: M) -> M:
        """Registers a middleware: a generator function that takes the job's
        ``JobContext``, yields once, and so wraps every attempt of every task, like
        ``contextlib.contextmanager``::

            @queue.middleware
            def timed(job):
                started = time.monotonic()
                try:
                    yield                      # the handler runs here
                finally:
                    log.info("%s took %.3fs", job.task, time.monotonic() - started)

        An exception of the handler is raised at the ``yield``: re-raise it (or raise
        another) to fail the attempt; a middleware that swallows it turns the attempt
        into a success with the result ``None``. An ``async def`` generator works too
        (on a sync handler, its steps run on the worker's event loop). The first
        registered is the outermost. Applies to workers started afterwards.
        """
        if not (inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn)):
            raise ConfigError(
                f"a middleware is a generator function that yields once (like "
                f"contextlib.contextmanager), not {fn!r}"
            )
        self._middleware.append(fn)
        return fn

    def on_worker_start(self, fn: H) -> H:
        """Registers a hook run when a worker of this queue starts, before it takes a
        job (sync, or ``async def``: run on the worker's event loop, where ``async``
        handlers run, so clients made there serve them). A hook that raises stops the
        worker from starting. The place to open one HTTP client or pool per worker."""
        self._on_start.append(_check_hook("on_worker_start", fn))
        return fn

    def on_worker_stop(self, fn: H) -> H:
        """Registers a hook run when a worker of this queue has drained and stops (sync
        or ``async def``, like :meth:`on_worker_start`); errors are logged, and the other
        hooks still run."""
        self._on_stop.append(_check_hook("on_worker_stop", fn))
        return fn


def _check_hook(kind: str, fn: Any) -> Hook:
    if not callable(fn):
        raise ConfigError(f"{kind} takes a function, not {type(fn).__name__}")
    try:
        inspect.signature(fn).bind()
    except TypeError:
        raise ConfigError(f"{kind} hooks take no arguments: {fn!r}") from None
    except ValueError:
        pass
    hook: Hook = fn
    return hook
