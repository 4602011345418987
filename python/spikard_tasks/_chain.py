"""What a worker calls for a task: its handler inside the queue's middleware, with the
task's retry rule applied to what it raises.

A task without middleware and without ``retry_on`` / ``dont_retry_on`` runs its handler
as it is (no extra frame per job). An exception that the rule says must not be retried
is marked with the attribute ``NO_RETRY``; the durable engine's bridge and the
in-process runtime both read that mark.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

from .context import JobContext, current_job
from .exceptions import Cancel, Retry
from .task import Task

__all__ = ["NO_RETRY", "LoopSource", "mark_no_retry", "task_runner"]

#: Set (true) on an exception no retry may follow.
NO_RETRY = "_spikard_no_retry"

#: Gives the event loop where an ``async`` middleware of a sync handler runs.
LoopSource = Callable[[], "asyncio.AbstractEventLoop | None"]


def mark_no_retry(exc: BaseException) -> None:
    """Marks ``exc`` so that the job fails at once, with no retry."""
    with contextlib.suppress(Exception):  # an exception type that refuses attributes
        setattr(exc, NO_RETRY, True)


def _classify(task: Task[Any, Any], exc: BaseException) -> None:
    if isinstance(exc, (Retry, Cancel)):
        return
    dont, only = task.dont_retry_on, task.retry_on
    if (dont is not None and isinstance(exc, dont)) or (
        only is not None and not isinstance(exc, only)
    ):
        mark_no_retry(exc)


class _OnLoop:
    """An async context manager entered and left from a sync handler's thread, on the
    worker's event loop."""

    def __init__(self, manager: contextlib.AbstractAsyncContextManager[Any], loop: Any) -> None:
        self._manager = manager
        self._loop = loop

    def __enter__(self) -> Any:
        return asyncio.run_coroutine_threadsafe(self._manager.__aenter__(), self._loop).result()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        leave = self._manager.__aexit__(exc_type, exc, tb)
        return asyncio.run_coroutine_threadsafe(leave, self._loop).result()


def task_runner(
    task: Task[Any, Any],
    middleware: Sequence[Callable[..., Any]],
    loop: LoopSource,
    *,
    tracing: bool = False,
) -> Callable[..., Any]:
    """The callable a worker runs for ``task`` (async when the handler is); with
    ``tracing``, inside an OpenTelemetry consumer span (see ``_otel``)."""
    runner = _runner(task, middleware, loop)
    if tracing:
        from . import _otel

        return _otel.traced(runner, task.is_async, current_job)
    return runner


def _runner(
    task: Task[Any, Any], middleware: Sequence[Callable[..., Any]], loop: LoopSource
) -> Callable[..., Any]:
    fn = task.fn
    chain = tuple(middleware)
    if not chain and task.retry_on is None and task.dont_retry_on is None:
        return fn

    def enter_sync(stack: contextlib.ExitStack, job: JobContext) -> None:
        for mw in chain:
            if inspect.isasyncgenfunction(mw):
                event_loop = loop()
                if event_loop is None:
                    raise RuntimeError("no event loop for an async middleware")
                stack.enter_context(_OnLoop(contextlib.asynccontextmanager(mw)(job), event_loop))
            else:
                stack.enter_context(contextlib.contextmanager(mw)(job))

    if task.is_async:

        async def run_async(*args: Any, **kwargs: Any) -> Any:
            try:
                if not chain:
                    return await fn(*args, **kwargs)
                job = current_job()
                async with contextlib.AsyncExitStack() as stack:
                    for mw in chain:
                        if inspect.isasyncgenfunction(mw):
                            await stack.enter_async_context(contextlib.asynccontextmanager(mw)(job))
                        else:
                            stack.enter_context(contextlib.contextmanager(mw)(job))
                    return await fn(*args, **kwargs)
            except BaseException as exc:
                _classify(task, exc)
                raise

        return run_async

    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            if not chain:
                return fn(*args, **kwargs)
            with contextlib.ExitStack() as stack:
                enter_sync(stack, current_job())
                return fn(*args, **kwargs)
        except BaseException as exc:
            _classify(task, exc)
            raise

    return run


def needs_loop(task: Task[Any, Any], middleware: Sequence[Callable[..., Any]]) -> bool:
    """Whether running ``task`` needs the worker's event loop."""
    return task.is_async or any(inspect.isasyncgenfunction(m) for m in middleware)
