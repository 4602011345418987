"""Shutdown's work behind ``BackgroundRuntime.shutdown``: the drain on the loop
(:class:`Drainer`, which works on the runtime's :class:`~.executor.Executor`), what it
abandons when time runs out, and the release of the loop and pool."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from typing import TYPE_CHECKING, Any

from .attempts import _CANCEL_GRACE, _TOO_LATE_RETRY, _now
from .checks import _describe
from .executor import Executor
from .runtime_job import _SCHEDULED, _WAITING, DrainReport, RuntimeJob, _notify

if TYPE_CHECKING:
    from .runtime_job import _Waiter

logger = logging.getLogger("spikard_tasks.runtime")

_TOO_LATE = "runtime shut down before the job's time"


class Drainer:
    """Drains a ``BackgroundRuntime``'s :class:`Executor` at shutdown."""

    def __init__(self, ex: Executor) -> None:
        self._ex = ex

    # -- draining --------------------------------------------------------------------

    def _start_drain(self, seconds: float) -> concurrent.futures.Future[DrainReport] | None:
        """Schedule the drain on the loop; ``None`` if the loop thread is gone.

        The thread is gone in a child process after ``fork`` (only the forking thread
        survives), and nobody can drain there.
        """
        loop = self._ex._loop
        thread = self._ex._thread
        if loop is None or thread is None or not thread.is_alive() or loop.is_closed():
            return None
        return asyncio.run_coroutine_threadsafe(self._drain(seconds), loop)

    async def _drain(self, timeout: float) -> DrainReport:
        """Let the workers empty the queue, then cancel leftovers (runs on the loop)."""
        deadline = _now() + timeout
        with self._ex._lock:
            self._ex._stopping = True
            self._ex._drain_deadline = deadline
            too_late = self._cut_waiting_locked(deadline)
            idle = self._ex._idle
            self._ex._idle = []
        if too_late:
            _notify(too_late)
        for fut in idle:
            if not fut.done():
                fut.set_result(None)
        still_running: set[asyncio.Task[None]] = set()
        if self._ex._workers:
            _, still_running = await asyncio.wait(self._ex._workers, timeout=timeout)
        with self._ex._lock:
            completed = self._ex._finished - self._ex._finished_at_close
            timed_out = bool(
                still_running or self._ex._pending or any(self._ex._slots) or self._ex._waiting
            )
            unfinished_jobs: list[RuntimeJob[Any]] = []
            waiters: list[_Waiter] = []
            if timed_out:
                unfinished_jobs, waiters = self._abandon_locked()
            unfinished_jobs += self._ex._cut_off
            self._ex._cut_off = []
        if waiters:
            _notify(waiters)
        unfinished = [_describe(job) for job in unfinished_jobs]
        if timed_out:
            logger.warning(
                "background runtime %r: drain timed out after %ss; %d job(s) unfinished: %s",
                self._ex._name,
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
        for due, _, job in self._ex._heap:
            if due > deadline and job._state in _WAITING:
                reason = _TOO_LATE if job._state == _SCHEDULED else _TOO_LATE_RETRY
                self._ex._waiting -= 1
                waiters.extend(self._ex._cancel_locked(job, reason) or ())
                self._ex._cut_off.append(job)
        return waiters

    def _abandon_locked(self) -> tuple[list[RuntimeJob[Any]], list[_Waiter]]:
        """Give up on the remaining work; the caller holds ``_lock``.

        Queued and waiting jobs end ``"cancelled"`` without starting. Returns the
        unfinished jobs (those queued, then those running, then those waiting) and the
        waiters of the cancelled ones, to be notified once the lock is released.
        """
        self._ex._abandoned = True
        leftovers = list(self._ex._pending)
        running = [job for job in self._ex._slots if job is not None]
        waiting = [job for _, _, job in self._ex._heap if job._state in _WAITING]
        self._ex._pending.clear()
        self._ex._heap.clear()
        self._ex._waiting = 0
        waiters: list[_Waiter] = []
        for job in leftovers:
            waiters.extend(
                self._ex._cancel_locked(job, "runtime shut down before the job started") or ()
            )
        for job in waiting:
            waiters.extend(self._ex._cancel_locked(job, _TOO_LATE) or ())
        return leftovers + running + waiting, waiters

    def _abandon_unresponsive(self) -> DrainReport:
        """Build the report when the loop did not answer (a handler blocks it)."""
        with self._ex._lock:
            completed = self._ex._finished - self._ex._finished_at_close
            jobs, waiters = self._abandon_locked()
            jobs += self._ex._cut_off
            self._ex._cut_off = []
        if waiters:
            _notify(waiters)
        unfinished = [_describe(job) for job in jobs]
        logger.error(
            "background runtime %r: event loop unresponsive or gone during shutdown (a"
            " handler may be blocking it); %d job(s) unfinished: %s",
            self._ex._name,
            len(unfinished),
            ", ".join(unfinished),
        )
        return DrainReport(completed, len(unfinished), unfinished, True)

    def _finalize(self, join: bool) -> None:
        """Stop the loop, join its thread briefly (if ``join``) and release the pool.

        The join is skipped when the loop did not answer: a handler is blocking it, and
        the daemon thread ends whenever that handler returns.
        """
        loop = self._ex._loop
        thread = self._ex._thread
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # already closed
                loop.call_soon_threadsafe(loop.stop)
        if join and thread is not None and thread is not threading.current_thread():
            thread.join(_CANCEL_GRACE * 2)
        if self._ex._executor is not None:
            self._ex._executor.shutdown(wait=False, cancel_futures=True)
