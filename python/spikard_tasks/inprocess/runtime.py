"""``BackgroundRuntime``: the in-process, bounded, non-durable job runner (documented in
:mod:`spikard_tasks.runtime`)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

from ..exceptions import RuntimeShutDown
from ..task import Task
from .admission import Admission
from .attempts import _THREAD_STATE, _now
from .checks import (
    _callable_name,
    _check_positive_int,
    _check_priority,
    _check_timeout,
    _is_async_callable,
    _no_op,
    _optional_seconds,
)
from .drain import Drainer
from .executor import Executor
from .live import LIVE_RUNTIMES
from .runtime_job import (
    _EMPTY_KWARGS,
    _RETRYING,
    DrainReport,
    RetryPolicy,
    RuntimeJob,
    RuntimeJobStatus,
    RuntimeStats,
)

if TYPE_CHECKING:
    pass

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
        max_queue = _check_positive_int("max_queue_size", max_queue_size)
        max_concurrent = _check_positive_int("max_concurrent_tasks", max_concurrent_tasks)
        self._drain_timeout = _check_timeout("drain_timeout", drain_timeout)
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty str, got {name!r}")
        self._ex = Executor(name, max_concurrent, max_queue)
        self._drainer = Drainer(self._ex)
        self._gate = Admission(self._ex)
        self._pid = os.getpid()
        # (submitted object, function to run, is_async, default name) of the last submit.
        self._last_callable: tuple[object, Callable[..., Any], bool, str] = (
            None,
            _no_op,
            False,
            "",
        )

    def _reset_lock(self) -> None:
        """After ``fork``, the lock may be held by a thread that does not exist in the
        child: a fresh one lets the child shut the runtime down."""
        self._ex._lock = threading.Lock()

    # -- configuration and state -----------------------------------------------------

    @property
    def name(self) -> str:
        """The runtime's name (used in thread names and messages)."""
        return self._ex._name

    @property
    def max_queue_size(self) -> int:
        """How many accepted jobs may wait beyond the running ones."""
        return self._ex._max_queue_size

    @property
    def max_concurrent_tasks(self) -> int:
        """The most handlers that run at once."""
        return self._ex._max_concurrent

    @property
    def drain_timeout(self) -> float:
        """Default seconds :meth:`shutdown` lets queued and running work finish."""
        return self._drain_timeout

    @property
    def started(self) -> bool:
        """``True`` once the runtime's loop thread has been started."""
        return self._ex._loop is not None

    @property
    def closed(self) -> bool:
        """``True`` once shutdown has begun: :meth:`submit` raises ``RuntimeShutDown``."""
        return self._ex._closed

    @property
    def stats(self) -> RuntimeStats:
        """A consistent snapshot of the runtime's counters (see :class:`RuntimeStats`)."""
        with self._ex._lock:
            retrying = 0
            if self._ex._waiting:
                retrying = sum(1 for _, _, job in self._ex._heap if job._state == _RETRYING)
            return RuntimeStats(
                queued=len(self._ex._pending),
                running=self._ex._running,
                succeeded=self._ex._succeeded,
                failed=self._ex._failed,
                cancelled=self._ex._cancelled,
                scheduled=self._ex._waiting - retrying,
                retrying=retrying,
                retried=self._ex._retried,
            )

    def __repr__(self) -> str:
        """Return a summary with the name, bounds and counters."""
        state = "closed" if self._ex._closed else ("running" if self.started else "idle")
        s = self.stats
        ex = self._ex
        return (
            f"<BackgroundRuntime {ex._name!r} {state} max_queue_size={ex._max_queue_size}"
            f" max_concurrent_tasks={ex._max_concurrent} queued={s.queued}"
            f" running={s.running} succeeded={s.succeeded} failed={s.failed}>"
        )

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Start the loop thread and the thread pool; a no-op if already started.

        :meth:`submit` calls this on first use, so calling it is optional.

        Raises:
            RuntimeShutDown: the runtime has been shut down.
        """
        with self._ex._lock:
            if self._ex._closed:
                raise RuntimeShutDown(self._ex._shut_down_message())
            if self._ex._loop is not None:
                return
            loop = asyncio.new_event_loop()
            self._ex._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=self._ex._max_concurrent, thread_name_prefix=f"{self._ex._name}-sync"
            )
            thread = threading.Thread(
                target=self._ex._run_loop, args=(loop,), name=f"{self._ex._name}-loop", daemon=True
            )
            self._ex._thread = thread
            self._pid = os.getpid()
            self._ex._loop = loop
            LIVE_RUNTIMES.add(self)
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
        future = self._drainer._start_drain(seconds)
        if future is None:
            return self._drainer._abandon_unresponsive()
        try:
            report = future.result(seconds + _RESPONSE_GRACE)
        except concurrent.futures.TimeoutError:
            future.cancel()
            report = self._drainer._abandon_unresponsive()
            self._drainer._finalize(join=False)
            return report
        self._drainer._finalize(join=True)
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
        future = self._drainer._start_drain(seconds)
        if future is None:
            return self._drainer._abandon_unresponsive()
        try:
            report = await asyncio.wait_for(asyncio.wrap_future(future), seconds + _RESPONSE_GRACE)
        except (asyncio.TimeoutError, TimeoutError):
            report = self._drainer._abandon_unresponsive()
            self._drainer._finalize(join=False)
            return report
        await asyncio.to_thread(self._drainer._finalize, True)
        return report

    def _prepare_shutdown(self, timeout: float | None) -> float | None:
        """Close the runtime; return the drain timeout, or ``None`` if nothing to drain."""
        seconds = self._drain_timeout if timeout is None else _check_timeout("timeout", timeout)
        if self._ex._on_loop_thread() or getattr(_THREAD_STATE, "runtime", None) is self._ex:
            raise RuntimeError(
                f"background runtime {self._ex._name!r} cannot be shut down from one of its own"
                " jobs (the drain would wait for the caller)"
            )
        with self._ex._lock:
            if self._ex._closed:
                return None
            self._ex._closed = True
            self._ex._finished_at_close = self._ex._finished
            if self._ex._loop is None:
                return None
        LIVE_RUNTIMES.discard(self)
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

    def _admit(self, jobs: Sequence[RuntimeJob[Any]]) -> None:
        """Accept all of ``jobs`` or none (``QueueFull``, ``RuntimeShutDown``); starts
        the runtime if needed."""
        if self._ex._loop is None:
            self.start()
        self._gate._admit(jobs)

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
            self._gate,
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
