"""``Task``: a registered handler and the calls that enqueue it; ``AsyncTask`` for
``async def`` handlers; ``TaskHandler`` for class-based handlers.

``Task[P, R]`` carries the handler's parameters ``P`` and its result ``R`` to type
checkers: ``.delay(*args: P.args, **kwargs: P.kwargs) -> Job[R]``. An ``async def``
handler returning ``R`` gives an ``AsyncTask[P, R]``, whose jobs hold ``R`` too.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable, Coroutine
from typing import Any, Generic, ParamSpec, Protocol, TypeVar

from ._arguments import ArgumentCheck
from ._flow import check_max_running, check_rate
from .config import Backoff, TaskQueueConfig
from .exceptions import ConfigError
from .job import Job
from .options import build_options

__all__ = ["AsyncTask", "Enqueuer", "ExceptionTypes", "Task", "TaskHandler", "build_options"]

P = ParamSpec("P")
R = TypeVar("R")

#: What ``retry_on`` / ``dont_retry_on`` take: an exception class or a tuple of them.
ExceptionTypes = type[BaseException] | tuple[type[BaseException], ...]


class Enqueuer(Protocol):
    """What a :class:`Task` needs from the queue it is registered on."""

    def _enqueue_one(
        self, name: str, args: list[Any], kwargs: dict[str, Any], options: dict[str, Any]
    ) -> Job[Any]: ...


class TaskHandler:
    """Base class for class-based handlers: subclass it and implement ``handle``
    (sync or ``async def``), then register the class (or an instance) with
    ``queue.task``. The class is instantiated once, with no arguments."""

    def handle(self, *args: Any, **kwargs: Any) -> Any:
        """Runs one job with its JSON arguments; returns a JSON-serializable value."""
        raise NotImplementedError


def _exception_types(field: str, value: Any) -> tuple[type[BaseException], ...] | None:
    if value is None:
        return None
    items = value if isinstance(value, tuple) else (value,)
    for item in items:
        if not (isinstance(item, type) and issubclass(item, BaseException)):
            raise ConfigError(f"{field} takes an exception class or a tuple of them, not {item!r}")
    return items


class Task(Generic[P, R]):
    """A function registered as a task on a ``TaskQueue``.

    Calling the task runs the function here and now; ``delay``/``enqueue`` put a job
    in the queue for a worker. Arguments are checked against the handler's signature
    at the enqueue call (``InvalidArguments``, a ``TypeError``; nothing is written).

    Attributes:
        name: the task name jobs carry.
        fn: the handler.
        is_async: whether the handler is ``async def``.
        defaults: the task's enqueue options (``max_attempts``, ``priority``, ...).
        retry_on: only these exceptions are retried (``None``: every exception).
        dont_retry_on: these exceptions fail the job at once, with no retry.
        backoff: the delays between this task's attempts (``None``: the queue's).
        rate_limit: at most this many starts of its jobs, spaced evenly, across every
            worker (``"100/s"``, ``"600/m"``, ``"10/h"``, ``"5/d"``; ``None``: no limit).
        max_running: at most this many of its jobs running at once across every worker
            (``None``: no limit).
    """

    def __init__(
        self,
        queue: Enqueuer,
        fn: Callable[P, Any],
        *,
        name: str,
        defaults: dict[str, Any],
        retry_on: ExceptionTypes | None = None,
        dont_retry_on: ExceptionTypes | None = None,
        backoff: Backoff | dict[str, Any] | None = None,
        rate_limit: str | None = None,
        max_running: int | None = None,
    ) -> None:
        self.queue = queue
        self.fn = fn
        self.name = name
        self.defaults = build_options(defaults)
        self.retry_on = _exception_types("retry_on", retry_on)
        self.dont_retry_on = _exception_types("dont_retry_on", dont_retry_on)
        self.backoff = None if backoff is None else Backoff.coerce(backoff)
        self.rate_limit = check_rate(rate_limit)
        self.max_running = check_max_running(max_running)
        if self.backoff is not None:
            from . import _native

            # The engine checks the numbers, as it does the queue's own backoff.
            _native.check_config(TaskQueueConfig(url="memory://", backoff=self.backoff).to_json())
        self.is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            getattr(fn, "__call__", None)  # noqa: B004 - async callables (instances)
        )
        self.arguments = ArgumentCheck(name, fn)
        functools.update_wrapper(self, fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        result: R = self.fn(*args, **kwargs)
        return result

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> Job[R]:
        """Enqueues a job with these arguments and the task's default options."""
        self.arguments.check(args, kwargs)
        return self.queue._enqueue_one(self.name, list(args), dict(kwargs), self.defaults)

    def enqueue(
        self,
        args: list[Any] | tuple[Any, ...] | None = None,
        kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> Job[R]:
        """Enqueues a job with explicit options: ``priority``, ``delay`` (seconds or
        timedelta), ``run_at`` (aware datetime), ``max_attempts``, ``unique_key``,
        ``timeout``, ``queue``."""
        merged = {**self.defaults, **build_options(options)}
        if "run_at_ms" in merged and "delay" in merged:
            if "delay" not in options:
                del merged["delay"]
            elif "run_at" not in options:
                del merged["run_at_ms"]
        as_list = _as_list(args)
        self.arguments.check(as_list, kwargs or {})
        return self.queue._enqueue_one(self.name, as_list, kwargs or {}, merged)

    async def adelay(self, *args: P.args, **kwargs: P.kwargs) -> Job[R]:
        """Awaitable twin of :meth:`delay` (the write runs off the event loop)."""
        self.arguments.check(args, kwargs)  # here, so that the error is raised in the caller
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            None,
            lambda: self.queue._enqueue_one(self.name, list(args), dict(kwargs), self.defaults),
        )

    async def aenqueue(
        self,
        args: list[Any] | tuple[Any, ...] | None = None,
        kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> Job[R]:
        """Awaitable twin of :meth:`enqueue`."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, lambda: self.enqueue(args, kwargs, **options))

    def __repr__(self) -> str:
        return f"<Task {self.name!r} ({'async' if self.is_async else 'sync'})>"


class AsyncTask(Task[P, R]):
    """A task whose handler is ``async def``: calling it directly returns the
    handler's coroutine; its jobs hold the awaited result ``R``."""

    def __call__(  # type: ignore[override]
        self, *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, R]:
        result: Coroutine[Any, Any, R] = self.fn(*args, **kwargs)
        return result


def _as_list(args: list[Any] | tuple[Any, ...] | None) -> list[Any]:
    if args is None:
        return []
    if not isinstance(args, (list, tuple)):
        raise ConfigError(f"args must be a list or tuple, not {type(args).__name__}")
    return list(args)
