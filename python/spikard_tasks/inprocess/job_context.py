"""``current_job()`` on the in-process runtime: a running ``RuntimeJob`` (typed ``Any``
here: this module sits below ``runtime_job``) as a
``JobContext``, and its progress reports (kept on the job, in this process)."""

from __future__ import annotations

import time
from typing import Any

from .._limits import from_ms
from ..context import JobContext

__all__ = ["ProgressReport", "job_context", "store_progress"]

#: ``(fraction, message, at)``: the latest report, ``at`` in epoch seconds.
ProgressReport = tuple[float, "str | None", float]


class _Sink:
    """Progress reports of one runtime job (it ignores the id: it knows its job)."""

    __slots__ = ("_job",)

    def __init__(self, job: Any) -> None:
        self._job = job

    def set_progress(self, job_id: str, fraction: float, message: str | None = None) -> bool:
        return store_progress(self._job, fraction, message)


def job_context(job: Any) -> JobContext:
    """The context of ``job``'s running attempt. A job of a ``TaskQueue("inprocess://")``
    names its task and queue; one submitted to a ``BackgroundRuntime`` directly names
    its handler, and its queue is ``"inprocess"``."""
    meta = job.meta
    return JobContext(
        job.id,
        getattr(meta, "task", job.name),
        getattr(meta, "queue", "inprocess"),
        max(job.attempts, 1),
        getattr(meta, "max_attempts", max(job.attempts, 1)),
        from_ms(int(job.enqueued_at * 1000)),
        job._timeout,
        _Sink(job),
    )


def store_progress(job: Any, fraction: float, message: str | None) -> bool:
    """Keeps the report on ``job`` while it runs; ``False`` once it has finished."""
    with job._runtime._lock:
        if job.done():
            return False
        job._progress = (fraction, message, time.time())
    return True
