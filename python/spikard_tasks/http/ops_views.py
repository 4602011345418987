"""JSON views of jobs and of the operations model for the HTTP routes and the dashboard:
a job's default view and its full record, the stats, a worker. Times are ISO-8601 UTC
strings, ages are seconds."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from starlette.requests import Request

from ..job import JobInfo
from ..ops_types import Stats, WorkerInfo
from ..status import JobStatus
from .ops_params import query_pairs
from .wire import HTTPError

__all__ = [
    "iso",
    "job_record",
    "job_view",
    "stats_view",
    "view_of",
    "worker_view",
]


def iso(when: dt.datetime | None) -> str | None:
    """``when`` as ISO-8601 (``None`` stays ``None``)."""
    return None if when is None else when.isoformat()


def job_record(info: JobInfo) -> dict[str, Any]:
    """Everything stored about a job: what ``GET {prefix}/jobs`` lists and
    ``GET {prefix}/jobs/{id}?view=full`` answers. ``task_id`` is the id, as in the
    enqueue app's view; ``errors`` holds every failed attempt with its traceback."""
    progress = info.progress
    return {
        "task_id": info.id,
        "task": info.task,
        "queue": info.queue,
        "status": info.status.value,
        "attempts": info.attempts,
        "max_attempts": info.max_attempts,
        "priority": info.priority,
        "args": info.args,
        "kwargs": info.kwargs,
        "result": info.result,
        "errors": [
            {"attempt": e.attempt, "error": e.error, "traceback": e.traceback, "at": iso(e.at)}
            for e in info.errors
        ],
        "progress": None
        if progress is None
        else {"fraction": progress.fraction, "message": progress.message, "at": iso(progress.at)},
        "unique_key": info.unique_key,
        "cancel_reason": info.cancel_reason,
        "run_at": iso(info.run_at),
        "enqueued_at": iso(info.enqueued_at),
        "started_at": iso(info.started_at),
        "finished_at": iso(info.finished_at),
    }


def stats_view(stats: Stats) -> dict[str, Any]:
    """``GET {prefix}/stats``: when they were read, the counts summed over the queues,
    each queue's figures and every stored limit (``Stats.to_dict()``, the CLI's ``info
    --json``)."""
    return stats.to_dict()


def worker_view(worker: WorkerInfo) -> dict[str, Any]:
    """One live worker (``WorkerInfo.to_dict()``)."""
    return worker.to_dict()


def view_of(request: Request) -> Callable[[JobInfo], dict[str, Any]]:
    """``?view=full`` (the job's whole record) or the default view of a job."""
    view = dict(query_pairs(request.scope)).get("view", "")
    if view not in ("", "full"):
        raise HTTPError(400, f"query parameter view must be 'full' or absent, got {view!r}")
    return job_record if view == "full" else job_view


def job_view(info: JobInfo) -> dict[str, Any]:
    """The HTTP view of a job: ``task_id``, ``task``, ``status``, ``attempts``,
    ``result``, ``error`` (the text of the latest failed attempt; ``null`` when none
    failed or the job succeeded) and ``progress`` (``{"fraction", "message", "at"}`` as
    its handler last reported it, ``at`` in ISO-8601; ``null`` when it reported none)."""
    error = None
    if info.status is not JobStatus.SUCCEEDED and info.errors:
        error = info.errors[-1].error
    progress = info.progress
    return {
        "task_id": info.id,
        "task": info.task,
        "status": info.status.value,
        "attempts": info.attempts,
        "result": info.result,
        "error": error,
        "progress": None
        if progress is None
        else {
            "fraction": progress.fraction,
            "message": progress.message,
            "at": progress.at.isoformat() if progress.at is not None else None,
        },
    }
