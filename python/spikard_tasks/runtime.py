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
import concurrent.futures
import itertools
import math
import os
import threading
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

from ._runtime_checks import (
    _callable_name,
    _check_positive_int,
    _check_priority,
    _check_timeout,
    _is_async_callable,
    _no_op,
    _optional_seconds,
)
from ._runtime_drain import _LIVE_RUNTIMES, _Drainer
from ._runtime_exec import _CANCELLED_BY_REQUEST, _THREAD_STATE, _now
from ._runtime_job import (
    _CANCELLED,
    _EMPTY_KWARGS,
    _PENDING,
    _RETRYING,
    _RUNNING,
    _SCHEDULED,
    _WAITING,
    DrainReport,
    RetryPolicy,
    RuntimeJob,
    RuntimeJobStatus,
    RuntimeStats,
    _notify,
)
from .exceptions import QueueFull, RuntimeShutDown
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

T = TypeVar("T")
P = ParamSpec("P")

# Extra time the caller of shutdown() waits for the loop thread to answer before it gives
# up on an unresponsive loop (one blocked by a handler that never awaits).
_RESPONSE_GRACE = 5.0


# The loop-side execution is _runtime_exec._Executor; the drain at shutdown is
# _runtime_drain._Drainer (a subclass of it).
class BackgroundRuntime(_Drainer):
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

    def _shut_down_message(self) -> str:
        return f"background runtime {self._name!r} has shut down and no longer accepts jobs"

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
