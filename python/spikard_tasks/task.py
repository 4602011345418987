"""``Task``: a registered handler and the calls that enqueue it; ``TaskHandler`` for
class-based handlers."""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable
from typing import Any, Generic, ParamSpec, Protocol, TypeVar

from .exceptions import ConfigError
from .job import Job
from .options import build_options

__all__ = ["Enqueuer", "Task", "TaskHandler", "build_options"]

P = ParamSpec("P")
R = TypeVar("R")


class Enqueuer(Protocol):
    """What a :class:`Task` needs from the queue it is registered on."""

    def _enqueue_one(
        self, name: str, args: list[Any], kwargs: dict[str, Any], options: dict[str, Any]
    ) -> Job: ...


class TaskHandler:
    """Base class for class-based handlers: subclass it and implement ``handle``
    (sync or ``async def``), then register the class (or an instance) with
    ``queue.task``. The class is instantiated once, with no arguments."""

    def handle(self, *args: Any, **kwargs: Any) -> Any:
        """Runs one job with its JSON arguments; returns a JSON-serializable value."""
        raise NotImplementedError


class Task(Generic[P, R]):
    """A function registered as a task on a ``TaskQueue``.

    Calling the task runs the function here and now; ``delay``/``enqueue`` put a job
    in the queue for a worker.
    """

    def __init__(
        self,
        queue: Enqueuer,
        fn: Callable[P, R],
        *,
        name: str,
        defaults: dict[str, Any],
    ) -> None:
        self.queue = queue
        self.fn = fn
        self.name = name
        self.defaults = build_options(defaults)
        self.is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            getattr(fn, "__call__", None)  # noqa: B004 - async callables (instances)
        )
        functools.update_wrapper(self, fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Enqueues a job with these arguments and the task's default options."""
        return self.queue._enqueue_one(self.name, list(args), dict(kwargs), self.defaults)

    def enqueue(
        self,
        args: list[Any] | tuple[Any, ...] | None = None,
        kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> Job:
        """Enqueues a job with explicit options: ``priority``, ``delay`` (seconds or
        timedelta), ``run_at`` (aware datetime), ``max_attempts``, ``unique_key``,
        ``timeout``, ``queue``."""
        merged = {**self.defaults, **build_options(options)}
        if "run_at_ms" in merged and "delay" in merged:
            if "delay" not in options:
                del merged["delay"]
            elif "run_at" not in options:
                del merged["run_at_ms"]
        return self.queue._enqueue_one(self.name, _as_list(args), kwargs or {}, merged)

    async def adelay(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Awaitable twin of :meth:`delay` (the write runs off the event loop)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, lambda: self.delay(*args, **kwargs))

    async def aenqueue(
        self,
        args: list[Any] | tuple[Any, ...] | None = None,
        kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> Job:
        """Awaitable twin of :meth:`enqueue`."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, lambda: self.enqueue(args, kwargs, **options))

    def __repr__(self) -> str:
        return f"<Task {self.name!r} ({'async' if self.is_async else 'sync'})>"


def _as_list(args: list[Any] | tuple[Any, ...] | None) -> list[Any]:
    if args is None:
        return []
    if not isinstance(args, (list, tuple)):
        raise ConfigError(f"args must be a list or tuple, not {type(args).__name__}")
    return list(args)
