"""spikard-tasks: a durable task queue and scheduler for Python with a Rust core.

Define tasks with ``@queue.task``, enqueue them with ``.delay()``, run workers with
``queue.run_worker()`` or ``spikard-tasks worker module:queue``. Jobs persist in the
backend (SQLite by default) and run at least once. ``TaskQueue("inprocess://")`` runs the
same tasks on the in-process fast path (a ``BackgroundRuntime``; no persistence).
"""

from __future__ import annotations

from typing import Any

from . import _logging
from .config import Backoff, TaskQueueConfig
from .context import JobContext, current_job
from .cron import CronSchedule, ScheduleState
from .exceptions import (
    BackendError,
    Cancel,
    ConfigError,
    InvalidArguments,
    JobCancelled,
    JobFailed,
    NoCurrentJob,
    QueueFull,
    Retry,
    RuntimeShutDown,
    SerializationError,
    SpikardTasksError,
    UnknownTask,
)
from .inprocess.runtime import BackgroundRuntime, DrainReport, RuntimeJob, RuntimeStats
from .job import AttemptError, Job, JobInfo, Progress
from .ops_types import JobPage, LimitInfo, QueueStats, Stats, WorkerInfo
from .queue import TaskQueue
from .status import JobStatus
from .task import AsyncTask, Task, TaskHandler
from .worker import Worker

_logging.install()

#: The installed distribution's version (read from its metadata on first access: reading
#: package metadata costs more than the rest of the import).
__version__: str


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from ._version import installed_version

        return installed_version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AsyncTask",
    "AttemptError",
    "BackendError",
    "BackgroundRuntime",
    "Backoff",
    "Cancel",
    "ConfigError",
    "CronSchedule",
    "DrainReport",
    "InvalidArguments",
    "Job",
    "JobCancelled",
    "JobContext",
    "JobFailed",
    "JobInfo",
    "JobPage",
    "JobStatus",
    "LimitInfo",
    "NoCurrentJob",
    "Progress",
    "QueueFull",
    "QueueStats",
    "Retry",
    "RuntimeJob",
    "RuntimeShutDown",
    "RuntimeStats",
    "ScheduleState",
    "SerializationError",
    "SpikardTasksError",
    "Stats",
    "Task",
    "TaskHandler",
    "TaskQueue",
    "TaskQueueConfig",
    "UnknownTask",
    "Worker",
    "WorkerInfo",
    "__version__",
    "current_job",
]
