"""Testing helpers: record what code enqueues, or run its jobs inline (eager mode).

.. code-block:: python

    from spikard_tasks.testing import capture, eager

    def test_signup_sends_a_mail():
        with capture(queue) as enqueued:
            signup("ada@example.com")
        enqueued.assert_enqueued("send_email", args=["ada@example.com", "Welcome"])

    def test_signup_mail_content():
        with eager(queue) as ran:
            job = send_email.delay("ada@example.com", "Welcome")
            assert job.result() == {"sent": True}      # it already ran
        assert ran.tasks() == ["send_email"]

:func:`capture` records every enqueue on the queue and still stores the jobs (use a
``memory://`` queue in tests so nothing outlives them). :func:`eager` runs each job in
this process as it is enqueued and returns only once it finished, with the durable
semantics of arguments, results, retries (after their backoff: give tasks a short one in
tests), ``Retry``/``Cancel`` and timeouts; nothing reaches the queue's backend. Both
restore the queue on exit and may be nested (an ``eager`` block inside a ``capture``
block records in both).
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

from .exceptions import JobCancelled, JobFailed
from .inprocess import InProcessBackend, InProcessSettings
from .job import Job

if TYPE_CHECKING:
    from ._backend import Backend, EnqueueSpec
    from .queue import TaskQueue

__all__ = ["EnqueuedJob", "Recorder", "capture", "eager"]


@dataclasses.dataclass(frozen=True)
class EnqueuedJob:
    """One recorded enqueue: task name, JSON arguments, options and the job handle."""

    task: str
    args: list[Any]
    kwargs: dict[str, Any]
    options: dict[str, Any]
    job: Job


class Recorder:
    """What was enqueued on a queue inside a :func:`capture` or :func:`eager` block."""

    def __init__(self) -> None:
        # Slots are reserved before a batch is handed over, so that jobs enqueued by an
        # eager job (which runs at once, on another thread) come after their parent.
        self._slots: list[EnqueuedJob | None] = []
        self._lock = threading.Lock()

    @property
    def jobs(self) -> list[EnqueuedJob]:
        """The recorded jobs, in enqueue order."""
        with self._lock:
            return [j for j in self._slots if j is not None]

    def tasks(self) -> list[str]:
        """The task names, in enqueue order."""
        return [j.task for j in self.jobs]

    def of(self, task: str) -> list[EnqueuedJob]:
        """The recorded jobs of ``task``."""
        return [j for j in self.jobs if j.task == task]

    def assert_enqueued(
        self,
        task: str,
        *,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        times: int | None = None,
    ) -> list[EnqueuedJob]:
        """Asserts ``task`` was enqueued (with these ``args``/``kwargs`` if given, exactly
        ``times`` times if given) and returns the matching jobs."""
        found = [
            j
            for j in self.of(task)
            if (args is None or j.args == list(args))
            and (kwargs is None or j.kwargs == dict(kwargs))
        ]
        wanted = f"{task}(args={args!r}, kwargs={kwargs!r})"
        if times is None and not found:
            raise AssertionError(f"{wanted} was not enqueued; enqueued: {self._listing()}")
        if times is not None and len(found) != times:
            raise AssertionError(
                f"{wanted} was enqueued {len(found)} times, not {times}; enqueued: "
                f"{self._listing()}"
            )
        return found

    def assert_not_enqueued(self, task: str | None = None) -> None:
        """Asserts ``task`` (or, without a name, any task) was not enqueued."""
        found = self.jobs if task is None else self.of(task)
        if found:
            raise AssertionError(f"{task or 'a job'} was enqueued: {self._listing()}")

    def clear(self) -> None:
        """Forgets what was recorded so far."""
        with self._lock:
            self._slots = [None if j is not None else j for j in self._slots]

    def _listing(self) -> str:
        return ", ".join(f"{j.task}{tuple(j.args)!r}" for j in self.jobs) or "nothing"

    def _reserve(self, n: int) -> tuple[list[EnqueuedJob | None], int]:
        with self._lock:
            self._slots.extend([None] * n)
            return self._slots, len(self._slots) - n

    def _record(
        self,
        where: tuple[list[EnqueuedJob | None], int],
        batch: Sequence[EnqueueSpec],
        jobs: Sequence[Job],
    ) -> None:
        slots, start = where
        with self._lock:
            if slots is not self._slots:  # cleared meanwhile
                return
            for i, ((task, args, kwargs, options), job) in enumerate(zip(batch, jobs, strict=True)):
                slots[start + i] = EnqueuedJob(task, list(args), dict(kwargs), dict(options), job)


class _Recording:
    """A backend that records enqueues and hands them to the backend it wraps."""

    def __init__(self, inner: Backend, recorder: Recorder) -> None:
        self._inner = inner
        self._recorder = recorder

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def enqueue(self, batch: Sequence[EnqueueSpec]) -> list[Job]:
        where = self._recorder._reserve(len(batch))
        jobs = self._inner.enqueue(batch)
        self._recorder._record(where, batch, jobs)
        return jobs


class _QueueView:
    """The queue as seen by eager jobs: its tasks and config, the eager backend."""

    def __init__(self, queue: TaskQueue) -> None:
        self._real = queue
        self._backend: Backend | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class _Eager:
    """A backend that runs each job in this process and returns once it finished."""

    def __init__(self, inner: InProcessBackend, timeout: float) -> None:
        self._inner = inner
        self._timeout = timeout

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def enqueue(self, batch: Sequence[EnqueueSpec]) -> list[Job]:
        jobs = self._inner.enqueue(batch)
        for job in jobs:
            with contextlib.suppress(JobFailed, JobCancelled):  # stored on the job
                job.result(self._timeout)
        return jobs


@contextmanager
def capture(queue: TaskQueue) -> Iterator[Recorder]:
    """Records every job enqueued on ``queue`` inside the block (they are still stored)."""
    recorder = Recorder()
    original = queue._backend
    queue._backend = cast("Backend", _Recording(original, recorder))
    try:
        yield recorder
    finally:
        queue._backend = original


@contextmanager
def eager(queue: TaskQueue, *, timeout: float = 30.0) -> Iterator[Recorder]:
    """Runs every job enqueued on ``queue`` inside the block at once, in this process;
    each enqueue returns when its jobs finished (``TimeoutError`` after ``timeout``
    seconds). The jobs' results stay readable after the block."""
    view = _QueueView(queue)
    runner = InProcessBackend(cast("TaskQueue", view), InProcessSettings(drain_timeout=timeout))
    view._backend = runner
    recorder = Recorder()
    original = queue._backend
    recording = _Recording(cast("Backend", runner), recorder)
    queue._backend = cast("Backend", _Eager(cast("InProcessBackend", recording), timeout))
    try:
        yield recorder
    finally:
        queue._backend = original
        runner.drain()
