"""``RuntimeJob``, the handle on one job of a ``BackgroundRuntime``, and the runtime's
report types (``RuntimeStats``, ``DrainReport``).

Split out of :mod:`spikard_tasks.runtime` (which re-exports everything here) to keep the
runtime's scheduling code and the job handle each in a module of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import threading
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar

from ..context import JobContext
from ..exceptions import JobCancelled, JobFailed
from ..job import AttemptError
from .job_context import ProgressReport, job_context

if TYPE_CHECKING:
    from typing import TypeAlias

    # A thread blocked in result() waits on a held lock; a coroutine in wait() on a future.
    _Waiter: TypeAlias = threading.Lock | tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]

__all__ = [
    "DrainReport",
    "RetryPolicy",
    "RuntimeJob",
    "RuntimeJobStatus",
    "RuntimeStats",
]

T = TypeVar("T")

RuntimeJobStatus = Literal[
    "pending", "scheduled", "running", "retrying", "succeeded", "failed", "cancelled"
]
"""The states of a :class:`RuntimeJob` (the same strings as ``JobStatus``)."""

RetryPolicy = Callable[[BaseException, int], "float | None"]
"""Decides whether a failed attempt is retried: called with the exception and the number
of the attempt that failed (1 for the first), it returns the seconds to wait before the
next attempt, or ``None`` to end the job ``"failed"``."""

_PENDING: RuntimeJobStatus = "pending"
_SCHEDULED: RuntimeJobStatus = "scheduled"
_RUNNING: RuntimeJobStatus = "running"
_RETRYING: RuntimeJobStatus = "retrying"
_SUCCEEDED: RuntimeJobStatus = "succeeded"
_FAILED: RuntimeJobStatus = "failed"
_CANCELLED: RuntimeJobStatus = "cancelled"
_TERMINAL = frozenset({_SUCCEEDED, _FAILED, _CANCELLED})
_WAITING = frozenset({_SCHEDULED, _RETRYING})

_EMPTY_KWARGS: dict[str, Any] = {}
_ID_LOCK = threading.Lock()


class JobOwner(Protocol):
    """What a :class:`RuntimeJob` needs of the runtime that runs it."""

    @property
    def _lock(self) -> threading.Lock: ...

    def _cancel(self, job: RuntimeJob[Any]) -> bool:
        """Cancels ``job`` (see :meth:`RuntimeJob.cancel`)."""
        ...

    def _on_loop_thread(self) -> bool:
        """Whether the caller runs on the runtime's loop thread."""
        ...


@dataclass(frozen=True, slots=True)
class RuntimeStats:
    """A consistent snapshot of a :class:`~spikard_tasks.runtime.BackgroundRuntime`'s
    counters.

    Attributes:
        queued: jobs accepted, ready and not started yet (this includes, for an instant,
            a job that a free execution slot is about to pick up).
        running: jobs holding an execution slot: their handler is running.
        succeeded: jobs that ended ``"succeeded"`` since the runtime was created.
        failed: jobs that ended ``"failed"`` since the runtime was created.
        cancelled: jobs that ended ``"cancelled"`` since the runtime was created.
        scheduled: ``"scheduled"`` jobs: waiting for the end of their ``delay``.
        retrying: ``"retrying"`` jobs: an attempt failed, the next waits for its time.
        retried: failed attempts that were followed by another attempt.
    """

    queued: int
    running: int
    succeeded: int
    failed: int
    cancelled: int = 0
    scheduled: int = 0
    retrying: int = 0
    retried: int = 0


@dataclass(frozen=True, slots=True)
class DrainReport:
    """What :meth:`~spikard_tasks.runtime.BackgroundRuntime.shutdown` achieved.

    Attributes:
        completed: jobs that finished (succeeded, failed or cancelled by their handler)
            while the runtime drained.
        unfinished: number of jobs that had not finished when the drain ended: jobs still
            queued (they end ``"cancelled"`` without starting), running async handlers
            (cancelled), running sync handlers (left to finish on their thread) and jobs
            whose time or next attempt came too late for the drain (``"cancelled"``).
        unfinished_jobs: one ``"name (id)"`` entry per unfinished job.
        timed_out: ``True`` when the drain timeout expired before all work finished.
    """

    completed: int = 0
    unfinished: int = 0
    unfinished_jobs: list[str] = field(default_factory=list)
    timed_out: bool = False


def _resolve_future(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _notify(waiters: list[_Waiter]) -> None:
    """Wake threads blocked in ``result()`` and coroutines awaiting ``wait()``."""
    for waiter in waiters:
        if isinstance(waiter, tuple):
            loop, fut = waiter
            # RuntimeError: that loop is closed, so nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve_future, fut)
        else:
            waiter.release()


def take_open(
    pending: deque[RuntimeJob[Any]], gate: Callable[[RuntimeJob[Any]], bool]
) -> RuntimeJob[Any] | None:
    """Takes the first queued job ``gate`` lets start off ``pending`` (the runtime's
    queue, with its lock held), or ``None``: how jobs of a paused queue wait."""
    for index, job in enumerate(pending):
        if gate(job):
            del pending[index]
            return job
    return None


def _utc(seconds: float | None) -> dt.datetime | None:
    return None if seconds is None else dt.datetime.fromtimestamp(seconds, tz=dt.timezone.utc)


class RuntimeJob(Generic[T]):
    """A handle on one job submitted to a :class:`~spikard_tasks.runtime.BackgroundRuntime`.

    Jobs are created by ``BackgroundRuntime.submit`` and ``submit_with``; do not
    instantiate this class yourself. Every method is thread-safe.
    """

    __slots__ = (
        "__weakref__",
        "_args",
        "_attempts",
        "_cancel_requested",
        "_due",
        "_enqueued_at",
        "_error",
        "_errors",
        "_exc",
        "_finished_at",
        "_fn",
        "_id",
        "_is_async",
        "_kwargs",
        "_meta",
        "_name",
        "_priority",
        "_progress",
        "_request_id",
        "_retry",
        "_runtime",
        "_started_at",
        "_state",
        "_timeout",
        "_traceback",
        "_value",
        "_waiters",
    )

    def __init__(
        self,
        runtime: JobOwner,
        fn: Callable[..., Any],
        args: tuple[Any, ...] | list[Any],
        kwargs: dict[str, Any],
        is_async: bool,
        name: str,
        request_id: str | None,
        *,
        job_id: str | None = None,
        priority: int = 0,
        due: float | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        meta: Any = None,
        now: float = 0.0,
    ) -> None:
        """Create a job that is not accepted yet; only the runtime does this."""
        self._id = job_id
        self._name = name
        self._request_id = request_id
        self._runtime = runtime
        self._fn: Callable[..., Any] | None = fn
        self._args = args
        self._kwargs = kwargs
        self._is_async = is_async
        self._state: RuntimeJobStatus = _PENDING
        self._value: Any = None
        self._exc: BaseException | None = None
        self._error: str | None = None
        self._traceback: str | None = None
        self._waiters: list[_Waiter] | None = None
        self._priority = priority
        self._progress: ProgressReport | None = None
        self._due = due
        self._timeout = timeout
        self._retry = retry
        self._meta = meta
        self._attempts = 0
        self._errors: list[tuple[int, str, str | None, float]] | None = None
        self._cancel_requested = False
        self._enqueued_at = now
        self._started_at: float | None = None
        self._finished_at: float | None = None

    @property
    def id(self) -> str:
        """The job's id: the ``job_id`` given at submit time, else a random UUID (version
        4) as 32 hex digits.

        A random id is generated on first access (most fire-and-forget jobs never need
        one) and never changes afterwards.
        """
        job_id = self._id
        if job_id is None:
            with _ID_LOCK:
                job_id = self._id
                if job_id is None:
                    job_id = self._id = uuid.uuid4().hex
        return job_id

    @property
    def name(self) -> str:
        """The job's name: the ``name`` given at submit time or the callable's qualname."""
        return self._name

    @property
    def request_id(self) -> str | None:
        """The request id given at submit time (for correlating logs), or ``None``."""
        return self._request_id

    @property
    def meta(self) -> Any:
        """The ``meta`` object given at submit time (the runtime never looks at it)."""
        return self._meta

    @property
    def priority(self) -> int:
        """The job's priority: higher runs first among queued jobs."""
        return self._priority

    @property
    def attempts(self) -> int:
        """How many attempts have started (0 until the handler first runs)."""
        return self._attempts

    @property
    def run_at(self) -> float | None:
        """When a ``"scheduled"`` or ``"retrying"`` job runs next (epoch seconds), or
        when a delayed job was due; ``None`` for a job submitted without a delay."""
        return self._due

    @property
    def enqueued_at(self) -> float:
        """When the job was submitted (epoch seconds)."""
        return self._enqueued_at

    @property
    def started_at(self) -> float | None:
        """When its latest attempt started (epoch seconds), or ``None``."""
        return self._started_at

    @property
    def finished_at(self) -> float | None:
        """When the job reached its final state (epoch seconds), or ``None``."""
        return self._finished_at

    @property
    def errors(self) -> list[AttemptError]:
        """One entry per failed attempt (attempt number, error text, traceback, time)."""
        with self._runtime._lock:
            entries = list(self._errors or ())
        return [AttemptError(n, error, tb, _utc(at)) for n, error, tb, at in entries]

    def status(self) -> RuntimeJobStatus:
        """Return the job's current state.

        Returns:
            ``"pending"`` (accepted, ready, not started), ``"scheduled"`` (waiting for
            its delay), ``"running"``, ``"retrying"`` (an attempt failed; the next one
            waits for its backoff), ``"succeeded"``, ``"failed"`` or ``"cancelled"``.
        """
        return self._state

    def _job_context(self) -> JobContext:
        """What ``current_job()`` returns inside this job's handler."""
        return job_context(self)

    @property
    def progress(self) -> ProgressReport | None:
        """The latest ``(fraction, message, at)`` its handler reported, or ``None``."""
        return self._progress

    def done(self) -> bool:
        """Return ``True`` once the job has succeeded, failed or been cancelled."""
        return self._state in _TERMINAL

    @property
    def value(self) -> Any:
        """The handler's return value once the job succeeded, else ``None`` (no wait)."""
        return self._value if self._state == _SUCCEEDED else None

    @property
    def exception(self) -> BaseException | None:
        """The exception the handler raised if the job failed, else ``None``."""
        return self._exc if self._state == _FAILED else None

    @property
    def error(self) -> str | None:
        """Why the job did not succeed, or ``None``.

        For a failed job this is ``"ExcType: message"``; for a cancelled job, the reason;
        for a retrying job, the error of the attempt that failed last.
        """
        return self._error

    @property
    def traceback(self) -> str | None:
        """The formatted traceback of a failed job, else ``None``."""
        return self._traceback

    def cancel(self) -> bool:
        """Cancel the job.

        A job that has not started (``"pending"``, ``"scheduled"``, ``"retrying"``) ends
        ``"cancelled"`` at once. For a running job, cancellation is requested: an
        ``async def`` handler is cancelled (the job ends ``"cancelled"``); a sync handler
        cannot be interrupted, so it keeps running, and its job ends ``"cancelled"``
        only if the handler then raises (its return value is kept otherwise).

        Returns:
            ``True`` if the job was cancelled or cancellation was requested; ``False``
            for a finished job.
        """
        return self._runtime._cancel(self)

    def result(self, timeout: float | None = None) -> T:
        """Wait for the job to finish and return the handler's return value.

        Args:
            timeout: seconds to wait; ``None`` waits as long as it takes.

        Returns:
            The value the handler returned.

        Raises:
            JobFailed: the handler raised; ``error`` and ``traceback`` describe it.
            JobCancelled: the job was cancelled (by shutdown, by ``cancel()`` or by its
                handler).
            TimeoutError: the job did not finish within ``timeout`` seconds.
            RuntimeError: called on the runtime's own event loop thread for an
                unfinished job (that would deadlock); use ``await job.wait()`` there.
        """
        if self._state not in _TERMINAL:
            self._wait_blocking(timeout)
        return self._outcome()

    async def wait(self, timeout: float | None = None) -> T:
        """Await the job's end without blocking the event loop; the twin of :meth:`result`.

        Usable from any event loop, including the runtime's own (from an async handler).

        Args:
            timeout: seconds to wait; ``None`` waits as long as it takes.

        Returns:
            The value the handler returned.

        Raises:
            JobFailed: the handler raised; ``error`` and ``traceback`` describe it.
            JobCancelled: the job was cancelled (by shutdown or by its handler).
            TimeoutError: the job did not finish within ``timeout`` seconds.
        """
        if self._state in _TERMINAL:
            return self._outcome()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        waiter: _Waiter = (loop, fut)
        if not self._add_waiter(waiter):
            return self._outcome()
        try:
            if timeout is None:
                await fut
            else:
                await asyncio.wait_for(fut, max(0.0, timeout))
        except (asyncio.TimeoutError, TimeoutError):
            self._remove_waiter(waiter)
            if self._state not in _TERMINAL:
                raise TimeoutError(
                    f"job {self.id} ({self._name}) did not finish within {timeout}s"
                ) from None
        except BaseException:
            self._remove_waiter(waiter)
            raise
        return self._outcome()

    def __repr__(self) -> str:
        """Return ``<RuntimeJob name id=... status=...>``."""
        return f"<RuntimeJob {self._name} id={self.id} status={self._state}>"

    # -- internals -------------------------------------------------------------------

    def _outcome(self) -> T:
        state = self._state
        if state == _SUCCEEDED:
            value: T = self._value
            return value
        if state == _FAILED:
            raise JobFailed(self.id, self._error or "failed", self._traceback)
        raise JobCancelled(self.id, self._error)

    def _add_waiter(self, waiter: _Waiter) -> bool:
        """Register ``waiter``; return ``False`` (not registered) if the job is done."""
        with self._runtime._lock:
            if self._state in _TERMINAL:
                return False
            if self._waiters is None:
                self._waiters = [waiter]
            else:
                self._waiters.append(waiter)
            return True

    def _remove_waiter(self, waiter: _Waiter) -> None:
        with self._runtime._lock:
            waiters = self._waiters
            if waiters is not None and waiter in waiters:
                waiters.remove(waiter)

    def _wait_blocking(self, timeout: float | None) -> None:
        if self._runtime._on_loop_thread():
            raise RuntimeError(
                "RuntimeJob.result() cannot wait on the runtime's own event loop thread "
                "(it would deadlock); use `await job.wait()` instead"
            )
        gate = threading.Lock()
        gate.acquire()
        if not self._add_waiter(gate):
            return
        if gate.acquire(timeout=-1 if timeout is None else max(0.0, timeout)):
            return
        self._remove_waiter(gate)
        if self._state not in _TERMINAL:
            raise TimeoutError(f"job {self.id} ({self._name}) did not finish within {timeout}s")

    def _end_locked(self, state: RuntimeJobStatus, reason: str | None, now: float) -> None:
        """Put a job that is not running in a final state; the caller holds the lock."""
        self._error = reason
        self._state = state
        self._finished_at = now
        self._fn = None
        self._args = ()
        self._kwargs = _EMPTY_KWARGS
