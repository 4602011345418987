"""``current_job()``: the job a handler is running, and the progress it reports.

The worker sets a context variable around every attempt (on the durable engine's
handler threads and event loop, and on the in-process runtime), so a handler, a
middleware or any function they call can ask which job this is::

    from spikard_tasks import current_job

    @queue.task
    def export(rows: int) -> str:
        job = current_job()
        for i in range(rows):
            ...
            job.progress((i + 1) / rows, f"row {i + 1} of {rows}")
        return f"export {job.id}, attempt {job.attempt} of {job.max_attempts}"
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import datetime as dt
import math
from typing import Any, Protocol

from ._limits import from_ms
from ._text import check_text
from .exceptions import ConfigError, NoCurrentJob

__all__ = ["JobContext", "ProgressSink", "current_job"]

#: Set by the worker around each attempt: a durable job's fields as a tuple
#: ``(sink, id, task, queue, attempt, max_attempts, enqueued_at_ms, timeout,
#: trace_context)``, or an object with a ``_job_context()`` method (the in-process
#: runtime's job).
CURRENT: contextvars.ContextVar[Any] = contextvars.ContextVar("spikard_tasks.current_job")

#: The longest progress message accepted (characters).
MAX_MESSAGE = 1000


class ProgressSink(Protocol):
    """Where a job's progress reports go (the durable engine's queue, or the in-process
    runtime's job)."""

    def set_progress(self, job_id: str, fraction: float, message: str | None = None) -> bool:
        """Stores the report on the running job; ``False`` if it is not running."""
        ...


@dataclasses.dataclass(frozen=True)
class JobContext:
    """The job the current handler runs (see :func:`current_job`).

    Attributes:
        id: the job id.
        task: the task name.
        queue: the queue the job was taken from.
        attempt: this attempt's number, from 1.
        max_attempts: attempts the job may use.
        enqueued_at: when the job was enqueued (aware UTC), if known.
        timeout: this attempt's timeout in seconds, if any.
        trace_context: the W3C trace context of the span that enqueued the job
            (``traceparent``, then ``;`` and the ``tracestate`` when there is one), if
            it was enqueued with one; the parent of the handler's span.
    """

    id: str
    task: str
    queue: str
    attempt: int
    max_attempts: int
    enqueued_at: dt.datetime | None
    timeout: float | None
    _sink: ProgressSink = dataclasses.field(repr=False, compare=False)
    trace_context: str | None = None

    @property
    def is_last_attempt(self) -> bool:
        """True when a failure of this attempt fails the job for good."""
        return self.attempt >= self.max_attempts

    def progress(self, fraction: float, message: str | None = None) -> bool:
        """Reports how far the job is, ``fraction`` from 0.0 to 1.0, with an optional
        message (up to 1,000 characters). Stored with the job at once and shown by
        ``job.info().progress``, ``spikard-tasks status`` and the HTTP job route; the
        latest report wins, and it stays after the job finishes. ``False`` when the job
        is no longer running (cancelled, or its lease was lost). Blocks for one write
        to the store: in an ``async def`` handler prefer :meth:`aprogress`."""
        fraction, message = _check_progress(fraction, message)
        return bool(self._sink.set_progress(self.id, fraction, message))

    async def aprogress(self, fraction: float, message: str | None = None) -> bool:
        """Awaitable twin of :meth:`progress` (the write runs off the event loop)."""
        fraction, message = _check_progress(fraction, message)
        loop = asyncio.get_running_loop()
        return bool(
            await loop.run_in_executor(None, self._sink.set_progress, self.id, fraction, message)
        )


def _check_progress(fraction: Any, message: Any) -> tuple[float, str | None]:
    ok = isinstance(fraction, (int, float)) and not isinstance(fraction, bool)
    value = float(fraction) if ok else math.nan
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ConfigError(f"progress must be a number from 0.0 to 1.0, got {fraction!r}")
    if message is not None:
        if not isinstance(message, str):
            raise ConfigError(f"progress message must be a str, not {type(message).__name__}")
        check_text("progress message", message)
        if len(message) > MAX_MESSAGE:
            raise ConfigError(f"progress message is longer than {MAX_MESSAGE} characters")
    return value, message


def current_job() -> JobContext:
    """The job the calling handler runs: id, task, queue, attempt, max_attempts,
    enqueued_at, timeout, and :meth:`JobContext.progress`.

    Works in sync and ``async def`` handlers, in middleware, and in anything they call
    in the same thread or task, on every backend (``inprocess://`` included). Raises
    ``NoCurrentJob`` outside a job.
    """
    fields = CURRENT.get(None)
    if fields is None:
        raise NoCurrentJob(
            "current_job() was called outside a job: only a task handler (or code it "
            "calls, or a middleware) runs inside one"
        )
    if type(fields) is tuple:
        sink, job_id, task, queue, attempt, max_attempts, enqueued_at_ms, timeout, trace = fields
        return JobContext(
            job_id,
            task,
            queue,
            attempt,
            max_attempts,
            from_ms(enqueued_at_ms),
            timeout,
            sink,
            trace,
        )
    context: JobContext = fields._job_context()
    return context
