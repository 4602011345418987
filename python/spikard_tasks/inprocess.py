"""``inprocess://``: the fast path of ``TaskQueue`` — the same tasks, run in this process.

``TaskQueue("inprocess://?max_queue_size=1024&max_concurrent_tasks=128&drain_timeout=30")``
runs the queue's ``@queue.task`` handlers on a :class:`~spikard_tasks.BackgroundRuntime`
owned by the queue and started on first use. ``.delay()``, ``.enqueue()``,
``queue.enqueue(name, ...)`` and ``enqueue_many`` hand the job to the runtime at once; no
worker is needed. Nothing is persisted: jobs exist only in this process, and jobs not
finished when it exits are lost (the runtime drains for ``drain_timeout`` at exit).

URL options (all optional; an unknown key or a bad number raises ``ConfigError``):

``max_queue_size`` (1024)
    Unfinished jobs beyond the running ones that the queue accepts; one more enqueue
    raises :class:`~spikard_tasks.QueueFull` at once (never blocks). Scheduled and
    retrying jobs count too.
``max_concurrent_tasks`` (128)
    Handlers running at once (sync ones run on a thread pool of this size, ``async def``
    ones on the runtime's event loop). The worker's ``concurrency`` does not apply here.
``drain_timeout`` (the config's ``drain_timeout``, 30 s)
    How long stopping the worker (or exiting the process) waits for unfinished jobs.
``keep_results`` (10000)
    How many of the latest jobs stay findable by id (``queue.get_job``,
    ``queue.cancel``) after they finished; a job is also findable while any ``Job``
    handle of it is alive, and always while it is unfinished.

What each enqueue option does here (the same checks as on the durable path apply first):

* ``priority`` — honoured: higher runs first among queued jobs.
* ``delay`` / ``run_at`` — honoured with a timer on the runtime's loop: the job is
  ``scheduled`` and never starts before its time; it is lost if the process ends first.
* ``max_attempts`` (and the config's ``max_attempts`` and ``backoff``, and
  ``raise Retry(after=...)``) — honoured within this process: a failed attempt makes the
  job ``retrying`` and it runs again after its backoff. A retry cannot outlive the
  process (there is no retry after a restart).
* ``timeout`` — honoured: an ``async def`` handler is cancelled at the deadline; a sync
  handler cannot be interrupted (on either path), so its attempt fails with
  ``TimeoutError`` when it returns late.
* ``unique_key`` — honoured among the jobs of this process: while a job with that key is
  unfinished, enqueueing the key again returns that job.
* ``queue`` — recorded on the job (``job.info().queue``); every job of an
  ``inprocess://`` queue runs on its one runtime, whatever its queue name.
* ``strict=False`` with a task this process does not register raises ``UnknownTask``: no
  other process could run it.

Arguments and results follow the durable path's JSON rules: a non-JSON argument raises
``SerializationError`` at the enqueue call, handlers receive JSON-decoded copies (tuples
become lists), and a result that is not JSON fails the job without a retry.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import random
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from . import _native
from ._runtime_job import RetryPolicy, RuntimeJob, _utc
from .config import Backoff, TaskQueueConfig
from .exceptions import ConfigError, Retry, RuntimeShutDown, SerializationError, UnknownTask
from .job import Job, JobInfo
from .runtime import BackgroundRuntime, DrainReport
from .status import JobStatus

if TYPE_CHECKING:
    from ._backend import EnqueueSpec
    from .queue import TaskQueue
    from .worker import Worker

__all__ = ["InProcessBackend", "InProcessSettings", "backoff_delay", "retry_policy"]

_SCHEME = "inprocess://"
_I64_MIN = -(2**63)
_U64_MAX = 2**64 - 1
_STATUS = {status.value: status for status in JobStatus}


@dataclasses.dataclass(frozen=True)
class InProcessSettings:
    """The options of an ``inprocess://`` URL (see the module documentation)."""

    max_queue_size: int = 1024
    max_concurrent_tasks: int = 128
    drain_timeout: float = 30.0
    keep_results: int = 10_000

    @classmethod
    def from_url(cls, url: str, drain_timeout: float = 30.0) -> InProcessSettings:
        """Parses ``inprocess://[?key=value&...]``; ``ConfigError`` names a bad part.

        ``drain_timeout`` is the default when the URL does not set one.
        """
        if not url.startswith(_SCHEME):
            raise ConfigError(f"an in-process URL is written {_SCHEME}[?key=value&...]")
        where, _, query = url[len(_SCHEME) :].partition("?")
        if where:
            shown = _native.redact_url(url)
            raise ConfigError(f"{_SCHEME} takes no host or path, got {shown!r}")
        names = [f.name for f in dataclasses.fields(cls)]
        values: dict[str, Any] = {"drain_timeout": drain_timeout}
        seen: set[str] = set()
        for item in query.split("&") if query else ():
            raw_key, sep, raw_value = item.partition("=")
            key, value = unquote(raw_key), unquote(raw_value)
            if not sep or not key:
                raise ConfigError(f"malformed option {item!r} in {_SCHEME} URL (want key=value)")
            if key not in names:
                raise ConfigError(f"unknown {_SCHEME} option {key!r} (known: {', '.join(names)})")
            if key in seen:
                raise ConfigError(f"{_SCHEME} option {key!r} is given twice")
            seen.add(key)
            values[key] = _parse_option(key, value)
        return cls(**values)


def _parse_option(key: str, value: str) -> int | float:
    if key == "drain_timeout":
        try:
            seconds = float(value)
        except ValueError:
            seconds = math.nan
        if not math.isfinite(seconds) or seconds < 0:
            raise ConfigError(
                f"{_SCHEME} option drain_timeout={value!r} must be a non-negative number of seconds"
            )
        return seconds
    low = 0 if key == "keep_results" else 1
    try:
        number = int(value)
    except ValueError:
        number = low - 1
    if number < low:
        kind = "a non-negative" if low == 0 else "a positive"
        raise ConfigError(f"{_SCHEME} option {key}={value!r} must be {kind} integer")
    return number


def _check_config(config: TaskQueueConfig) -> None:
    """The checks the native engine makes on a config, for the fields used here."""
    if not 1 <= len(config.queue) <= 200:
        raise ConfigError("queue name must be 1 to 200 characters")
    attempts = config.max_attempts
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        raise ConfigError("max_attempts must be at least 1")
    priority = config.default_priority
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise ConfigError("default_priority must be an integer")
    b = config.backoff
    numbers = (b.initial, b.max, b.multiplier, b.jitter)
    if not (
        all(isinstance(v, (int, float)) and math.isfinite(v) for v in numbers)
        and b.initial >= 0
        and b.max >= 0
        and b.multiplier >= 1
        and 0 <= b.jitter <= 1
    ):
        raise ConfigError(
            f"invalid backoff {b!r}: initial and max >= 0, multiplier >= 1, jitter in [0, 1]"
        )
    drain = config.drain_timeout
    if not isinstance(drain, (int, float)) or not math.isfinite(drain) or drain < 0:
        raise ConfigError("drain_timeout must be a non-negative number of seconds")


# -- JSON: the durable path's rules --------------------------------------------------


#: Set on an exception that a retry cannot fix (a result that is not JSON).
_NO_RETRY = "_spikard_no_retry"


def _is_json_scalar(value: Any) -> bool:
    """A value that is its own JSON copy: ``None``, ``bool``, ``str``, a 64-bit ``int``
    or a finite ``float`` (exact types; subclasses take the full JSON path)."""
    kind = type(value)
    if (kind is str and value.isascii()) or kind is bool or value is None:
        return True
    if kind is int:
        return bool(_I64_MIN <= value <= _U64_MAX)
    return kind is float and math.isfinite(value)


def _roundtrip(what: str, value: Any) -> Any:
    """A JSON-decoded copy of ``value``; the error names ``what`` like the engine's."""
    try:
        text = _native.to_json(value)
    except SerializationError as exc:
        message = str(exc)
        if message.startswith("value"):
            message = what + message[len("value") :]
        error = SerializationError(message)
        if what == "result":
            setattr(error, _NO_RETRY, True)
        raise error from None
    return json.loads(text)


def _json_args(args: list[Any]) -> list[Any]:
    """``args`` if every item is a JSON scalar (the list is already the caller's copy),
    else a JSON-decoded copy (``SerializationError`` for anything that is not JSON)."""
    for value in args:
        kind = type(value)
        # A non-ASCII str takes the full path: a lone surrogate is not JSON.
        if (
            (kind is str and value.isascii())
            or kind is bool
            or value is None
            or (kind is int and _I64_MIN <= value <= _U64_MAX)
            or (kind is float and math.isfinite(value))
        ):
            continue
        copied: list[Any] = _roundtrip("args", args)
        return copied
    return args


def _json_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``kwargs`` under the same rules as :func:`_json_args`."""
    if not kwargs:
        return {}
    for key, value in kwargs.items():
        if type(key) is not str or not key.isascii() or not _is_json_scalar(value):
            copied: dict[str, Any] = _roundtrip("kwargs", kwargs)
            return copied
    return dict(kwargs)


def _json_result(value: Any) -> Any:
    if _is_json_scalar(value):
        return value
    return _roundtrip("result", value)


def _runner(fn: Callable[..., Any], is_async: bool) -> Callable[..., Any]:
    """Wraps a handler so that its result is checked and copied as JSON."""
    if is_async:

        async def run_async(*args: Any, **kwargs: Any) -> Any:
            return _json_result(await fn(*args, **kwargs))

        return run_async

    def run(*args: Any, **kwargs: Any) -> Any:
        return _json_result(fn(*args, **kwargs))

    return run


# -- retries --------------------------------------------------------------------------


def backoff_delay(backoff: Backoff, failed_attempts: int) -> float:
    """Seconds to wait after ``failed_attempts`` failures (the engine's formula):
    ``min(max, initial * multiplier ** (n - 1))``, spread by ``± jitter``."""
    exponent = min(max(failed_attempts - 1, 0), 64)
    try:
        base = min(backoff.initial * backoff.multiplier**exponent, backoff.max)
    except OverflowError:
        base = backoff.max
    if backoff.jitter <= 0 or base <= 0:
        return float(base)
    spread = random.uniform(-1.0, 1.0)
    return float(min(max(base * (1.0 + backoff.jitter * spread), 0.0), backoff.max))


def retry_policy(max_attempts: int, backoff: Backoff) -> RetryPolicy | None:
    """The durable path's retry rules as a runtime retry policy (``None``: one attempt).

    ``Retry(after=...)`` waits that long; a result that is not JSON is not retried; any
    other exception waits for the backoff; no retry once ``max_attempts`` ran.
    """
    if max_attempts <= 1:
        return None

    def policy(exc: BaseException, attempt: int) -> float | None:
        if attempt >= max_attempts or getattr(exc, _NO_RETRY, False):
            return None
        if isinstance(exc, Retry):
            return exc.after
        return backoff_delay(backoff, attempt)

    return policy


# -- the backend ----------------------------------------------------------------------


class _Meta:
    """What a job of an ``inprocess://`` queue keeps besides the runtime's own fields."""

    __slots__ = ("args", "kwargs", "max_attempts", "queue", "task", "unique_key")

    def __init__(
        self,
        task: str,
        queue: str,
        args: list[Any],
        kwargs: dict[str, Any],
        max_attempts: int,
        unique_key: str | None,
    ) -> None:
        self.task = task
        self.queue = queue
        self.args = args
        self.kwargs = kwargs
        self.max_attempts = max_attempts
        self.unique_key = unique_key


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


class InProcessBackend:
    """Runs a ``TaskQueue``'s jobs on a :class:`BackgroundRuntime` of its own.

    The runtime starts on first use; stopping the queue's worker drains it, and the next
    enqueue starts a fresh one. Jobs are looked up by id among this process' jobs.
    """

    kind = "inprocess"

    def __init__(self, queue: TaskQueue, settings: InProcessSettings | None = None) -> None:
        config = queue.config
        _check_config(config)
        self.settings = settings or InProcessSettings.from_url(config.url, config.drain_timeout)
        self._queue = queue
        self._lock = threading.Lock()  # the runtime slot and unique keys
        self._runtime: BackgroundRuntime | None = None
        self._draining: list[BackgroundRuntime] = []
        self._retired = {"succeeded": 0, "failed": 0, "cancelled": 0, "retried": 0}
        self._jobs: weakref.WeakValueDictionary[str, RuntimeJob[Any]] = (
            weakref.WeakValueDictionary()
        )
        self._recent: deque[RuntimeJob[Any]] = deque(maxlen=self.settings.keep_results)
        self._unique: dict[str, RuntimeJob[Any]] = {}
        # Per task name: (options dict, handler, plan) of the latest enqueue.
        self._plans: dict[str, tuple[dict[str, Any], Callable[..., Any], _Plan]] = {}
        self._policies: dict[int, RetryPolicy | None] = {}
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
                        name=f"spikard-tasks-{self._queue.config.queue}",
                    )
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

    def enqueue(self, batch: Sequence[EnqueueSpec]) -> list[Job]:
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
            queue = self._queue
            return [Job(queue, job.id, job) for job in accepted]
        raise AssertionError("unreachable")  # pragma: no cover

    def _prepare(
        self, name: str, args: list[Any], kwargs: dict[str, Any], options: dict[str, Any]
    ) -> tuple[_Plan, str, list[Any], dict[str, Any]]:
        """Checks one job (registered task, JSON arguments) and finds its plan."""
        task = self._queue._tasks.get(name)
        if task is None:
            known = ", ".join(sorted(self._queue._tasks)) or "none"
            raise UnknownTask(
                f"unknown task {name!r} (registered: {known}); an {_SCHEME} queue runs "
                "jobs in this process, so their task must be registered here"
            )
        cached = self._plans.get(name)
        if cached is None or cached[0] is not options or cached[1] is not task.fn:
            runner = _runner(task.fn, task.is_async)
            if cached is not None and cached[1] is task.fn:
                runner = cached[2].runner
            plan = _Plan(runner, options, self._queue.config)
            plan.retry = self._policy(plan.max_attempts)
            cached = self._plans[name] = (options, task.fn, plan)
        return cached[2], name, _json_args(args), _json_kwargs(kwargs)

    def _policy(self, max_attempts: int) -> RetryPolicy | None:
        if max_attempts not in self._policies:
            self._policies[max_attempts] = retry_policy(max_attempts, self._queue.config.backoff)
        return self._policies[max_attempts]

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
            meta=_Meta(name, plan.queue, args, kwargs, plan.max_attempts, plan.unique_key),
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

    def _find(self, job: Job) -> RuntimeJob[Any] | None:
        handle = job._handle
        if isinstance(handle, RuntimeJob):
            return handle
        return self._jobs.get(job.id)

    def info(self, job: Job) -> JobInfo | None:
        """A snapshot of the job (``None`` if it is not known in this process)."""
        found = self._find(job)
        return None if found is None else _info(found)

    def status(self, job: Job) -> JobStatus:
        """The job's state."""
        found = self._find(job)
        if found is None:
            raise LookupError(f"job {job.id} is not a job of this process (or expired)")
        return _STATUS[found.status()]

    def result(self, job: Job, timeout: float | None) -> Any:
        """Waits on the job itself (no polling)."""
        found = self._find(job)
        if found is None:
            raise LookupError(f"job {job.id} is not a job of this process (or expired)")
        return found.result(timeout)

    async def wait(self, job: Job, timeout: float | None) -> Any:
        """Awaits the job without blocking the caller's event loop."""
        found = self._find(job)
        if found is None:
            raise LookupError(f"job {job.id} is not a job of this process (or expired)")
        return await found.wait(timeout)

    def get_job(self, job_id: str) -> Job | None:
        """The job with this id among this process' jobs, or ``None``."""
        found = self._jobs.get(job_id)
        return None if found is None else Job(self._queue, job_id, found)

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

    def worker(
        self,
        concurrency: int | None,
        queues: Sequence[str] | None,
        name: str | None,
        drain_timeout: float | None,
    ) -> Worker:
        """A worker whose stop drains the runtime (see ``InProcessWorker``)."""
        from .worker import InProcessWorker

        return InProcessWorker(
            self._queue,
            self,
            concurrency=concurrency,
            queues=queues,
            name=name,
            drain_timeout=drain_timeout,
        )


def _info(job: RuntimeJob[Any]) -> JobInfo:
    """A ``JobInfo`` snapshot of an in-process job."""
    state = job.status()  # first: the outcome fields are written before the state
    meta: _Meta = job.meta
    return JobInfo(
        id=job.id,
        task=meta.task,
        queue=meta.queue,
        status=_STATUS[state],
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
    )
