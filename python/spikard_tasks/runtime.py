"""The in-process, non-durable fast path: :class:`BackgroundRuntime`.

A :class:`BackgroundRuntime` runs callables in this process, with no persistence. It owns
an asyncio event loop on a daemon thread, so it can be used from plain synchronous code
and from inside another running event loop alike:

.. code-block:: python

    from spikard_tasks import BackgroundRuntime

    with BackgroundRuntime(max_queue_size=1024, max_concurrent_tasks=128) as rt:
        job = rt.submit(send_email, "a@example.com", subject="hi")
        job.result(timeout=10.0)

``async def`` handlers run on the runtime's loop; plain functions run on a
:class:`concurrent.futures.ThreadPoolExecutor` of ``max_concurrent_tasks`` threads, so
they never block the loop. ``submit`` also takes a registered
:class:`~spikard_tasks.Task` and runs its function. ``TaskQueue("inprocess://")`` runs a
queue's tasks on a runtime of its own (see :mod:`spikard_tasks.inprocess`).

Bound and concurrency
    At most ``max_concurrent_tasks`` handlers run at once (sync and async together). Until
    it finishes, every accepted job holds either one of the ``max_concurrent_tasks``
    execution slots or one of the ``max_queue_size`` places in the queue: a job waiting
    for a slot (queued, or behind a full set of running jobs) always counts against
    ``max_queue_size``, and running jobs never do. So exactly
    ``max_queue_size + max_concurrent_tasks`` jobs can be accepted at once when handlers
    block, and one more :meth:`~BackgroundRuntime.submit` raises
    :class:`~spikard_tasks.exceptions.QueueFull` at once; it never blocks. The check is
    made under a lock at submit time, so it is exact with concurrent submitters. Jobs
    waiting for a ``delay`` or for a retry are unfinished too and count the same way.

Order, delays and timeouts (``submit_with``)
    Queued jobs start in ``priority`` order (higher first), first come first served among
    equal priorities. A job submitted with ``delay`` is ``"scheduled"`` and never starts
    before that many seconds have passed (checked against the wall clock). A job with a
    ``timeout`` fails with ``TimeoutError`` when an attempt runs longer: an ``async def``
    handler is cancelled at the deadline; a sync handler cannot be interrupted, so its
    attempt fails when it returns late (its return value is discarded).

Outcomes
    A handler's return value makes its job ``"succeeded"``. Any exception (including
    ``SystemExit`` and ``KeyboardInterrupt``) makes it ``"failed"``: the failure is logged
    with its traceback on the ``spikard_tasks.runtime`` logger and does not affect other
    jobs. Raising :class:`~spikard_tasks.exceptions.Cancel` (or ``CancelledError`` from
    an async handler) ends the job ``"cancelled"``, and so does :meth:`RuntimeJob.cancel`.
    By default there are no retries: a :class:`~spikard_tasks.exceptions.Retry` raised
    here counts as a failure. A job submitted with a ``retry`` policy
    (:data:`RetryPolicy`) is ``"retrying"`` after a failed attempt for as long as the
    policy says, then runs again; every failed attempt is kept in
    :attr:`RuntimeJob.errors`.

Shutdown
    :meth:`~BackgroundRuntime.shutdown` stops accepting jobs, lets queued and running jobs
    (and scheduled ones whose time comes within the drain timeout) finish for up to the
    drain timeout, then cancels what is left and returns a :class:`DrainReport`. Jobs
    whose time or next attempt falls after the drain deadline end ``"cancelled"`` at once;
    jobs still queued at the deadline end ``"cancelled"`` without starting; running async
    handlers are cancelled; running sync handlers cannot be interrupted, so they are
    reported unfinished and keep their thread until they return (their job then ends
    normally). A runtime still running at interpreter exit is shut down the same way from
    an :mod:`atexit` hook, bounded by its ``drain_timeout``.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import functools
import heapq
import inspect
import itertools
import logging
import math
import os
import threading
import time
import traceback as _traceback
import types
import weakref
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

from ._runtime_job import (
    _CANCELLED,
    _EMPTY_KWARGS,
    _FAILED,
    _PENDING,
    _RETRYING,
    _RUNNING,
    _SCHEDULED,
    _SUCCEEDED,
    _WAITING,
    DrainReport,
    RetryPolicy,
    RuntimeJob,
    RuntimeJobStatus,
    RuntimeStats,
    _notify,
    _resolve_future,
)
from .exceptions import Cancel, QueueFull, RuntimeShutDown
from .task import Task

if TYPE_CHECKING:
    from ._runtime_job import _Waiter

__all__ = [
    "BackgroundRuntime",
    "DrainReport",
    "RetryPolicy",
    "RuntimeJob",
    "RuntimeJobStatus",
    "RuntimeStats",
]

logger = logging.getLogger("spikard_tasks.runtime")

T = TypeVar("T")
P = ParamSpec("P")

# A worker coroutine yields to the loop after this many async jobs in a row that finished
# without suspending, so callbacks (wake-ups, waiters, shutdown) are never starved.
_YIELD_EVERY = 64
# What _finish may start in the slot it frees: nothing, a sync job only, or any job.
_TAKE_NONE = 0
_TAKE_SYNC = 1
_TAKE_ANY = 2
# Extra time given to cancelled handlers to unwind after the drain timeout.
_CANCEL_GRACE = 1.0
# Extra time the caller of shutdown() waits for the loop thread to answer before it gives
# up on an unresponsive loop (one blocked by a handler that never awaits).
_RESPONSE_GRACE = 5.0

_CO_COROUTINE = inspect.CO_COROUTINE
_THREAD_STATE = threading.local()
_now = time.time
_CANCELLED_BY_REQUEST = "cancelled by request"
_TOO_LATE = "runtime shut down before the job's time"
_TOO_LATE_RETRY = "runtime shut down before the job's next attempt"


def _is_async_callable(fn: Callable[..., Any]) -> bool:
    """Return whether calling ``fn`` returns a coroutine (an ``async def`` function)."""
    while True:
        if type(fn) is types.FunctionType:
            return bool(fn.__code__.co_flags & _CO_COROUTINE)
        if isinstance(fn, types.MethodType):
            fn = fn.__func__
        elif isinstance(fn, functools.partial):
            fn = fn.func
        else:
            break
    if inspect.iscoroutinefunction(fn):
        return True
    # An instance whose class defines ``async def __call__``.
    return inspect.iscoroutinefunction(type(fn).__call__)


def _callable_name(fn: Callable[..., Any]) -> str:
    name = getattr(fn, "__qualname__", None)
    if isinstance(name, str):
        return name
    if isinstance(fn, functools.partial):
        return _callable_name(fn.func)
    return type(fn).__qualname__


def _error_text(exc: BaseException) -> str:
    """Format ``exc`` as ``"ExcType: message"`` (just ``"ExcType"`` without a message)."""
    try:
        message = str(exc)
    except Exception:  # a broken __str__ must not break failure reporting
        message = "<unprintable exception>"
    kind = type(exc).__name__
    return f"{kind}: {message}" if message else kind


def _describe(job: RuntimeJob[Any]) -> str:
    return f"{job.name} ({job.id})"


def _check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _check_timeout(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a non-negative number of seconds, got {value!r}")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{name} must be a finite, non-negative number of seconds, got {value!r}")
    return seconds


def _no_op() -> None:
    """A placeholder callable."""


def _check_priority(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"priority must be an int, got {value!r}")
    return value


def _optional_seconds(name: str, value: object) -> float | None:
    return None if value is None else _check_timeout(name, value)


def _timeout_text(job: RuntimeJob[Any]) -> str:
    limit = job._timeout
    return f"attempt {job._attempts} ran past its {limit:g}s timeout"


async def _with_timeout(job: RuntimeJob[Any], coro: Coroutine[Any, Any, Any]) -> Any:
    """Await ``coro`` with the job's timeout; a timeout becomes a ``TimeoutError``
    naming the attempt (the handler is cancelled)."""
    limit = job._timeout
    assert limit is not None
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        return await asyncio.wait_for(coro, limit)
    except asyncio.TimeoutError:
        if loop.time() - started < limit:
            raise  # the handler itself raised TimeoutError before the deadline
        raise TimeoutError(_timeout_text(job)) from None


def _uncancel(task: asyncio.Task[Any] | None) -> None:
    """Undo one ``task.cancel()`` that was aimed at a job, not at the worker (3.11+)."""
    cancelling = getattr(task, "cancelling", None)
    if cancelling is not None and cancelling() > 0:
        task.uncancel()  # type: ignore[union-attr]


class BackgroundRuntime:
    """An in-process, bounded, non-durable job runner: the fast path of spikard-tasks.

    The runtime starts itself on the first :meth:`submit` (or an explicit :meth:`start`)
    and runs its own event loop on a daemon thread. See the module documentation for the
    bound, concurrency, ordering and shutdown semantics.

    Args:
        max_queue_size: how many accepted jobs may wait (queued or for an execution slot)
            beyond the running ones; a positive int.
        max_concurrent_tasks: the most handlers that run at once, which is also the size
            of the thread pool for sync handlers; a positive int.
        drain_timeout: default seconds :meth:`shutdown` lets work finish; >= 0.
        name: used in thread names, log lines and error messages.

    Raises:
        ValueError: an argument is out of range or of the wrong type.

    The runtime is a (sync and async) context manager that shuts down on exit::

        with BackgroundRuntime() as rt:
            rt.submit(work, 1, 2)
    """

    def __init__(
        self,
        max_queue_size: int = 1024,
        max_concurrent_tasks: int = 128,
        drain_timeout: float = 30.0,
        name: str = "spikard-tasks",
    ) -> None:
        """Validate the configuration; no thread is started until first use."""
        self._max_queue_size = _check_positive_int("max_queue_size", max_queue_size)
        self._max_concurrent = _check_positive_int("max_concurrent_tasks", max_concurrent_tasks)
        self._drain_timeout = _check_timeout("drain_timeout", drain_timeout)
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty str, got {name!r}")
        self._name = name
        self._capacity = self._max_queue_size + self._max_concurrent

        # Everything below is guarded by _lock.
        self._lock = threading.Lock()
        # Ready jobs, highest priority first, first come first served among equals.
        self._pending: deque[RuntimeJob[Any]] = deque()
        self._running = 0  # jobs holding an execution slot (len(_pending) are queued)
        # Jobs waiting for their time, as (due, sequence, job); entries of jobs that were
        # cancelled meanwhile stay until popped. _waiting counts the live entries.
        self._heap: list[tuple[float, int, RuntimeJob[Any]]] = []
        self._seq = itertools.count()
        self._waiting = 0
        self._succeeded = 0
        self._failed = 0
        self._cancelled = 0
        self._retried = 0
        self._finished = 0  # every terminal transition made by running a handler
        self._finished_at_close = 0  # value of _finished when shutdown began
        self._slots: list[RuntimeJob[Any] | None] = [None] * self._max_concurrent
        self._idle: list[asyncio.Future[None]] = []  # futures of idle worker coroutines
        self._wake_scheduled = False
        self._closed = False  # no more submissions
        self._stopping = False  # workers exit once nothing is queued or waiting
        self._abandoned = False  # drain timed out: leftovers are cancelled
        self._drain_deadline = math.inf  # wall-clock end of the drain
        self._cut_off: list[RuntimeJob[Any]] = []  # cancelled for being due after it

        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._loop_ident: int | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._timer: asyncio.TimerHandle | None = None  # loop thread only
        self._pid = os.getpid()
        # (submitted object, function to run, is_async, default name) of the last submit.
        self._last_callable: tuple[object, Callable[..., Any], bool, str] = (
            None,
            _no_op,
            False,
            "",
        )

    # -- configuration and state -----------------------------------------------------

    @property
    def name(self) -> str:
        """The runtime's name (used in thread names and messages)."""
        return self._name

    @property
    def max_queue_size(self) -> int:
        """How many accepted jobs may wait beyond the running ones."""
        return self._max_queue_size

    @property
    def max_concurrent_tasks(self) -> int:
        """The most handlers that run at once."""
        return self._max_concurrent

    @property
    def drain_timeout(self) -> float:
        """Default seconds :meth:`shutdown` lets queued and running work finish."""
        return self._drain_timeout

    @property
    def started(self) -> bool:
        """``True`` once the runtime's loop thread has been started."""
        return self._loop is not None

    @property
    def closed(self) -> bool:
        """``True`` once shutdown has begun: :meth:`submit` raises ``RuntimeShutDown``."""
        return self._closed

    @property
    def stats(self) -> RuntimeStats:
        """A consistent snapshot of the runtime's counters (see :class:`RuntimeStats`)."""
        with self._lock:
            retrying = 0
            if self._waiting:
                retrying = sum(1 for _, _, job in self._heap if job._state == _RETRYING)
            return RuntimeStats(
                queued=len(self._pending),
                running=self._running,
                succeeded=self._succeeded,
                failed=self._failed,
                cancelled=self._cancelled,
                scheduled=self._waiting - retrying,
                retrying=retrying,
                retried=self._retried,
            )

    def __repr__(self) -> str:
        """Return a summary with the name, bounds and counters."""
        state = "closed" if self._closed else ("running" if self.started else "idle")
        s = self.stats
        return (
            f"<BackgroundRuntime {self._name!r} {state} max_queue_size={self._max_queue_size}"
            f" max_concurrent_tasks={self._max_concurrent} queued={s.queued}"
            f" running={s.running} succeeded={s.succeeded} failed={s.failed}>"
        )

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Start the loop thread and the thread pool; a no-op if already started.

        :meth:`submit` calls this on first use, so calling it is optional.

        Raises:
            RuntimeShutDown: the runtime has been shut down.
        """
        with self._lock:
            if self._closed:
                raise RuntimeShutDown(self._shut_down_message())
            if self._loop is not None:
                return
            loop = asyncio.new_event_loop()
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=self._max_concurrent, thread_name_prefix=f"{self._name}-sync"
            )
            thread = threading.Thread(
                target=self._run_loop, args=(loop,), name=f"{self._name}-loop", daemon=True
            )
            self._thread = thread
            self._pid = os.getpid()
            self._loop = loop
            _LIVE_RUNTIMES.add(self)
            thread.start()

    def __enter__(self) -> BackgroundRuntime:
        """Start the runtime and return it."""
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Shut down with the default drain timeout."""
        self.shutdown()

    async def __aenter__(self) -> BackgroundRuntime:
        """Start the runtime and return it."""
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Shut down with the default drain timeout, without blocking the caller's loop."""
        await self.ashutdown()

    def shutdown(self, timeout: float | None = None) -> DrainReport:
        """Stop accepting jobs, drain queued and running work, and report.

        Queued and running jobs get up to ``timeout`` seconds to finish. Then jobs still
        queued end ``"cancelled"`` without starting and running async handlers are
        cancelled; running sync handlers cannot be interrupted and are left to finish on
        their thread. Calling it again (or after a concurrent call) returns an empty
        report at once.

        Args:
            timeout: seconds to drain; ``None`` uses ``drain_timeout``.

        Returns:
            A :class:`DrainReport` of what finished and what did not.

        Raises:
            ValueError: ``timeout`` is negative or not a number.
            RuntimeError: called from a job running on this runtime (the drain would wait
                for the caller itself).
        """
        seconds = self._prepare_shutdown(timeout)
        if seconds is None:
            return DrainReport()
        future = self._start_drain(seconds)
        if future is None:
            return self._abandon_unresponsive()
        try:
            report = future.result(seconds + _RESPONSE_GRACE)
        except concurrent.futures.TimeoutError:
            future.cancel()
            report = self._abandon_unresponsive()
            self._finalize(join=False)
            return report
        self._finalize(join=True)
        return report

    async def ashutdown(self, timeout: float | None = None) -> DrainReport:
        """Awaitable twin of :meth:`shutdown`, for asyncio programs.

        It does not block the caller's event loop while the runtime drains.

        Args:
            timeout: seconds to drain; ``None`` uses ``drain_timeout``.

        Returns:
            A :class:`DrainReport` of what finished and what did not.

        Raises:
            ValueError: ``timeout`` is negative or not a number.
            RuntimeError: called from a job running on this runtime.
        """
        seconds = self._prepare_shutdown(timeout)
        if seconds is None:
            return DrainReport()
        future = self._start_drain(seconds)
        if future is None:
            return self._abandon_unresponsive()
        try:
            report = await asyncio.wait_for(asyncio.wrap_future(future), seconds + _RESPONSE_GRACE)
        except (asyncio.TimeoutError, TimeoutError):
            report = self._abandon_unresponsive()
            self._finalize(join=False)
            return report
        await asyncio.to_thread(self._finalize, True)
        return report

    def _start_drain(self, seconds: float) -> concurrent.futures.Future[DrainReport] | None:
        """Schedule the drain on the loop; ``None`` if the loop thread is gone.

        The thread is gone in a child process after ``fork`` (only the forking thread
        survives), and nobody can drain there.
        """
        loop = self._loop
        thread = self._thread
        if loop is None or thread is None or not thread.is_alive() or loop.is_closed():
            return None
        return asyncio.run_coroutine_threadsafe(self._drain(seconds), loop)

    def _prepare_shutdown(self, timeout: float | None) -> float | None:
        """Close the runtime; return the drain timeout, or ``None`` if nothing to drain."""
        seconds = self._drain_timeout if timeout is None else _check_timeout("timeout", timeout)
        if self._on_loop_thread() or getattr(_THREAD_STATE, "runtime", None) is self:
            raise RuntimeError(
                f"background runtime {self._name!r} cannot be shut down from one of its own"
                " jobs (the drain would wait for the caller)"
            )
        with self._lock:
            if self._closed:
                return None
            self._closed = True
            self._finished_at_close = self._finished
            if self._loop is None:
                return None
        _LIVE_RUNTIMES.discard(self)
        return seconds

    # -- submission ------------------------------------------------------------------

    @overload
    def submit(
        self,
        fn: Callable[P, Coroutine[Any, Any, T]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> RuntimeJob[T]: ...

    @overload
    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> RuntimeJob[T]: ...

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> RuntimeJob[Any]:
        """Accept ``fn(*args, **kwargs)`` as a job and return its handle at once.

        ``fn`` is a callable or a registered :class:`~spikard_tasks.Task` (its function
        runs, the job is named after the task; arguments are passed as they are, with no
        JSON check). ``async def`` callables run on the runtime's loop; other callables
        run on its thread pool. The job is named after ``fn.__qualname__``; use
        :meth:`submit_with` to set a name, request id, priority, delay, timeout or retry
        policy. Thread-safe, callable from any thread, from the runtime's own loop and
        from a running handler. Starts the runtime if needed.

        Args:
            fn: the handler to run (a callable or a ``Task``).
            *args: positional arguments for ``fn``.
            **kwargs: keyword arguments for ``fn``.

        Returns:
            The :class:`RuntimeJob` handle.

        Raises:
            QueueFull: ``max_queue_size + max_concurrent_tasks`` jobs are unfinished; the
                job was not accepted. Never blocks.
            RuntimeShutDown: the runtime has been shut down.
            TypeError: ``fn`` is not callable.
        """
        job = self._new_job(fn, args, kwargs, None, None)
        self._admit((job,))
        return job

    @overload
    def submit_with(
        self,
        fn: Callable[..., Coroutine[Any, Any, T]],
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
        request_id: str | None = None,
        job_id: str | None = None,
        priority: int = 0,
        delay: float | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        meta: Any = None,
    ) -> RuntimeJob[T]: ...

    @overload
    def submit_with(
        self,
        fn: Callable[..., T],
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
        request_id: str | None = None,
        job_id: str | None = None,
        priority: int = 0,
        delay: float | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        meta: Any = None,
    ) -> RuntimeJob[T]: ...

    def submit_with(
        self,
        fn: Callable[..., Any],
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
        request_id: str | None = None,
        job_id: str | None = None,
        priority: int = 0,
        delay: float | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        meta: Any = None,
    ) -> RuntimeJob[Any]:
        """Like :meth:`submit`, with explicit arguments, job metadata and options.

        Args:
            fn: the handler to run (a callable or a ``Task``).
            args: positional arguments for ``fn``.
            kwargs: keyword arguments for ``fn``.
            name: the job's name; defaults to ``fn.__qualname__`` (or the task's name).
            request_id: an id to correlate the job with the request that made it.
            job_id: the job's id; a random one is made when needed otherwise.
            priority: higher runs first among queued jobs (default 0).
            delay: seconds before the job may start; it is ``"scheduled"`` until then.
            timeout: seconds an attempt may run before it fails with ``TimeoutError``.
            retry: decides, after each failed attempt, whether and when the job runs
                again (see :data:`RetryPolicy`); ``None`` means one attempt.
            meta: any object to keep with the job (:attr:`RuntimeJob.meta`).

        Returns:
            The :class:`RuntimeJob` handle.

        Raises:
            QueueFull: the runtime is at its bound; the job was not accepted.
            RuntimeShutDown: the runtime has been shut down.
            TypeError: ``fn`` or ``retry`` is not callable.
            ValueError: ``priority``, ``delay`` or ``timeout`` is out of range.
        """
        job = self._new_job(
            fn,
            tuple(args),
            dict(kwargs) if kwargs else _EMPTY_KWARGS,
            name,
            request_id,
            job_id=job_id,
            priority=_check_priority(priority),
            delay=_optional_seconds("delay", delay),
            timeout=_optional_seconds("timeout", timeout),
            retry=retry,
            meta=meta,
        )
        self._admit((job,))
        return job

    def _new_job(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...] | list[Any],
        kwargs: dict[str, Any],
        name: str | None,
        request_id: str | None,
        *,
        job_id: str | None = None,
        priority: int = 0,
        delay: float | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        meta: Any = None,
    ) -> RuntimeJob[Any]:
        """Build a job (not accepted yet); options are already validated."""
        last = self._last_callable  # the same callable is usually submitted many times
        if last[0] is fn:
            target, is_async, default_name = last[1], last[2], last[3]
        else:
            if isinstance(fn, Task):
                target, is_async, default_name = fn.fn, fn.is_async, fn.name
            elif callable(fn):
                target, is_async, default_name = fn, _is_async_callable(fn), _callable_name(fn)
            else:
                raise TypeError(f"{type(fn).__name__!r} object is not callable")
            self._last_callable = (fn, target, is_async, default_name)
        if retry is not None and not callable(retry):
            raise TypeError(f"retry must be callable, not {type(retry).__name__}")
        now = _now()
        return RuntimeJob(
            self,
            target,
            args,
            kwargs,
            is_async,
            default_name if name is None else name,
            request_id,
            job_id=job_id,
            priority=priority,
            due=None if delay is None else now + delay,
            timeout=timeout,
            retry=retry,
            meta=meta,
            now=now,
        )

    def _admit(self, jobs: Sequence[RuntimeJob[Any]]) -> None:
        """Accept all of ``jobs`` or none of them (``QueueFull``, ``RuntimeShutDown``)."""
        if self._loop is None:
            self.start()
        arm = False
        pending = self._pending
        with self._lock:
            if self._closed:
                raise RuntimeShutDown(self._shut_down_message())
            unfinished = len(pending) + self._running + self._waiting
            if unfinished + len(jobs) > self._capacity:
                batch = f"; a batch of {len(jobs)} does not fit" if len(jobs) > 1 else ""
                raise QueueFull(
                    f"background runtime {self._name!r} is full:"
                    f" {unfinished} jobs unfinished"
                    f" (max_queue_size={self._max_queue_size} +"
                    f" max_concurrent_tasks={self._max_concurrent}){batch}"
                )
            for job in jobs:
                if job._due is None:
                    if not pending or pending[-1]._priority >= job._priority:
                        pending.append(job)
                    else:
                        self._insert_by_priority_locked(job)
                else:
                    job._state = _SCHEDULED
                    arm = self._schedule_locked(job, job._due) or arm
            wake = bool(self._idle) and bool(pending) and not self._wake_scheduled
            if wake:
                self._wake_scheduled = True
        if wake:
            self._call_on_loop(self._wake)
        if arm:
            self._call_on_loop(self._arm_timer)

    def _insert_by_priority_locked(self, job: RuntimeJob[Any]) -> None:
        """Queue ``job`` before the first job of lower priority; the caller holds the lock."""
        pending = self._pending
        priority = job._priority
        for index, other in enumerate(pending):
            if other._priority < priority:
                pending.insert(index, job)
                return
        pending.append(job)

    def _schedule_locked(self, job: RuntimeJob[Any], due: float) -> bool:
        """Make ``job`` wait until ``due``; return whether the timer must be re-armed."""
        heapq.heappush(self._heap, (due, next(self._seq), job))
        self._waiting += 1
        return self._heap[0][2] is job

    def _shut_down_message(self) -> str:
        return f"background runtime {self._name!r} has shut down and no longer accepts jobs"

    def _on_loop_thread(self) -> bool:
        return self._loop_ident is not None and threading.get_ident() == self._loop_ident

    def _call_on_loop(self, callback: Callable[..., None], *args: Any) -> None:
        """Run ``callback`` on the loop thread soon (a no-op once the loop is closed)."""
        loop = self._loop
        if loop is None:
            return
        try:
            if self._on_loop_thread():
                loop.call_soon(callback, *args)
            else:
                loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # loop closed by a concurrent shutdown: drain saw the job
            pass

    # -- cancellation ----------------------------------------------------------------

    def _cancel(self, job: RuntimeJob[Any]) -> bool:
        """Cancel ``job`` (see :meth:`RuntimeJob.cancel`)."""
        waiters: list[_Waiter] | None = None
        cancel_running = False
        wake_all = False
        with self._lock:
            state = job._state
            if state == _RUNNING:
                job._cancel_requested = True
                cancel_running = job._is_async
            elif state == _PENDING:
                try:
                    self._pending.remove(job)
                except ValueError:  # not accepted (yet): nothing to cancel here
                    return False
                waiters = self._cancel_locked(job, _CANCELLED_BY_REQUEST)
            elif state in _WAITING:
                self._waiting -= 1
                waiters = self._cancel_locked(job, _CANCELLED_BY_REQUEST)
                wake_all = self._stopping and not self._waiting
            else:
                return False
        if waiters:
            _notify(waiters)
        if cancel_running:
            self._call_on_loop(self._cancel_running, job)
        if wake_all:
            self._call_on_loop(self._wake_all)
        return True

    def _cancel_locked(self, job: RuntimeJob[Any], reason: str) -> list[_Waiter] | None:
        """End a job that is not running ``"cancelled"``; return its waiters."""
        job._end_locked(_CANCELLED, reason, _now())
        self._cancelled += 1
        waiters = job._waiters
        job._waiters = None
        return waiters

    def _cancel_running(self, job: RuntimeJob[Any]) -> None:
        """Cancel the worker task running async ``job`` (runs on the loop)."""
        if job._state != _RUNNING:
            return
        for slot, current in enumerate(self._slots):
            if current is job:
                self._workers[slot].cancel()
                return

    # -- the loop thread -------------------------------------------------------------

    def _run_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop_ident = threading.get_ident()
        asyncio.set_event_loop(loop)
        try:
            self._workers = [
                loop.create_task(self._worker(slot), name=f"{self._name}-worker-{slot}")
                for slot in range(self._max_concurrent)
            ]
            loop.run_forever()
        finally:
            try:
                tasks = asyncio.all_tasks(loop)
                for task in tasks:
                    task.cancel()
                if tasks:
                    loop.run_until_complete(asyncio.wait(tasks, timeout=_CANCEL_GRACE))
                loop.run_until_complete(loop.shutdown_asyncgens())
            except Exception:  # pragma: no cover - best-effort cleanup
                logger.exception("error while closing the event loop of %r", self._name)
            finally:
                asyncio.set_event_loop(None)
                loop.close()

    def _wake(self) -> None:
        """Wake as many idle workers as there are queued jobs (runs on the loop)."""
        with self._lock:
            self._wake_scheduled = False
            count = min(len(self._pending), len(self._idle))
            woken = self._idle[:count]
            del self._idle[:count]
        for fut in woken:
            if not fut.done():
                fut.set_result(None)

    def _wake_all(self) -> None:
        """Wake every idle worker, e.g. so that they exit when draining (runs on the loop)."""
        with self._lock:
            woken = self._idle
            self._idle = []
        for fut in woken:
            if not fut.done():
                fut.set_result(None)

    def _arm_timer(self) -> None:
        """Set the loop timer for the earliest waiting job (runs on the loop)."""
        loop = self._loop
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        with self._lock:
            due = self._heap[0][0] if self._heap else None
        if due is not None and loop is not None:
            self._timer = loop.call_later(max(0.0, due - _now()), self._on_timer)

    def _on_timer(self) -> None:
        """Move waiting jobs whose time has come to the queue (runs on the loop).

        Due times are wall-clock times and are checked against the wall clock here, so a
        job never starts early even if the loop's monotonic clock drifts from it.
        """
        self._timer = None
        now = _now()
        heap = self._heap
        with self._lock:
            while heap and heap[0][0] <= now:
                _, _, job = heapq.heappop(heap)
                if job._state not in _WAITING:  # cancelled meanwhile
                    continue
                self._waiting -= 1
                job._state = _PENDING
                pending = self._pending
                if not pending or pending[-1]._priority >= job._priority:
                    pending.append(job)
                else:
                    self._insert_by_priority_locked(job)
            wake_all = self._stopping and not self._waiting
        self._arm_timer()
        if wake_all:
            self._wake_all()
        else:
            self._wake()

    async def _worker(self, slot: int) -> None:
        """Run jobs from the queue one at a time; there is one worker per execution slot.

        Finishing a job and starting the next happen under one lock acquisition; after
        ``_YIELD_EVERY`` async jobs in a row the worker yields to the loop. While the
        runtime drains, a worker exits once nothing is queued and no job waits for its
        time.
        """
        loop = asyncio.get_running_loop()
        lock = self._lock
        pending = self._pending
        slots = self._slots
        streak = 0
        job: RuntimeJob[Any] | None = None
        while True:
            if job is None:
                idle: asyncio.Future[None] | None = None
                with lock:
                    if pending:
                        job = pending.popleft()
                        self._running += 1
                        slots[slot] = job
                        job._attempts += 1
                        job._started_at = _now()
                        job._state = _RUNNING
                    elif self._stopping and not self._waiting:
                        return
                    else:
                        idle = loop.create_future()
                        self._idle.append(idle)
                if job is None:
                    assert idle is not None
                    streak = 0
                    await idle
                    continue
            if job._is_async:
                streak += 1
                take = _TAKE_ANY if streak < _YIELD_EVERY else _TAKE_NONE
                job = await self._run_async(job, slot, take)
                if take == _TAKE_NONE:
                    streak = 0
                    await asyncio.sleep(0)
            else:
                streak = 0
                job = await self._run_sync(job, slot, loop)

    async def _run_async(
        self, job: RuntimeJob[Any], slot: int, take: int
    ) -> RuntimeJob[Any] | None:
        """Run an async job on this loop; return the next job started in its slot, if any."""
        fn = job._fn
        assert fn is not None
        try:
            if job._timeout is None:
                value = await fn(*job._args, **job._kwargs)
            else:
                value = await _with_timeout(job, fn(*job._args, **job._kwargs))
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if job._cancel_requested and not self._abandoned:  # job.cancel()
                _uncancel(task)
                return self._finish(job, slot, _CANCELLED, None, None, _CANCELLED_BY_REQUEST, take)
            cancelling = getattr(task, "cancelling", None)
            external = self._abandoned or (cancelling is not None and cancelling() > 0)
            if external:  # the drain timed out: this worker is being cancelled
                self._finish(job, slot, _CANCELLED, None, None, "cancelled at shutdown")
                raise
            reason = "handler raised CancelledError"
            return self._finish(job, slot, _CANCELLED, None, None, reason, take)
        except Cancel as exc:
            return self._finish(job, slot, _CANCELLED, None, None, exc.reason or str(exc), take)
        except BaseException as exc:  # SystemExit and KeyboardInterrupt included
            return self._finish(job, slot, _FAILED, None, exc, None, take)
        if job._cancel_requested:  # the handler swallowed the cancellation
            _uncancel(asyncio.current_task())
        return self._finish(job, slot, _SUCCEEDED, value, None, None, take)

    async def _run_sync(
        self, job: RuntimeJob[Any], slot: int, loop: asyncio.AbstractEventLoop
    ) -> RuntimeJob[Any] | None:
        """Run a sync job (and the sync jobs queued behind it) on the thread pool."""
        executor = self._executor
        assert executor is not None
        done: asyncio.Future[None] = loop.create_future()
        try:
            executor.submit(self._sync_batch, job, slot, loop, done)
        except RuntimeError as exc:  # the pool is shut down (interpreter exit)
            return self._finish(job, slot, _FAILED, None, exc, None, _TAKE_ANY)
        await done
        return None

    def _sync_batch(
        self,
        job: RuntimeJob[Any],
        slot: int,
        loop: asyncio.AbstractEventLoop,
        done: asyncio.Future[None],
    ) -> None:
        """Run ``job`` on a pool thread, then more sync jobs from the head of the queue.

        Chaining sync jobs on the same thread (while holding the same execution slot)
        saves one loop round trip per job. The loop-side worker is told once at the end.
        """
        _THREAD_STATE.runtime = self
        try:
            next_job: RuntimeJob[Any] | None = job
            while next_job is not None:
                job = next_job
                fn = job._fn
                assert fn is not None
                try:
                    if job._timeout is None:
                        value = fn(*job._args, **job._kwargs)
                    else:
                        started = time.monotonic()
                        value = fn(*job._args, **job._kwargs)
                        if time.monotonic() - started > job._timeout:
                            raise TimeoutError(_timeout_text(job))
                except Cancel as exc:
                    reason = exc.reason or str(exc)
                    next_job = self._finish(job, slot, _CANCELLED, None, None, reason, _TAKE_SYNC)
                except BaseException as exc:  # SystemExit and KeyboardInterrupt included
                    next_job = self._finish(job, slot, _FAILED, None, exc, None, _TAKE_SYNC)
                else:
                    next_job = self._finish(job, slot, _SUCCEEDED, value, None, None, _TAKE_SYNC)
        finally:
            _THREAD_STATE.runtime = None
            # RuntimeError: the loop closed after a drain timeout; nobody awaits `done`.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve_future, done)

    def _next_attempt_at(
        self, job: RuntimeJob[Any], exc: BaseException, now: float
    ) -> float | None:
        """Ask the job's retry policy when the next attempt runs (``None``: no retry)."""
        policy = job._retry
        if policy is None or self._abandoned:
            return None
        try:
            delay = policy(exc, job._attempts)
        except Exception:
            logger.exception("retry policy of background job %s (%s) raised", job._name, job.id)
            return None
        if delay is None:
            return None
        seconds = float(delay)
        return now + (seconds if math.isfinite(seconds) and seconds > 0 else 0.0)

    def _finish(
        self,
        job: RuntimeJob[Any],
        slot: int,
        state: RuntimeJobStatus,
        value: Any,
        exc: BaseException | None,
        reason: str | None = None,
        take: int = 0,
    ) -> RuntimeJob[Any] | None:
        """Record the end of an attempt and, as ``take`` says, start the next queued job
        in its slot.

        ``take`` is ``_TAKE_NONE``, ``_TAKE_SYNC`` (only if the next job is sync: a pool
        thread is calling) or ``_TAKE_ANY``. Returns the job started, if any. A failed
        attempt whose retry policy asks for another one makes the job ``"retrying"``
        (it waits for its time outside the execution slots); otherwise the job ends.

        A failure is logged before the job is marked done, so whoever sees the job done
        also sees its log record.
        """
        now = _now()
        error = reason
        tb: str | None = None
        retry_at: float | None = None
        if exc is not None and job._cancel_requested:
            state, exc, error = _CANCELLED, None, _CANCELLED_BY_REQUEST
        if exc is not None:
            error = _error_text(exc)
            tb = "".join(_traceback.format_exception(type(exc), exc, exc.__traceback__))
            retry_at = self._next_attempt_at(job, exc, now)
            if retry_at is None:
                logger.error(
                    "background job %s (%s) failed: %s",
                    job._name,
                    job.id,
                    error,
                    exc_info=(type(exc), exc, exc.__traceback__),
                )
            else:
                logger.warning(
                    "background job %s (%s) attempt %d failed, next attempt in %.3fs: %s",
                    job._name,
                    job.id,
                    job._attempts,
                    retry_at - now,
                    error,
                )
        next_job: RuntimeJob[Any] | None = None
        waiters: list[_Waiter] | None = None
        arm = False
        with self._lock:
            if exc is not None:
                entry = (job._attempts, error or "failed", tb, now)
                if job._errors is None:
                    job._errors = [entry]
                else:
                    job._errors.append(entry)
            cut = retry_at is not None and self._stopping and retry_at > self._drain_deadline
            # The outcome first, the state last: readers check the state without the lock.
            job._exc = exc
            job._traceback = tb
            if retry_at is not None and not cut:
                job._error = error
                job._due = retry_at
                job._state = _RETRYING
                arm = self._schedule_locked(job, retry_at)
                self._retried += 1
            else:
                if cut:
                    self._cut_off.append(job)
                    state, error = _CANCELLED, _TOO_LATE_RETRY
                else:
                    self._finished += 1
                job._value = value
                job._error = error
                job._finished_at = now
                job._state = state
                job._fn = None
                job._args = ()
                job._kwargs = _EMPTY_KWARGS
                if state == _SUCCEEDED:
                    self._succeeded += 1
                elif state == _FAILED:
                    self._failed += 1
                else:
                    self._cancelled += 1
                waiters = job._waiters
                job._waiters = None
            pending = self._pending
            if (
                take
                and pending
                and (take == _TAKE_ANY or not pending[0]._is_async)
                and not self._abandoned
            ):
                next_job = pending.popleft()  # it inherits the slot: _running is unchanged
                self._slots[slot] = next_job
                next_job._attempts += 1
                next_job._started_at = now
                next_job._state = _RUNNING
            else:
                self._running -= 1
                if self._slots[slot] is job:
                    self._slots[slot] = None
        if waiters:
            _notify(waiters)
        if arm:
            self._call_on_loop(self._arm_timer)
        return next_job

    # -- draining --------------------------------------------------------------------

    async def _drain(self, timeout: float) -> DrainReport:
        """Let the workers empty the queue, then cancel leftovers (runs on the loop)."""
        deadline = _now() + timeout
        with self._lock:
            self._stopping = True
            self._drain_deadline = deadline
            too_late = self._cut_waiting_locked(deadline)
            idle = self._idle
            self._idle = []
        if too_late:
            _notify(too_late)
        for fut in idle:
            if not fut.done():
                fut.set_result(None)
        still_running: set[asyncio.Task[None]] = set()
        if self._workers:
            _, still_running = await asyncio.wait(self._workers, timeout=timeout)
        with self._lock:
            completed = self._finished - self._finished_at_close
            timed_out = bool(still_running or self._pending or any(self._slots) or self._waiting)
            unfinished_jobs: list[RuntimeJob[Any]] = []
            waiters: list[_Waiter] = []
            if timed_out:
                unfinished_jobs, waiters = self._abandon_locked()
            unfinished_jobs += self._cut_off
            self._cut_off = []
        if waiters:
            _notify(waiters)
        unfinished = [_describe(job) for job in unfinished_jobs]
        if timed_out:
            logger.warning(
                "background runtime %r: drain timed out after %ss; %d job(s) unfinished: %s",
                self._name,
                timeout,
                len(unfinished),
                ", ".join(unfinished),
            )
            for task in still_running:
                task.cancel()
            if still_running:
                await asyncio.wait(still_running, timeout=_CANCEL_GRACE)
        return DrainReport(
            completed=completed,
            unfinished=len(unfinished),
            unfinished_jobs=unfinished,
            timed_out=timed_out,
        )

    def _cut_waiting_locked(self, deadline: float) -> list[_Waiter]:
        """Cancel waiting jobs due after ``deadline``; the caller holds ``_lock``.

        Returns their waiters, to be notified once the lock is released.
        """
        waiters: list[_Waiter] = []
        for due, _, job in self._heap:
            if due > deadline and job._state in _WAITING:
                reason = _TOO_LATE if job._state == _SCHEDULED else _TOO_LATE_RETRY
                self._waiting -= 1
                waiters.extend(self._cancel_locked(job, reason) or ())
                self._cut_off.append(job)
        return waiters

    def _abandon_locked(self) -> tuple[list[RuntimeJob[Any]], list[_Waiter]]:
        """Give up on the remaining work; the caller holds ``_lock``.

        Queued and waiting jobs end ``"cancelled"`` without starting. Returns the
        unfinished jobs (those queued, then those running, then those waiting) and the
        waiters of the cancelled ones, to be notified once the lock is released.
        """
        self._abandoned = True
        leftovers = list(self._pending)
        running = [job for job in self._slots if job is not None]
        waiting = [job for _, _, job in self._heap if job._state in _WAITING]
        self._pending.clear()
        self._heap.clear()
        self._waiting = 0
        waiters: list[_Waiter] = []
        for job in leftovers:
            waiters.extend(
                self._cancel_locked(job, "runtime shut down before the job started") or ()
            )
        for job in waiting:
            waiters.extend(self._cancel_locked(job, _TOO_LATE) or ())
        return leftovers + running + waiting, waiters

    def _abandon_unresponsive(self) -> DrainReport:
        """Build the report when the loop did not answer (a handler blocks it)."""
        with self._lock:
            completed = self._finished - self._finished_at_close
            jobs, waiters = self._abandon_locked()
            jobs += self._cut_off
            self._cut_off = []
        if waiters:
            _notify(waiters)
        unfinished = [_describe(job) for job in jobs]
        logger.error(
            "background runtime %r: event loop unresponsive or gone during shutdown (a"
            " handler may be blocking it); %d job(s) unfinished: %s",
            self._name,
            len(unfinished),
            ", ".join(unfinished),
        )
        return DrainReport(completed, len(unfinished), unfinished, True)

    def _finalize(self, join: bool) -> None:
        """Stop the loop, join its thread briefly (if ``join``) and release the pool.

        The join is skipped when the loop did not answer: a handler is blocking it, and
        the daemon thread ends whenever that handler returns.
        """
        loop = self._loop
        thread = self._thread
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # already closed
                loop.call_soon_threadsafe(loop.stop)
        if join and thread is not None and thread is not threading.current_thread():
            thread.join(_CANCEL_GRACE * 2)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)


_LIVE_RUNTIMES: weakref.WeakSet[BackgroundRuntime] = weakref.WeakSet()


def _reset_locks_in_child() -> None:
    """After ``fork``, a runtime's lock may be held by a thread that does not exist in
    the child; give every inherited runtime a fresh one so the child can shut it down."""
    for runtime in list(_LIVE_RUNTIMES):
        runtime._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_locks_in_child)


@atexit.register
def _shutdown_live_runtimes() -> None:
    """Drain runtimes still running at interpreter exit (bounded by their drain_timeout)."""
    pid = os.getpid()
    for runtime in list(_LIVE_RUNTIMES):
        if runtime._pid != pid:  # inherited through fork: its threads are not in this process
            continue
        try:
            runtime.shutdown()
        except Exception:  # pragma: no cover - never let one runtime break exit
            logger.exception("error while shutting down %r at exit", runtime)
