"""``TaskQueue``: where tasks are registered and jobs are enqueued, looked up and run."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from . import _native, _otel
from ._arguments import ArgumentCheck
from ._backend import Backend, DurableBackend
from ._flow import QueuesArg
from ._normalize import as_args, as_kwargs, job_items, merge_options
from ._registry import TaskRegistry
from ._text import check_text
from .config import DEFAULT_URL, TaskQueueConfig, describe_url
from .cron import CronSchedule, ScheduleState
from .exceptions import ConfigError, JobCancelled, JobFailed, UnknownTask
from .job import Job, JobInfo
from .operations import Operations
from .pool.launch import processes_count, run_pool
from .task import Task
from .worker import Worker, running_workers

__all__ = ["TaskQueue"]


def _with_trace_context(options: dict[str, Any], context: str | None) -> dict[str, Any]:
    """``options`` plus the span's trace ``context``, when there is one (a copy: option
    dicts are shared between calls)."""
    if context is None or "trace_context" in options:
        return options
    return {**options, "trace_context": context}


class TaskQueue(TaskRegistry, Operations):
    """A task queue on one backend.

    ``TaskQueue()`` uses the embedded default, a SQLite file ``spikard_tasks.db`` in the
    current directory. ``TaskQueue("postgres://…")``, ``TaskQueue(TaskQueueConfig(...))``
    and ``TaskQueue(url, concurrency=8, ...)`` work too. The URL is validated here
    (``ConfigError``); the backend is opened on first use.

    The environment wins: each ``SPIKARD_TASKS_<FIELD>`` variable that is set
    (``SPIKARD_TASKS_URL``, ``SPIKARD_TASKS_CONCURRENCY``, …) overrides what the code
    says, so a deployment (or a test run: ``SPIKARD_TASKS_URL=memory:// pytest``)
    repoints a program without editing it. ``environment=False`` ignores the variables.
    The CLI's own options (``--url``, ``--concurrency``, …) win over both.
    """

    def __init__(
        self,
        url_or_config: str | TaskQueueConfig | Mapping[str, Any] | None = None,
        *,
        environment: bool = True,
        **options: Any,
    ) -> None:
        if url_or_config is None:
            config = TaskQueueConfig.from_dict(options)
        elif isinstance(url_or_config, str):
            config = TaskQueueConfig.from_dict({**options, "url": url_or_config})
        elif isinstance(url_or_config, TaskQueueConfig):
            config = url_or_config.replace(**options) if options else url_or_config
        elif isinstance(url_or_config, Mapping):
            config = TaskQueueConfig.from_dict({**url_or_config, **options})
        else:
            raise ConfigError(
                f"TaskQueue() takes a URL, a TaskQueueConfig or a dict, "
                f"not {type(url_or_config).__name__}"
            )
        env = TaskQueueConfig.env_values() if environment else {}
        if env:
            config = config.replace(**env)
        super().__init__()
        self.backend = _native.backend_kind(config.url)
        self.config = config
        if config.url == DEFAULT_URL and url_or_config is None and "url" not in env:
            self._default_note = " (embedded default)"
        else:
            self._default_note = ""
        self._backend: Backend
        if self.backend == "inprocess":
            from .inprocess.backend import InProcessBackend  # the fast path, loaded on use

            self._backend = InProcessBackend(
                config, self._tasks, middleware=lambda: self.middleware_chain
            )
        else:
            self._backend = DurableBackend(config, self.backend, repr(self))

    # -- backend -----------------------------------------------------------------------

    @property
    def native(self) -> _native.NativeQueue:
        """The native queue of a durable backend, opened (and its schema set up) on
        first use. An ``inprocess://`` queue has none (``ConfigError``)."""
        backend = self._backend
        if not isinstance(backend, DurableBackend):
            raise ConfigError(
                "an inprocess:// queue has no durable engine: its jobs live in the process "
                "that enqueued them"
            )
        return backend.native

    def open(self) -> None:
        """Opens the backend now rather than on first use: a durable queue connects
        (``ConfigError``/``BackendError`` surface here); ``inprocess://`` has nothing
        to open (its runtime starts on the first enqueue)."""
        if isinstance(self._backend, DurableBackend):
            _ = self._backend.native

    def close(self) -> None:
        """Stops what this queue started in this process — its running workers drain
        for up to their ``drain_timeout``, an ``inprocess://`` runtime drains — and
        closes every connection the queue opened. Idempotent. Afterwards a durable
        queue raises ``RuntimeShutDown`` on any call that needs its backend.
        ``with TaskQueue(...) as queue:`` and ``async with`` close it on exit."""
        for worker in running_workers(self):
            worker.stop()
        self._backend.close()

    async def aclose(self) -> None:
        """Awaitable twin of :meth:`close` (runs it off the event loop)."""
        await asyncio.get_running_loop().run_in_executor(None, self.close)

    def __enter__(self) -> TaskQueue:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    async def __aenter__(self) -> TaskQueue:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    @property
    def is_durable(self) -> bool:
        """``False`` for ``inprocess://`` (the fast path), ``True`` for every other URL."""
        return isinstance(self._backend, DurableBackend)

    @property
    def name(self) -> str:
        """The queue name."""
        return self.config.queue

    def __repr__(self) -> str:
        return (
            f"TaskQueue(url={describe_url(self.config.url)!r}{self._default_note}, "
            f"queue={self.config.queue!r})"
        )

    # -- enqueue -----------------------------------------------------------------------

    def _check_task(self, name: str, strict: bool) -> None:
        if strict and name not in self._tasks:
            known = ", ".join(sorted(self._tasks)) or "none"
            raise UnknownTask(
                f"unknown task {name!r} (registered: {known}); pass strict=False to "
                "enqueue a task this process does not import"
            )

    def _enqueue_one(
        self, name: str, args: list[Any], kwargs: dict[str, Any], options: dict[str, Any]
    ) -> Job[Any]:
        if _otel.available() and self.is_durable:
            options = _with_trace_context(options, _otel.current_trace_context())
        return self._backend.enqueue([(name, args, kwargs, options)])[0]

    def enqueue(
        self,
        task: str | Task[Any, Any],
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        *,
        strict: bool = True,
        **options: Any,
    ) -> Job[Any]:
        """Enqueues a job of ``task`` (a name or a ``Task``) by name.

        Raises ``UnknownTask`` for a name not registered here, and ``InvalidArguments``
        (a ``TypeError``) for arguments that do not fit its handler's signature, unless
        ``strict=False`` (which checks neither). Options as in ``Task.enqueue``. With a
        ``unique_key`` whose job is not finished, returns that job.
        """
        name, defaults, check = self._resolve_task(task, strict)
        merged = merge_options(defaults, options)
        call_args, call_kwargs = as_args(args), as_kwargs(kwargs)
        if check is not None:
            check.check(call_args, call_kwargs)
        return self._enqueue_one(name, call_args, call_kwargs, merged)

    def enqueue_many(
        self, jobs: Iterable[Mapping[str, Any] | tuple[Any, ...]], *, strict: bool = True
    ) -> list[Job[Any]]:
        """Enqueues many jobs in one transaction (all or nothing); returns them in order.

        Each item is ``{"task": name, "args": [...], "kwargs": {...}, **options}`` or a
        ``(task, args, kwargs)`` tuple.
        """
        batch: list[tuple[str, list[Any], dict[str, Any], dict[str, Any]]] = []
        # Each task name is resolved once per call, not once per job.
        resolved: dict[Any, tuple[str, dict[str, Any], ArgumentCheck | None]] = {}
        for item in job_items(jobs):
            # `type(...) is dict` first: the Mapping check goes through the ABC machinery.
            if type(item) is dict or isinstance(item, Mapping):
                spec = dict(item)
                if "task" not in spec:
                    raise ConfigError("each job needs a 'task'")
                task = spec.pop("task")
                args = spec.pop("args", None)
                kwargs = spec.pop("kwargs", None)
                options = spec
            elif isinstance(item, tuple) and 1 <= len(item) <= 3:
                task, args, kwargs = (*item, None, None)[:3]
                options = {}
            else:
                raise ConfigError(
                    "enqueue_many takes dicts {'task', 'args', 'kwargs', ...options} "
                    "or (task, args, kwargs) tuples"
                )
            if type(task) is str:
                hit = resolved.get(task)
                if hit is None:
                    hit = resolved[task] = self._resolve_task(task, strict)
            else:
                hit = self._resolve_task(task, strict)
            name, defaults, check = hit
            call_args, call_kwargs = as_args(args), as_kwargs(kwargs)
            if check is not None:
                check.check(call_args, call_kwargs)
            batch.append((name, call_args, call_kwargs, merge_options(defaults, options)))
        if not batch:
            return []
        if _otel.available() and self.is_durable:
            context = _otel.current_trace_context()  # once for the whole batch
            batch = [(n, a, k, _with_trace_context(o, context)) for n, a, k, o in batch]
        return self._backend.enqueue(batch)

    async def aenqueue(
        self,
        task: str | Task[Any, Any],
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        *,
        strict: bool = True,
        **options: Any,
    ) -> Job[Any]:
        """Awaitable twin of :meth:`enqueue`."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            None, lambda: self.enqueue(task, args, kwargs, strict=strict, **options)
        )

    async def aenqueue_many(
        self, jobs: Iterable[Mapping[str, Any] | tuple[Any, ...]], *, strict: bool = True
    ) -> list[Job[Any]]:
        """Awaitable twin of :meth:`enqueue_many`."""
        items = list(job_items(jobs))
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, lambda: self.enqueue_many(items, strict=strict))

    def _resolve_task(
        self, task: Any, strict: bool
    ) -> tuple[str, dict[str, Any], ArgumentCheck | None]:
        """The task's name, default options and, when its arguments are to be checked
        (a task registered here, ``strict``), its argument check."""
        if isinstance(task, Task):
            return task.name, task.defaults, task.arguments if strict else None
        if not isinstance(task, str):
            raise ConfigError(f"task must be a name or a Task, not {type(task).__name__}")
        check_text("task name", task)
        self._check_task(task, strict)
        registered = self._tasks.get(task)
        if registered is None:
            return task, {}, None
        return task, registered.defaults, registered.arguments if strict else None

    # -- lookup ------------------------------------------------------------------------

    def _job_info(self, job_id: str) -> JobInfo | None:
        backend = self._backend
        if isinstance(backend, DurableBackend):
            return backend.info_by_id(job_id)
        job = backend.get_job(job_id)
        return None if job is None else backend.info(job)

    def _wait(self, job_id: str, timeout: float | None) -> JobInfo | None:
        """Waits for a job to finish; its snapshot, or ``None`` on timeout."""
        backend = self._backend
        if isinstance(backend, DurableBackend):
            return backend.wait_info(job_id, timeout)
        job = backend.get_job(job_id)
        if job is None:
            return None
        try:
            job.result(timeout)
        except (JobFailed, JobCancelled):
            pass
        except TimeoutError:
            return None
        return backend.info(job)

    def get_job(self, job_id: str) -> Job[Any] | None:
        """The job with this id, or ``None`` if there is none (on ``inprocess://``:
        among this process' jobs, see :mod:`spikard_tasks.inprocess`)."""
        return self._backend.get_job(job_id)

    async def aget_job(self, job_id: str) -> Job[Any] | None:
        """Awaitable twin of :meth:`get_job`."""
        return await asyncio.get_running_loop().run_in_executor(None, self.get_job, job_id)

    def cancel(self, job_id: str) -> bool:
        """Cancels a job that has not started, or asks a running one to stop (an
        ``async def`` handler is cancelled). ``False`` for finished or unknown jobs."""
        return self._backend.cancel(job_id)

    async def acancel(self, job_id: str) -> bool:
        """Awaitable twin of :meth:`cancel`."""
        return await asyncio.get_running_loop().run_in_executor(None, self.cancel, job_id)

    def counts(self, queue: str | None = None) -> dict[str, int]:
        """Job counts per state in this queue (or ``queue``). On ``inprocess://``: the
        jobs of this process, all queue names together, since the queue was created.
        :meth:`stats` has every queue's counts, and more."""
        return self._backend.counts(queue)

    # -- workers -----------------------------------------------------------------------

    def worker(
        self,
        concurrency: int | None = None,
        *,
        queues: QueuesArg | None = None,
        name: str | None = None,
        drain_timeout: float | None = None,
        scheduler: bool = True,
    ) -> Worker:
        """A worker running in this process, in the background. Use it as a context
        manager (``with`` or ``async with``): it starts on entry and drains on exit.
        It also runs the cron scheduler unless ``scheduler=False``. It consumes exactly
        ``queues`` when given, else this queue's own (``config.queue``); a mapping gives
        each queue its concurrency in this worker (``{"emails": 4, "reports": 1}``;
        ``None``: no cap of its own), and ``concurrency`` is then the total (by default
        the sum when every queue has a number).

        On ``inprocess://`` jobs run without a worker; this one keeps the same program
        working unchanged: it starts the queue's runtime and its exit drains it
        (``concurrency`` and the list of ``queues`` do not apply there; the numbers of a
        mapping do, as caps on the jobs of those queue names running at once).
        """
        worker = self._new_worker(concurrency, queues, name, drain_timeout)
        worker.scheduler = scheduler
        return worker

    def _new_worker(
        self,
        concurrency: int | None,
        queues: QueuesArg | None,
        name: str | None,
        drain_timeout: float | None,
    ) -> Worker:
        backend = self._backend
        if self.backend == "inprocess":
            from .inprocess.backend import InProcessBackend
            from .inprocess.worker import InProcessWorker

            assert isinstance(backend, InProcessBackend)
            return InProcessWorker(
                self,
                backend,
                concurrency=concurrency,
                queues=queues,
                name=name,
                drain_timeout=drain_timeout,
            )
        return Worker(
            self, concurrency=concurrency, queues=queues, name=name, drain_timeout=drain_timeout
        )

    def run_worker(
        self,
        concurrency: int | None = None,
        *,
        queues: QueuesArg | None = None,
        name: str | None = None,
        drain_timeout: float | None = None,
        scheduler: bool = True,
        processes: int | str = 1,
        app: str | None = None,
        max_jobs_per_child: int | None = None,
        max_memory_per_child: float | None = None,
    ) -> dict[str, int]:
        """Runs a worker until SIGINT/SIGTERM, then drains gracefully; returns its report
        (on ``inprocess://``: blocks while the runtime runs jobs, then drains it). It also
        runs the cron scheduler unless ``scheduler=False``. ``queues``: as in :meth:`worker`.

        ``processes=N`` (or ``"auto"``: one per CPU) runs N worker processes under a
        supervisor, as ``spikard-tasks worker --processes N`` does; each imports this queue
        from ``app`` (``"module:queue"``), by default from the module-level global holding
        it (``ConfigError`` when there is none). ``max_jobs_per_child`` /
        ``max_memory_per_child`` (MB of RSS) replace a child past them (even with one
        process). The report then sums the children's."""
        count = processes_count(processes)
        if count > 1 or max_jobs_per_child is not None or max_memory_per_child is not None:
            return run_pool(
                self,
                count,
                app=app,
                concurrency=concurrency,
                queues=queues,
                name=name,
                drain_timeout=drain_timeout,
                scheduler=scheduler,
                max_jobs_per_child=max_jobs_per_child,
                max_memory_per_child=max_memory_per_child,
            )
        worker = self._new_worker(concurrency, queues, name, drain_timeout)
        worker.scheduler = scheduler
        return worker.run_forever()

    # -- cron --------------------------------------------------------------------------

    def _durable_for_cron(self) -> _native.NativeQueue:
        if not self.is_durable:
            raise ConfigError(
                "cron schedules need a durable backend: inprocess:// keeps nothing, so "
                "it cannot promise one job per tick across processes"
            )
        return self.native

    def schedule(self, schedule: CronSchedule, *, strict: bool = True) -> CronSchedule:
        """Stores ``schedule`` (replacing one of the same name): from then on, one job per
        tick, across any number of schedulers. Idempotent: safe at import time in every
        process. Its jobs go to this queue unless it names another. Raises
        ``UnknownTask`` for a task not registered here unless ``strict=False``."""
        native = self._durable_for_cron()
        self._check_task(str(schedule.task), strict)
        if schedule.queue is None:
            schedule = dataclasses.replace(schedule, queue=self.config.queue)
        native.save_schedule(schedule.to_json())
        return schedule

    def unschedule(self, name: str) -> bool:
        """Removes the schedule ``name``; ``False`` if there was none."""
        return self._durable_for_cron().remove_schedule(name)

    def schedules(self) -> list[ScheduleState]:
        """Every stored schedule with its last and next run."""
        return [ScheduleState.from_record(r) for r in self._durable_for_cron().schedules()]

    def run_scheduler(self) -> None:
        """Runs only the cron scheduler until SIGINT/SIGTERM (``spikard-tasks scheduler``)."""
        native = self._durable_for_cron().start_scheduler()
        stop = threading.Event()
        restore: dict[signal.Signals, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                restore[sig] = signal.signal(sig, lambda *_: stop.set())
        try:
            while not stop.wait(0.5):
                pass
        finally:
            native.stop()
            for sig, handler in restore.items():
                signal.signal(sig, handler)
