"""``InProcessBackend``: a ``TaskQueue``'s jobs on a ``BackgroundRuntime`` of its own
(the ``inprocess://`` fast path; see :mod:`spikard_tasks.inprocess`)."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .. import _otel
from .._backend import EnqueueSpec
from .._chain import task_runner
from ..config import Backoff, TaskQueueConfig
from ..exceptions import RuntimeShutDown, UnknownTask
from ..job import Job, JobInfo
from ..status import JobStatus
from ..task import Task
from .limits import LocalLimits
from .meta import STATUS, JobMeta, job_info
from .ops import InProcessOps, WorkerEntry
from .rules import json_args, json_kwargs, json_runner, retry_policy
from .runtime import BackgroundRuntime, DrainReport
from .runtime_job import RetryPolicy, RuntimeJob
from .settings import SCHEME as _SCHEME
from .settings import InProcessSettings, check_config

__all__ = ["InProcessBackend"]


class _Plan:
    """How jobs of one task run with one set of options (cached per task while the
    same options dict comes back, as with ``Task.delay``)."""

    __slots__ = (
        "delay",
        "max_attempts",
        "priority",
        "queue",
        "retry",
        "run_at_ms",
        "runner",
        "timeout",
        "unique_key",
    )

    def __init__(
        self, runner: Callable[..., Any], options: dict[str, Any], config: TaskQueueConfig
    ) -> None:
        self.runner = runner
        self.max_attempts: int = options.get("max_attempts", config.max_attempts)
        self.priority: int = options.get("priority", config.default_priority)
        self.delay: float | None = options.get("delay")
        self.run_at_ms: int | None = options.get("run_at_ms")
        self.timeout: float | None = options.get("timeout")
        self.queue: str = options.get("queue", config.queue)
        self.unique_key: str | None = options.get("unique_key")
        self.retry: RetryPolicy | None = None


class InProcessBackend(InProcessOps):
    """Runs a ``TaskQueue``'s jobs on a :class:`BackgroundRuntime` of its own.

    The runtime starts on first use; stopping the queue's worker drains it, and the next
    enqueue starts a fresh one. Jobs are looked up by id among this process' jobs.
    """

    kind = "inprocess"

    def __init__(
        self,
        config: TaskQueueConfig,
        tasks: Mapping[str, Task[Any, Any]],
        settings: InProcessSettings | None = None,
        middleware: Callable[[], Sequence[Callable[..., Any]]] = tuple,
    ) -> None:
        check_config(config)
        self.settings = settings or InProcessSettings.from_url(config.url, config.drain_timeout)
        self._config = config
        #: The queue's registry (its own dict, read live: tasks registered later count).
        self._tasks = tasks
        #: The queue's middleware, read at each (cached) plan.
        self._middleware = middleware
        self._lock = threading.Lock()  # the runtime slot and unique keys
        self._runtime: BackgroundRuntime | None = None
        self._draining: list[BackgroundRuntime] = []
        self._retired = {"succeeded": 0, "failed": 0, "cancelled": 0, "retried": 0}
        self._jobs: weakref.WeakValueDictionary[str, RuntimeJob[Any]] = (
            weakref.WeakValueDictionary()
        )
        self._recent: deque[RuntimeJob[Any]] = deque(maxlen=self.settings.keep_results)
        self._unique: dict[str, RuntimeJob[Any]] = {}
        self._paused: set[str] = set()  # queue names whose jobs do not start
        self._flow = LocalLimits()  # rate limits and caps of tasks and queue names
        self._workers: dict[str, WorkerEntry] = {}
        # Per task name: (options dict, handler and middleware, plan) of the latest enqueue.
        self._plans: dict[str, tuple[dict[str, Any], tuple[Any, ...], _Plan]] = {}
        self._policies: dict[tuple[int, Backoff], RetryPolicy | None] = {}
        prefix = uuid.uuid4().hex
        self._id_prefix = f"{prefix[:8]}-{prefix[8:12]}-{prefix[12:16]}-{prefix[16:20]}-"
        self._ids = itertools.count(1)

    # -- the runtime -------------------------------------------------------------------

    def runtime(self) -> BackgroundRuntime:
        """The current runtime (created, not necessarily started, on first use)."""
        runtime = self._runtime
        if runtime is None or runtime.closed:
            with self._lock:
                runtime = self._runtime
                if runtime is None or runtime.closed:
                    s = self.settings
                    runtime = BackgroundRuntime(
                        max_queue_size=s.max_queue_size,
                        max_concurrent_tasks=s.max_concurrent_tasks,
                        drain_timeout=s.drain_timeout,
                        name=f"spikard-tasks-{self._config.queue}",
                    )
                    self._install_gate(runtime._ex)
                    self._runtime = runtime
        return runtime

    def start(self) -> BackgroundRuntime:
        """Starts the runtime now (it starts on the first enqueue otherwise)."""
        runtime = self.runtime()
        runtime.start()
        return runtime

    def close(self) -> None:
        """Drains the current runtime (for up to ``drain_timeout``); idempotent."""
        self.drain()

    def drain(self, timeout: float | None = None) -> DrainReport:
        """Shuts the current runtime down (stop accepting, finish work for up to
        ``timeout`` or ``drain_timeout`` seconds); the next enqueue starts a new one."""
        with self._lock:
            runtime = self._runtime
            self._runtime = None
            if runtime is None:
                return DrainReport()
            self._draining.append(runtime)
        try:
            return runtime.shutdown(self.settings.drain_timeout if timeout is None else timeout)
        finally:
            stats = runtime.stats
            with self._lock:
                self._draining.remove(runtime)
                for key in self._retired:
                    self._retired[key] += getattr(stats, key)

    def totals(self) -> dict[str, int]:
        """Counters summed over every runtime of this queue: ``queued``, ``scheduled``,
        ``running``, ``retrying``, ``succeeded``, ``failed``, ``cancelled``, ``retried``."""
        with self._lock:
            runtimes = [*self._draining, *([self._runtime] if self._runtime else [])]
            out = {"queued": 0, "scheduled": 0, "running": 0, "retrying": 0, **self._retired}
        for runtime in runtimes:
            stats = runtime.stats
            for key in out:
                out[key] += getattr(stats, key)
        return out

    # -- enqueue -----------------------------------------------------------------------

    def enqueue(self, batch: Sequence[EnqueueSpec]) -> list[Job[Any]]:
        """Hands the jobs to the runtime: all of them, or none (``QueueFull``)."""
        prepared = [self._prepare(*spec) for spec in batch]
        for attempt in (1, 2):
            runtime = self.runtime()
            jobs = [self._build(runtime, *item) for item in prepared]
            try:
                accepted = self._admit(runtime, jobs)
            except RuntimeShutDown:  # the worker drained this runtime just now
                if attempt == 2:
                    raise
                continue
            return [Job(self, job.id, job) for job in accepted]
        raise AssertionError("unreachable")  # pragma: no cover

    def _prepare(
        self, name: str, args: list[Any], kwargs: dict[str, Any], options: dict[str, Any]
    ) -> tuple[_Plan, str, list[Any], dict[str, Any]]:
        """Checks one job (registered task, JSON arguments) and finds its plan."""
        task = self._tasks.get(name)
        if task is None:
            known = ", ".join(sorted(self._tasks)) or "none"
            raise UnknownTask(
                f"unknown task {name!r} (registered: {known}); an {_SCHEME} queue runs "
                "jobs in this process, so their task must be registered here"
            )
        cached = self._plans.get(name)
        code: tuple[Any, ...] = (task, *self._middleware())
        if cached is None or cached[0] is not options or cached[1] != code:
            if cached is not None and cached[1] == code:
                runner = cached[2].runner
            else:
                run = task_runner(task, code[1:], self._loop, tracing=_otel.available())
                runner = json_runner(run, task.is_async)
            plan = _Plan(runner, options, self._config)
            plan.retry = self._policy(plan.max_attempts, task.backoff or self._config.backoff)
            cached = self._plans[name] = (options, code, plan)
            if task.rate_limit is not None or task.max_running is not None:
                self.set_limit("task", name, task.rate_limit, task.max_running)
        return cached[2], name, json_args(args), json_kwargs(kwargs)

    def _policy(self, max_attempts: int, backoff: Backoff) -> RetryPolicy | None:
        key = (max_attempts, backoff)
        if key not in self._policies:
            self._policies[key] = retry_policy(max_attempts, backoff)
        return self._policies[key]

    def _loop(self) -> asyncio.AbstractEventLoop | None:
        """The runtime's event loop (where an async middleware of a sync handler runs)."""
        runtime = self._runtime
        return None if runtime is None else runtime._ex._loop

    def _build(
        self,
        runtime: BackgroundRuntime,
        plan: _Plan,
        name: str,
        args: list[Any],
        kwargs: dict[str, Any],
    ) -> RuntimeJob[Any]:
        """The runtime job (not accepted yet)."""
        delay = plan.delay
        if plan.run_at_ms is not None:
            delay = max(plan.run_at_ms / 1000.0 - time.time(), 0.0)
        return runtime._new_job(
            plan.runner,
            args,
            kwargs,
            name,
            None,
            job_id=f"{self._id_prefix}{next(self._ids):012x}",
            priority=plan.priority,
            delay=delay,
            timeout=plan.timeout,
            retry=plan.retry,
            meta=JobMeta(name, plan.queue, args, kwargs, plan.max_attempts, plan.unique_key, plan),
        )

    def _admit(
        self, runtime: BackgroundRuntime, jobs: list[RuntimeJob[Any]]
    ) -> list[RuntimeJob[Any]]:
        """Submits ``jobs``; a ``unique_key`` whose job is unfinished yields that job."""
        if not any(job._meta.unique_key for job in jobs):
            runtime._admit(jobs)
            fresh = jobs
            accepted = jobs
        else:
            with self._lock:
                accepted, fresh, keyed = self._dedupe_locked(jobs)
                runtime._admit(fresh)
                self._unique.update(keyed)
                if len(self._unique) > 2 * self.settings.max_queue_size + 1024:
                    self._unique = {k: j for k, j in self._unique.items() if not j.done()}
        registry = self._jobs
        recent = self._recent
        for job in fresh:
            registry[job.id] = job
            recent.append(job)
        return accepted

    def _dedupe_locked(
        self, jobs: list[RuntimeJob[Any]]
    ) -> tuple[list[RuntimeJob[Any]], list[RuntimeJob[Any]], dict[str, RuntimeJob[Any]]]:
        accepted: list[RuntimeJob[Any]] = []
        fresh: list[RuntimeJob[Any]] = []
        keyed: dict[str, RuntimeJob[Any]] = {}
        for job in jobs:
            key = job._meta.unique_key
            if key is not None:
                existing = keyed.get(key) or self._unique.get(key)
                if existing is not None and not existing.done():
                    accepted.append(existing)
                    continue
                keyed[key] = job
            fresh.append(job)
            accepted.append(job)
        return accepted, fresh, keyed

    # -- lookup ------------------------------------------------------------------------

    def _find(self, job: Job[Any]) -> RuntimeJob[Any] | None:
        found = self._jobs.get(job.id)  # first: a retried job runs under a new handle
        if found is None and isinstance(job._handle, RuntimeJob):
            return job._handle
        return found

    def info(self, job: Job[Any]) -> JobInfo | None:
        """A snapshot of the job (``None`` if it is not known in this process)."""
        found = self._find(job)
        return None if found is None else job_info(found)

    def status(self, job: Job[Any]) -> JobStatus:
        """The job's state."""
        found = self._find(job)
        if found is None:
            raise LookupError(f"job {job.id} is not a job of this process (or expired)")
        return STATUS[found.status()]

    def result(self, job: Job[Any], timeout: float | None) -> Any:
        """Waits on the job itself (no polling)."""
        found = self._find(job)
        if found is None:
            raise LookupError(f"job {job.id} is not a job of this process (or expired)")
        return found.result(timeout)

    async def wait(self, job: Job[Any], timeout: float | None) -> Any:
        """Awaits the job without blocking the caller's event loop."""
        found = self._find(job)
        if found is None:
            raise LookupError(f"job {job.id} is not a job of this process (or expired)")
        return await found.wait(timeout)

    def get_job(self, job_id: str) -> Job[Any] | None:
        """The job with this id among this process' jobs, or ``None``."""
        found = self._jobs.get(job_id)
        return None if found is None else Job(self, job_id, found)

    def cancel(self, job_id: str) -> bool:
        """Cancels a job of this process (see ``RuntimeJob.cancel``)."""
        found = self._jobs.get(job_id)
        return False if found is None else found.cancel()

    def counts(self, queue: str | None) -> dict[str, int]:
        """Job counts per state over this queue's runtimes since the queue was created
        (every queue name: all jobs run on the one runtime)."""
        totals = self.totals()
        return {
            "pending": totals["queued"],
            "scheduled": totals["scheduled"],
            "running": totals["running"],
            "retrying": totals["retrying"],
            "succeeded": totals["succeeded"],
            "failed": totals["failed"],
            "cancelled": totals["cancelled"],
        }
