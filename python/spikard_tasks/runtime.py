"""The in-process, non-durable fast path: :class:`BackgroundRuntime`.

A :class:`BackgroundRuntime` runs callables in this process, with no persistence and no
retries. It owns an asyncio event loop on a daemon thread, so it can be used from plain
synchronous code and from inside another running event loop alike:

.. code-block:: python

    from spikard_tasks.runtime import BackgroundRuntime

    with BackgroundRuntime(max_queue_size=1024, max_concurrent_tasks=128) as rt:
        job = rt.submit(send_email, "a@example.com", subject="hi")
        job.result(timeout=10.0)

``async def`` handlers run on the runtime's loop; plain functions run on a
:class:`concurrent.futures.ThreadPoolExecutor` of ``max_concurrent_tasks`` threads, so
they never block the loop.

Bound and concurrency
    At most ``max_concurrent_tasks`` handlers run at once (sync and async together). Until
    it finishes, every accepted job holds either one of the ``max_concurrent_tasks``
    execution slots or one of the ``max_queue_size`` places in the queue: a job waiting
    for a slot (queued, or behind a full set of running jobs) always counts against
    ``max_queue_size``, and running jobs never do. So exactly
    ``max_queue_size + max_concurrent_tasks`` jobs can be accepted at once when handlers
    block, and one more :meth:`~BackgroundRuntime.submit` raises
    :class:`~spikard_tasks.exceptions.QueueFull` at once; it never blocks. The check is
    made under a lock at submit time, so it is exact with concurrent submitters.

Outcomes
    A handler's return value makes its job ``"succeeded"``. Any exception (including
    ``SystemExit`` and ``KeyboardInterrupt``) makes it ``"failed"``: the failure is logged
    with its traceback on the ``spikard_tasks.runtime`` logger and does not affect other
    jobs. Raising :class:`~spikard_tasks.exceptions.Cancel` (or ``CancelledError`` from
    an async handler) ends the job ``"cancelled"``. There are no retries: a
    :class:`~spikard_tasks.exceptions.Retry` raised here counts as a failure.

Shutdown
    :meth:`~BackgroundRuntime.shutdown` stops accepting jobs, lets queued and running jobs
    finish for up to the drain timeout, then cancels what is left and returns a
    :class:`DrainReport`. Jobs still queued at that point end ``"cancelled"`` without
    starting; running async handlers are cancelled; running sync handlers cannot be
    interrupted, so they are reported unfinished and keep their thread until they return
    (their job then ends normally). A runtime still running at interpreter exit is shut
    down the same way from an :mod:`atexit` hook, bounded by its ``drain_timeout``.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import functools
import inspect
import logging
import math
import os
import threading
import traceback as _traceback
import types
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, ParamSpec, TypeVar, overload

from spikard_tasks.exceptions import (
    Cancel,
    JobCancelled,
    JobFailed,
    QueueFull,
    RuntimeShutDown,
)

__all__ = [
    "BackgroundRuntime",
    "DrainReport",
    "RuntimeJob",
    "RuntimeJobStatus",
    "RuntimeStats",
]

logger = logging.getLogger("spikard_tasks.runtime")

T = TypeVar("T")
P = ParamSpec("P")

RuntimeJobStatus = Literal["pending", "running", "succeeded", "failed", "cancelled"]
"""The states of a :class:`RuntimeJob`, as returned by :meth:`RuntimeJob.status`."""

_PENDING: RuntimeJobStatus = "pending"
_RUNNING: RuntimeJobStatus = "running"
_SUCCEEDED: RuntimeJobStatus = "succeeded"
_FAILED: RuntimeJobStatus = "failed"
_CANCELLED: RuntimeJobStatus = "cancelled"
_TERMINAL = frozenset({_SUCCEEDED, _FAILED, _CANCELLED})

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
_EMPTY_KWARGS: dict[str, Any] = {}
_ID_LOCK = threading.Lock()
_THREAD_STATE = threading.local()

if TYPE_CHECKING:
    from typing import TypeAlias

    # A thread blocked in result() waits on a held lock; a coroutine in wait() on a future.
    _Waiter: TypeAlias = threading.Lock | tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]


@dataclass(frozen=True, slots=True)
class RuntimeStats:
    """A consistent snapshot of a :class:`BackgroundRuntime`'s counters.

    Attributes:
        queued: jobs accepted and not started yet (this includes, for an instant, a job
            that a free execution slot is about to pick up).
        running: jobs holding an execution slot: their handler is running.
        succeeded: jobs that ended ``"succeeded"`` since the runtime was created.
        failed: jobs that ended ``"failed"`` since the runtime was created.
        cancelled: jobs that ended ``"cancelled"`` since the runtime was created.
    """

    queued: int
    running: int
    succeeded: int
    failed: int
    cancelled: int = 0


@dataclass(frozen=True, slots=True)
class DrainReport:
    """What :meth:`BackgroundRuntime.shutdown` achieved.

    Attributes:
        completed: jobs that finished (succeeded, failed or cancelled by their handler)
            while the runtime drained.
        unfinished: number of jobs that had not finished when the drain ended: jobs still
            queued (they end ``"cancelled"`` without starting), running async handlers
            (cancelled) and running sync handlers (left to finish on their thread).
        unfinished_jobs: one ``"name (id)"`` entry per unfinished job.
        timed_out: ``True`` when the drain timeout expired before all work finished.
    """

    completed: int = 0
    unfinished: int = 0
    unfinished_jobs: list[str] = field(default_factory=list)
    timed_out: bool = False


class RuntimeJob(Generic[T]):
    """A handle on one job submitted to a :class:`BackgroundRuntime`.

    Jobs are created by :meth:`BackgroundRuntime.submit` and
    :meth:`BackgroundRuntime.submit_with`; do not instantiate this class yourself. Every
    method is thread-safe.
    """

    __slots__ = (
        "_args",
        "_error",
        "_exc",
        "_fn",
        "_id",
        "_is_async",
        "_kwargs",
        "_name",
        "_request_id",
        "_runtime",
        "_state",
        "_traceback",
        "_value",
        "_waiters",
    )

    def __init__(
        self,
        runtime: BackgroundRuntime,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        is_async: bool,
        name: str,
        request_id: str | None,
    ) -> None:
        """Create a pending job; only :class:`BackgroundRuntime` does this."""
        self._id: str | None = None
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

    @property
    def id(self) -> str:
        """The job's id: a random UUID (version 4) as 32 hex digits.

        It is generated on first access (most fire-and-forget jobs never need one) and
        never changes afterwards.
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

    def status(self) -> RuntimeJobStatus:
        """Return the job's current state.

        Returns:
            ``"pending"`` (accepted, not started), ``"running"``, ``"succeeded"``,
            ``"failed"`` or ``"cancelled"``.
        """
        return self._state

    def done(self) -> bool:
        """Return ``True`` once the job has succeeded, failed or been cancelled."""
        return self._state in _TERMINAL

    @property
    def exception(self) -> BaseException | None:
        """The exception the handler raised if the job failed, else ``None``."""
        return self._exc

    @property
    def error(self) -> str | None:
        """Why the job did not succeed, or ``None``.

        For a failed job this is ``"ExcType: message"``; for a cancelled job, the reason.
        """
        return self._error

    @property
    def traceback(self) -> str | None:
        """The formatted traceback of a failed job, else ``None``."""
        return self._traceback

    def result(self, timeout: float | None = None) -> T:
        """Wait for the job to finish and return the handler's return value.

        Args:
            timeout: seconds to wait; ``None`` waits as long as it takes.

        Returns:
            The value the handler returned.

        Raises:
            JobFailed: the handler raised; ``error`` and ``traceback`` describe it.
            JobCancelled: the job was cancelled (by shutdown or by its handler).
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


class BackgroundRuntime:
    """An in-process, bounded, non-durable job runner: the fast path of spikard-tasks.

    The runtime starts itself on the first :meth:`submit` (or an explicit :meth:`start`)
    and runs its own event loop on a daemon thread. See the module documentation for the
    bound, concurrency and shutdown semantics.

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
        self._pending: deque[RuntimeJob[Any]] = deque()
        self._running = 0  # jobs holding an execution slot (len(_pending) are queued)
        self._succeeded = 0
        self._failed = 0
        self._cancelled = 0
        self._finished = 0  # every terminal transition made by running a handler
        self._finished_at_close = 0  # value of _finished when shutdown began
        self._slots: list[RuntimeJob[Any] | None] = [None] * self._max_concurrent
        self._idle: list[asyncio.Future[None]] = []  # futures of idle worker coroutines
        self._wake_scheduled = False
        self._closed = False  # no more submissions
        self._stopping = False  # workers exit once the queue is empty
        self._abandoned = False  # drain timed out: leftovers are cancelled

        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._loop_ident: int | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._pid = os.getpid()
        self._last_callable: tuple[object, bool, str] = (None, False, "")

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
        """A consistent snapshot of the queued/running/succeeded/failed/cancelled counts."""
        with self._lock:
            return RuntimeStats(
                queued=len(self._pending),
                running=self._running,
                succeeded=self._succeeded,
                failed=self._failed,
                cancelled=self._cancelled,
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

        ``async def`` callables run on the runtime's loop; other callables run on its
        thread pool. The job is named after ``fn.__qualname__``; use
        :meth:`submit_with` to set a name or request id. Thread-safe, callable from any
        thread, from the runtime's own loop and from a running handler. Starts the
        runtime if needed.

        Args:
            fn: the handler to run.
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
        return self._submit(fn, args, kwargs, None, None)

    @overload
    def submit_with(
        self,
        fn: Callable[..., Coroutine[Any, Any, T]],
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
        request_id: str | None = None,
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
    ) -> RuntimeJob[T]: ...

    def submit_with(
        self,
        fn: Callable[..., Any],
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
        request_id: str | None = None,
    ) -> RuntimeJob[Any]:
        """Like :meth:`submit`, with explicit arguments and job metadata.

        Args:
            fn: the handler to run.
            args: positional arguments for ``fn``.
            kwargs: keyword arguments for ``fn``.
            name: the job's name; defaults to ``fn.__qualname__``.
            request_id: an id to correlate the job with the request that made it.

        Returns:
            The :class:`RuntimeJob` handle.

        Raises:
            QueueFull: the runtime is at its bound; the job was not accepted.
            RuntimeShutDown: the runtime has been shut down.
            TypeError: ``fn`` is not callable.
        """
        return self._submit(
            fn, tuple(args), dict(kwargs) if kwargs else _EMPTY_KWARGS, name, request_id
        )

    def _submit(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        name: str | None,
        request_id: str | None,
    ) -> RuntimeJob[Any]:
        last = self._last_callable  # the same callable is usually submitted many times
        if last[0] is fn:
            is_async, default_name = last[1], last[2]
        else:
            if not callable(fn):
                raise TypeError(f"{type(fn).__name__!r} object is not callable")
            is_async, default_name = _is_async_callable(fn), _callable_name(fn)
            self._last_callable = (fn, is_async, default_name)
        if self._loop is None:
            self.start()
        job: RuntimeJob[Any] = RuntimeJob(
            self, fn, args, kwargs, is_async, default_name if name is None else name, request_id
        )
        pending = self._pending
        with self._lock:
            if self._closed:
                raise RuntimeShutDown(self._shut_down_message())
            if len(pending) + self._running >= self._capacity:
                raise QueueFull(
                    f"background runtime {self._name!r} is full:"
                    f" {len(pending) + self._running} jobs unfinished"
                    f" (max_queue_size={self._max_queue_size} +"
                    f" max_concurrent_tasks={self._max_concurrent})"
                )
            pending.append(job)
            wake = bool(self._idle) and not self._wake_scheduled
            if wake:
                self._wake_scheduled = True
        if wake:
            loop = self._loop
            assert loop is not None
            try:
                if self._on_loop_thread():
                    loop.call_soon(self._wake)
                else:
                    loop.call_soon_threadsafe(self._wake)
            except RuntimeError:  # loop closed by a concurrent shutdown: drain saw the job
                pass
        return job

    def _shut_down_message(self) -> str:
        return f"background runtime {self._name!r} has shut down and no longer accepts jobs"

    def _on_loop_thread(self) -> bool:
        return self._loop_ident is not None and threading.get_ident() == self._loop_ident

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

    async def _worker(self, slot: int) -> None:
        """Run jobs from the queue one at a time; there is one worker per execution slot.

        Finishing a job and starting the next happen under one lock acquisition; after
        ``_YIELD_EVERY`` async jobs in a row the worker yields to the loop.
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
                        job._state = _RUNNING
                    elif self._stopping:
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
            value = await fn(*job._args, **job._kwargs)
        except asyncio.CancelledError:
            task = asyncio.current_task()
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
                    value = fn(*job._args, **job._kwargs)
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
        """Record a job's end and, as ``take`` says, start the next queued job in its slot.

        ``take`` is ``_TAKE_NONE``, ``_TAKE_SYNC`` (only if the next job is sync: a pool
        thread is calling) or ``_TAKE_ANY``. Returns the job started, if any.

        A failure is logged before the job is marked done, so whoever sees the job done
        also sees its log record.
        """
        error = reason
        tb: str | None = None
        if exc is not None:
            error = _error_text(exc)
            tb = "".join(_traceback.format_exception(type(exc), exc, exc.__traceback__))
            logger.error(
                "background job %s (%s) failed: %s",
                job._name,
                job.id,
                error,
                exc_info=(type(exc), exc, exc.__traceback__),
            )
        next_job: RuntimeJob[Any] | None = None
        with self._lock:
            # The outcome first, the state last: readers check the state without the lock.
            job._value = value
            job._exc = exc
            job._error = error
            job._traceback = tb
            job._state = state
            job._fn = None
            job._args = ()
            job._kwargs = _EMPTY_KWARGS
            self._finished += 1
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
                next_job._state = _RUNNING
            else:
                self._running -= 1
                if self._slots[slot] is job:
                    self._slots[slot] = None
        if waiters:
            _notify(waiters)
        return next_job

    # -- draining --------------------------------------------------------------------

    async def _drain(self, timeout: float) -> DrainReport:
        """Let the workers empty the queue, then cancel leftovers (runs on the loop)."""
        with self._lock:
            self._stopping = True
            idle = self._idle
            self._idle = []
        for fut in idle:
            if not fut.done():
                fut.set_result(None)
        still_running: set[asyncio.Task[None]] = set()
        if self._workers:
            _, still_running = await asyncio.wait(self._workers, timeout=timeout)
        with self._lock:
            completed = self._finished - self._finished_at_close
            timed_out = bool(still_running or self._pending or any(self._slots))
            unfinished_jobs: list[RuntimeJob[Any]] = []
            waiters: list[_Waiter] = []
            if timed_out:
                unfinished_jobs, waiters = self._abandon_locked()
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

    def _abandon_locked(self) -> tuple[list[RuntimeJob[Any]], list[_Waiter]]:
        """Give up on the remaining work; the caller holds ``_lock``.

        Queued jobs end ``"cancelled"`` without starting. Returns the unfinished jobs
        (those queued, then those running) and the waiters of the cancelled ones, to be
        notified once the lock is released.
        """
        self._abandoned = True
        leftovers = list(self._pending)
        running = [job for job in self._slots if job is not None]
        self._pending.clear()
        self._cancelled += len(leftovers)
        waiters: list[_Waiter] = []
        for job in leftovers:
            job._error = "runtime shut down before the job started"
            job._state = _CANCELLED
            job._fn = None
            job._args = ()
            job._kwargs = _EMPTY_KWARGS
            if job._waiters:
                waiters.extend(job._waiters)
            job._waiters = None
        return leftovers + running, waiters

    def _abandon_unresponsive(self) -> DrainReport:
        """Build the report when the loop did not answer (a handler blocks it)."""
        with self._lock:
            completed = self._finished - self._finished_at_close
            jobs, waiters = self._abandon_locked()
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
