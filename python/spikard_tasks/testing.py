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
this process as it is enqueued and returns only once it finished. It runs the durable
engine's own code (an in-memory store of the block's own, claimed by an engine worker),
so arguments, results, retries (without backoff delays), ``Retry``/``Cancel`` and
timeouts behave as on a worker; nothing reaches the queue's backend. Both
restore the queue on exit and may be nested (an ``eager`` block inside a ``capture``
block records in both).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Literal, cast

from . import _native
from ._backend import Backend, DurableBackend, EnqueueSpec
from .config import Backoff, TaskQueueConfig
from .exceptions import ConfigError, UnknownTask
from .job import Job
from .queue import TaskQueue
from .task import Task
from .worker import Worker

#: Retries under eager() run at once.
_NO_BACKOFF = Backoff(initial=0.0, max=0.0, jitter=0.0)
#: Worker slots under eager(): jobs that enqueue (and so wait for) jobs need free slots.
_EAGER_CONCURRENCY = 32

__all__ = ["EnqueuedJob", "Recorder", "capture", "eager"]


@dataclasses.dataclass(frozen=True)
class EnqueuedJob:
    """One recorded enqueue: task name, JSON arguments, options and the job handle."""

    task: str
    args: list[Any]
    kwargs: dict[str, Any]
    options: dict[str, Any]
    job: Job[Any]


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
        jobs: Sequence[Job[Any]],
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

    def enqueue(self, batch: Sequence[EnqueueSpec]) -> list[Job[Any]]:
        where = self._recorder._reserve(len(batch))
        jobs = self._inner.enqueue(batch)
        self._recorder._record(where, batch, jobs)
        return jobs


class _EngineView:
    """The queue as the engine's worker sees it under :func:`eager`: the queue's tasks,
    on the eager block's own ``memory://`` store."""

    def __init__(self, config: TaskQueueConfig, queue: TaskQueue, engine: DurableBackend) -> None:
        self.config = config
        self._queue = queue
        self._engine = engine

    @property
    def tasks(self) -> Mapping[str, Task[Any, Any]]:
        return self._queue.tasks

    @property
    def native(self) -> _native.NativeQueue:
        return self._engine.native

    @property
    def middleware_chain(self) -> tuple[Any, ...]:
        return self._queue.middleware_chain

    @property
    def worker_hooks(self) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        return self._queue.worker_hooks


class _Eager:
    """A backend that stores each job in an in-memory engine store, lets an engine worker
    run it, and returns once it finished: the durable path's code from claim to outcome."""

    def __init__(self, queue: TaskQueue, timeout: float, immediate: bool) -> None:
        self._queue = queue
        self._timeout = timeout
        self._immediate = immediate
        backoff = _NO_BACKOFF if immediate else queue.config.backoff
        self.config = queue.config.replace(url="memory://", backoff=backoff)
        self.engine = DurableBackend(self.config, "memory", f"eager({queue!r})")
        self.kind = self.engine.kind
        self._view = _EngineView(self.config, queue, self.engine)
        self._workers: dict[str, Worker] = {}
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)

    def _worker_for(self, queue_name: str) -> None:
        with self._lock:
            if queue_name in self._workers:
                return
            worker = Worker(
                self._view,
                concurrency=max(self.config.concurrency, _EAGER_CONCURRENCY),
                queues=[queue_name],
                name=f"eager-{queue_name}",
            )
            worker.scheduler = False
            # Retries "immediate": the tasks' own backoffs do not apply either.
            worker.task_backoff = not self._immediate
            worker.start()
            self._workers[queue_name] = worker

    def enqueue(self, batch: Sequence[EnqueueSpec]) -> list[Job[Any]]:
        tasks = self._queue._tasks
        for name, _args, _kwargs, options in batch:
            if name not in tasks:
                known = ", ".join(sorted(tasks)) or "none"
                raise UnknownTask(
                    f"unknown task {name!r} (registered: {known}); eager() runs jobs in "
                    "this process, so their task must be registered here"
                )
            self._worker_for(options.get("queue") or self.config.queue)
        jobs = self.engine.enqueue(batch)
        for job in jobs:
            if self.engine.wait_info(job.id, self._timeout) is None:
                raise TimeoutError(f"eager job {job.id} did not finish within {self._timeout}s")
        return jobs

    def stop(self) -> None:
        with self._lock:
            workers = list(self._workers.values())
        for worker in workers:
            worker.stop()


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
def eager(
    queue: TaskQueue,
    *,
    timeout: float = 30.0,
    retries: Literal["immediate", "backoff"] = "immediate",
) -> Iterator[Recorder]:
    """Runs every job enqueued on ``queue`` inside the block at once, in this process,
    through the durable engine's own code path (an in-memory ``memory://`` store of the
    block's own, claimed by an engine worker running the queue's handlers, its
    middleware and its worker hooks): each enqueue returns when its jobs finished
    (``TimeoutError`` after ``timeout`` seconds). ``retries="immediate"`` (the default)
    runs retries without backoff delays, so failing tests do not sleep; ``"backoff"``
    waits as a worker would (the queue's and the tasks' backoffs). The jobs' results
    stay readable after the block; nothing reaches the queue's own backend."""
    if retries not in ("immediate", "backoff"):
        raise ConfigError(f"retries must be 'immediate' or 'backoff', not {retries!r}")
    recorder = Recorder()
    runner = _Eager(queue, timeout, retries == "immediate")
    original = queue._backend
    queue._backend = cast("Backend", _Recording(cast("Backend", runner), recorder))
    try:
        yield recorder
    finally:
        queue._backend = original
        runner.stop()
