"""What a job of an ``inprocess://`` queue keeps besides the runtime's own fields
(:class:`JobMeta`), and its ``JobInfo`` snapshot (:func:`job_info`)."""

from __future__ import annotations

from typing import Any

from ..job import JobInfo, Progress
from ..status import JobStatus
from .runtime_job import RuntimeJob, _utc

__all__ = ["STATUS", "JobMeta", "job_info"]

#: The ``JobStatus`` of each runtime state.
STATUS = {status.value: status for status in JobStatus}


class JobMeta:
    """What a job of an ``inprocess://`` queue keeps besides the runtime's own fields:
    its task, queue name, JSON arguments, attempt budget and unique key, and ``plan``,
    how it runs (the backend's cached plan: runner, timeout, retry policy), so that
    ``retry`` can run it again."""

    __slots__ = ("args", "kwargs", "max_attempts", "plan", "queue", "task", "unique_key")

    def __init__(
        self,
        task: str,
        queue: str,
        args: list[Any],
        kwargs: dict[str, Any],
        max_attempts: int,
        unique_key: str | None,
        plan: Any = None,
    ) -> None:
        self.task = task
        self.queue = queue
        self.args = args
        self.kwargs = kwargs
        self.max_attempts = max_attempts
        self.unique_key = unique_key
        self.plan = plan


def _progress(report: tuple[float, str | None, float] | None) -> Progress | None:
    if report is None:
        return None
    fraction, message, at = report
    return Progress(fraction, message, _utc(at))


def job_info(job: RuntimeJob[Any]) -> JobInfo:
    """A ``JobInfo`` snapshot of an in-process job."""
    state = job.status()  # first: the outcome fields are written before the state
    meta: JobMeta = job.meta
    return JobInfo(
        id=job.id,
        task=meta.task,
        queue=meta.queue,
        status=STATUS[state],
        attempts=job.attempts,
        max_attempts=meta.max_attempts,
        priority=job.priority,
        run_at=_utc(job.run_at if job.run_at is not None else job.enqueued_at),
        result=job.value,
        errors=job.errors,
        enqueued_at=_utc(job.enqueued_at),
        started_at=_utc(job.started_at),
        finished_at=_utc(job.finished_at),
        args=list(meta.args),
        kwargs=dict(meta.kwargs),
        unique_key=meta.unique_key,
        cancel_reason=job.error if state == "cancelled" else None,
        progress=_progress(job.progress),
    )
