"""The one exception hierarchy of spikard-tasks.

Every error the library raises derives from :class:`SpikardTasksError`. The native
extension raises these same classes (it looks them up here), so this module is the
single place where they are declared.

``Retry`` and ``Cancel`` are not errors of the library: they are signals a task
handler raises to choose the outcome of its job. They still derive from
``SpikardTasksError`` so that one ``except`` clause can catch everything this
package defines.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "Cancel",
    "ConfigError",
    "InvalidArguments",
    "JobCancelled",
    "JobFailed",
    "NoCurrentJob",
    "QueueFull",
    "Retry",
    "RuntimeShutDown",
    "SerializationError",
    "SpikardTasksError",
    "UnknownTask",
]


class SpikardTasksError(Exception):
    """Base class of every exception defined by spikard-tasks."""


class ConfigError(SpikardTasksError, ValueError):
    """Invalid configuration: a malformed URL, a backend not compiled in, a bad option."""


class UnknownTask(SpikardTasksError, LookupError):
    """A task name that is not registered (at enqueue time or in the worker)."""


class InvalidArguments(SpikardTasksError, TypeError):
    """Arguments that do not fit the task's signature (a missing or unexpected one),
    found at the enqueue call: nothing was written."""


class NoCurrentJob(SpikardTasksError, LookupError):
    """``current_job()`` was called outside a job."""


class SerializationError(SpikardTasksError, TypeError):
    """Arguments or a result that cannot be represented as JSON."""


class BackendError(SpikardTasksError):
    """The storage backend failed (database unreachable, query error, ...).

    Nothing was written when this is raised from an enqueue call.
    """


class QueueFull(SpikardTasksError):
    """The in-process queue is at its bound; the job was not accepted."""


class RuntimeShutDown(SpikardTasksError):
    """A job was submitted to an in-process runtime that has shut down."""


class JobFailed(SpikardTasksError):
    """The job ended ``failed``: every attempt raised.

    Attributes:
        job_id: id of the job.
        error: the last attempt's error text (``"ExcType: message"``).
        traceback: the last attempt's formatted traceback, if one was recorded.
    """

    def __init__(self, job_id: str, error: str, traceback: str | None = None) -> None:
        super().__init__(f"job {job_id} failed: {error}")
        self.job_id = job_id
        self.error = error
        self.traceback = traceback


class JobCancelled(SpikardTasksError):
    """The job ended ``cancelled`` (by ``queue.cancel`` or a handler's ``Cancel``)."""

    def __init__(self, job_id: str, reason: str | None = None) -> None:
        text = f"job {job_id} was cancelled"
        super().__init__(f"{text}: {reason}" if reason else text)
        self.job_id = job_id
        self.reason = reason


class Retry(SpikardTasksError):
    """Raise from a handler to run the job again after ``after`` seconds.

    The attempt counts toward ``max_attempts``; when none are left the job fails.
    """

    def __init__(self, after: float = 0.0, reason: str | None = None) -> None:
        import math

        ok = isinstance(after, (int, float)) and not isinstance(after, bool)
        seconds = float(after) if ok else math.nan
        # The limit of every duration (spikard_tasks._limits.MAX_SECONDS): 100 years.
        if not (math.isfinite(seconds) and 0 <= seconds <= 3_155_760_000):
            raise ConfigError(
                "Retry(after=...) must be a number of seconds from 0 to 3155760000 "
                f"(100 years), got {after!r}"
            )
        super().__init__(reason or f"retry requested after {seconds}s")
        self.after = seconds
        self.reason = reason


class Cancel(SpikardTasksError):
    """Raise from a handler to end its job ``cancelled`` with no further attempts."""

    def __init__(self, reason: str | None = None) -> None:
        super().__init__(reason or "cancelled by handler")
        self.reason = reason
