"""The working side of a ``BackgroundRuntime``: :class:`Executor` holds the runtime's
state and the worker coroutines (one per execution slot), the timer that moves scheduled
and retrying jobs to the queue, the runs of async handlers on the loop and of sync
handlers on the thread pool, the bookkeeping at the end of every attempt (``_finish``),
admission and cancellation."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import heapq
import itertools
import logging
import math
import threading
import time
import traceback as _traceback
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..context import CURRENT
from ..exceptions import Cancel
from .attempts import (
    _CANCEL_GRACE,
    _CANCELLED_BY_REQUEST,
    _THREAD_STATE,
    _TOO_LATE_RETRY,
    _now,
    _timeout_text,
    _uncancel,
    _with_timeout,
    next_attempt_at,
)
from .checks import _error_text
from .runtime_job import (
    _CANCELLED,
    _EMPTY_KWARGS,
    _FAILED,
    _PENDING,
    _RETRYING,
    _RUNNING,
    _SUCCEEDED,
    _WAITING,
    RuntimeJob,
    RuntimeJobStatus,
    _notify,
    _resolve_future,
    take_open,
)

if TYPE_CHECKING:
    from .runtime_job import _Waiter

logger = logging.getLogger("spikard_tasks.runtime")

# A worker coroutine yields to the loop after this many async jobs in a row that finished
# without suspending, so callbacks (wake-ups, waiters, shutdown) are never starved.
_YIELD_EVERY = 64
# What _finish may start in the slot it frees: nothing, a sync job only, or any job.
_TAKE_NONE = 0
_TAKE_SYNC = 1
_TAKE_ANY = 2


class Executor:
    """The state of a ``BackgroundRuntime`` and the work done on it: admission, the loop
    thread, the worker coroutines that run handlers, outcomes and cancellation.

    :class:`~spikard_tasks.runtime.BackgroundRuntime` owns one (and a
    :class:`~spikard_tasks.inprocess.drain.Drainer` for shutdown) and adds validation,
    submission and the public API. Everything from ``_pending`` to ``_cut_off`` is
    guarded by ``_lock``.
    """

    def __init__(self, name: str, max_concurrent: int, max_queue_size: int) -> None:
        self._name = name
        self._max_concurrent = max_concurrent
        self._max_queue_size = max_queue_size
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
        self._gate: Callable[[RuntimeJob[Any]], bool] | None = None  # paused, limited
        self._on_end: Callable[[RuntimeJob[Any]], None] | None = None  # limits' counts

        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._loop_ident: int | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._timer: asyncio.TimerHandle | None = None  # loop thread only

    # -- queue and loop helpers (shared with admission and cancellation) -------------

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
                        gate = self._gate  # None unless a queue is paused or limited
                        job = pending.popleft() if gate is None else take_open(pending, gate)
                    if job is not None:
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
        token = CURRENT.set(job)
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
        finally:
            CURRENT.reset(token)
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
        outside = CURRENT.set(None)
        try:
            next_job: RuntimeJob[Any] | None = job
            while next_job is not None:
                job = next_job
                fn = job._fn
                assert fn is not None
                CURRENT.set(job)  # this thread's value is reset after the batch
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
            CURRENT.reset(outside)
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
            retry_at = next_attempt_at(job, exc, now, self._abandoned)
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
            if self._on_end is not None:
                self._on_end(job)
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
                and self._gate is None
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

    def _shut_down_message(self) -> str:
        return f"background runtime {self._name!r} has shut down and no longer accepts jobs"

    # -- cancellation ----------------------------------------------------------------

    def _cancel_locked(self, job: RuntimeJob[Any], reason: str) -> list[_Waiter] | None:
        """End a job that is not running ``"cancelled"``; return its waiters."""
        job._end_locked(_CANCELLED, reason, _now())
        self._cancelled += 1
        waiters = job._waiters
        job._waiters = None
        return waiters
