"""``Job``: a handle on one enqueued job, and ``JobInfo``, a snapshot of it."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any, Generic, Protocol, TypeVar

from ._limits import check_seconds, from_ms
from .exceptions import JobCancelled, JobFailed
from .status import JobStatus

__all__ = ["AttemptError", "Job", "JobInfo", "Progress"]

R = TypeVar("R")


def _time(ms: int | None) -> dt.datetime | None:
    return from_ms(ms)


@dataclasses.dataclass(frozen=True)
class AttemptError:
    """The error of one failed attempt."""

    attempt: int
    error: str
    traceback: str | None
    at: dt.datetime | None


@dataclasses.dataclass(frozen=True)
class Progress:
    """The progress a job's handler last reported: ``fraction`` from 0.0 to 1.0, an
    optional ``message``, and when it was reported (an aware UTC datetime)."""

    fraction: float
    message: str | None
    at: dt.datetime | None

    @classmethod
    def from_record(cls, value: dict[str, Any] | None) -> Progress | None:
        """Builds it from the ``"progress"`` of the engine's record dict (``None``
        when the job never reported any)."""
        if not value:
            return None
        return cls(float(value["fraction"]), value.get("message"), _time(value.get("at_ms")))


@dataclasses.dataclass(frozen=True)
class JobInfo:
    """A snapshot of a stored job (times are aware UTC datetimes)."""

    id: str
    task: str
    queue: str
    status: JobStatus
    attempts: int
    max_attempts: int
    priority: int
    run_at: dt.datetime | None
    result: Any
    errors: list[AttemptError]
    enqueued_at: dt.datetime | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    args: list[Any]
    kwargs: dict[str, Any]
    unique_key: str | None
    cancel_reason: str | None
    progress: Progress | None = None
    """The last progress its handler reported; kept when the job finishes, and over a
    retry until the next attempt reports its own."""
    trace_context: str | None = None
    """The W3C trace context of the span that enqueued the job (``traceparent``, then
    ``;`` and the ``tracestate`` when there is one), if it was enqueued with one."""

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> JobInfo:
        """Builds a snapshot from the engine's record dict."""
        return cls(
            id=rec["id"],
            task=rec["task"],
            queue=rec["queue"],
            status=JobStatus(rec["status"]),
            attempts=rec["attempts"],
            max_attempts=rec["max_attempts"],
            priority=rec["priority"],
            run_at=_time(rec["run_at_ms"]),
            result=rec.get("result"),
            errors=[
                AttemptError(e["attempt"], e["error"], e.get("traceback"), _time(e.get("at_ms")))
                for e in rec.get("errors") or []
            ],
            enqueued_at=_time(rec.get("enqueued_at_ms")),
            started_at=_time(rec.get("started_at_ms")),
            finished_at=_time(rec.get("finished_at_ms")),
            args=rec.get("args") or [],
            kwargs=rec.get("kwargs") or {},
            unique_key=rec.get("unique_key"),
            cancel_reason=rec.get("cancel_reason"),
            progress=Progress.from_record(rec.get("progress")),
            trace_context=rec.get("trace_context"),
        )

    def outcome(self) -> Any:
        """The result of a finished job, or raise ``JobFailed`` / ``JobCancelled``."""
        if self.status is JobStatus.SUCCEEDED:
            return self.result
        if self.status is JobStatus.FAILED:
            last = self.errors[-1] if self.errors else None
            raise JobFailed(
                self.id,
                last.error if last else "failed",
                last.traceback if last else None,
            )
        if self.status is JobStatus.CANCELLED:
            raise JobCancelled(self.id, self.cancel_reason)
        raise RuntimeError(f"job {self.id} is not finished ({self.status.value})")


class JobBackend(Protocol):
    """What a :class:`Job` handle asks of the backend that made it (the durable engine
    or the in-process fast path)."""

    def info(self, job: Job[Any]) -> JobInfo | None:
        """A snapshot of ``job``, or ``None`` if it does not exist (any more)."""
        ...

    def status(self, job: Job[Any]) -> JobStatus:
        """The state of ``job`` (``LookupError`` if it does not exist)."""
        ...

    def result(self, job: Job[Any], timeout: float | None) -> Any:
        """Waits for ``job``; its value, or ``JobFailed``/``JobCancelled``/``TimeoutError``."""
        ...

    async def wait(self, job: Job[Any], timeout: float | None) -> Any:
        """Awaitable twin of :meth:`result`."""
        ...

    def cancel(self, job_id: str) -> bool:
        """Cancels a job (see ``TaskQueue.cancel``)."""
        ...


class Job(Generic[R]):
    """A handle on one job; ``R`` is its handler's result type. Cheap: it holds the
    queue's backend, the id and (for an ``inprocess://`` queue) the in-process job, and
    asks the backend whenever a method is called.

    The API is the same on every backend. On ``inprocess://`` the job lives in this
    process only: its handle keeps it findable, and it is gone when the process ends.
    """

    __slots__ = ("_backend", "_handle", "id")

    def __init__(self, backend: JobBackend, job_id: str, handle: Any = None) -> None:
        self._backend = backend
        self.id = job_id
        self._handle = handle

    def info(self) -> JobInfo:
        """A fresh snapshot of the job (raises ``LookupError`` if it no longer exists)."""
        info = self._backend.info(self)
        if info is None:
            raise LookupError(f"job {self.id} does not exist (expired or never enqueued)")
        return info

    def status(self) -> JobStatus:
        """The job's current state (asks the backend)."""
        return self._backend.status(self)

    def result(self, timeout: float | None = None) -> R:
        """Waits up to ``timeout`` seconds (forever with ``None``) for the job to finish.

        Returns the handler's return value; raises ``JobFailed`` (with ``error`` and
        ``traceback``), ``JobCancelled``, or ``TimeoutError``. A timeout that is not a
        number of seconds from 0 to 100 years raises ``ConfigError``.
        """
        if timeout is not None:
            timeout = check_seconds("timeout", timeout)
        value: R = self._backend.result(self, timeout)
        return value

    async def wait(self, timeout: float | None = None) -> R:
        """Awaitable twin of :meth:`result`."""
        if timeout is not None:
            timeout = check_seconds("timeout", timeout)
        value: R = await self._backend.wait(self, timeout)
        return value

    def cancel(self) -> bool:
        """Cancels the job (see ``TaskQueue.cancel``)."""
        return self._backend.cancel(self.id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Job) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"Job(id={self.id!r})"
