"""``Task``: a registered handler and the calls that enqueue it; ``TaskHandler`` for
class-based handlers."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from ._limits import MAX_ATTEMPTS, MAX_INSTANT_MS, check_seconds
from ._text import check_text
from .exceptions import ConfigError

if TYPE_CHECKING:
    from .job import Job
    from .queue import TaskQueue

__all__ = ["Task", "TaskHandler", "build_options"]

P = ParamSpec("P")
R = TypeVar("R")

#: Option names accepted by every enqueue call.
OPTION_NAMES = frozenset(
    {"priority", "delay", "run_at", "max_attempts", "unique_key", "timeout", "queue"}
)


class TaskHandler:
    """Base class for class-based handlers: subclass it and implement ``handle``
    (sync or ``async def``), then register the class (or an instance) with
    ``queue.task``. The class is instantiated once, with no arguments."""

    def handle(self, *args: Any, **kwargs: Any) -> Any:
        """Runs one job with its JSON arguments; returns a JSON-serializable value."""
        raise NotImplementedError


def _seconds(
    name: str, value: float | dt.timedelta | None, *, zero_ok: bool = True
) -> float | None:
    if value is None:
        return None
    return check_seconds(name, value, zero_ok=zero_ok)


_INT_RANGES = {"priority": (-(2**31), 2**31 - 1), "max_attempts": (1, MAX_ATTEMPTS)}


def build_options(options: dict[str, Any]) -> dict[str, Any]:
    """Validates enqueue options and converts them to the engine's form.

    The same checks apply on every backend, so a bad option raises ``ConfigError`` at
    the enqueue call whether the queue is durable or ``inprocess://``.
    """
    if not options:
        return {}
    unknown = sorted(set(options) - OPTION_NAMES)
    if unknown:
        raise ConfigError(f"unknown enqueue options: {', '.join(unknown)}")
    out: dict[str, Any] = {}
    for key, (low, high) in _INT_RANGES.items():
        value = options.get(key)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{key} must be an integer")
            if not low <= value <= high:
                raise ConfigError(f"{key} must be between {low} and {high}")
            out[key] = value
    delay = _seconds("delay", options.get("delay"))
    if delay is not None:
        out["delay"] = delay
    timeout = _seconds("timeout", options.get("timeout"), zero_ok=False)
    if timeout is not None:
        out["timeout"] = timeout
    run_at = options.get("run_at")
    if run_at is not None:
        if not isinstance(run_at, dt.datetime):
            raise ConfigError("run_at must be a datetime")
        if run_at.tzinfo is None or run_at.utcoffset() is None:
            raise ConfigError(
                "run_at must be timezone-aware (e.g. datetime.now(timezone.utc)); "
                "a naive datetime is ambiguous"
            )
        if delay is not None:
            raise ConfigError("give delay or run_at, not both")
        # Rounded up (never early), but datetime.max stays within the year 9999.
        out["run_at_ms"] = min(int(-(-run_at.timestamp() * 1000 // 1)), MAX_INSTANT_MS)
    for key in ("unique_key", "queue"):
        value = options.get(key)
        if value is not None:
            if not isinstance(value, str):
                raise ConfigError(f"{key} must be a string")
            out[key] = check_text("queue name" if key == "queue" else key, value)
    unique_key = out.get("unique_key")
    if unique_key is not None and not 1 <= len(unique_key.encode()) <= 512:
        raise ConfigError("unique_key must be 1 to 512 bytes")
    queue = out.get("queue")
    if queue is not None and not 1 <= len(queue) <= 200:
        raise ConfigError("queue name must be 1 to 200 characters")
    return out


class Task(Generic[P, R]):
    """A function registered as a task on a ``TaskQueue``.

    Calling the task runs the function here and now; ``delay``/``enqueue`` put a job
    in the queue for a worker.
    """

    def __init__(
        self,
        queue: TaskQueue,
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
