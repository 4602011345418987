"""Shutdown's work behind ``BackgroundRuntime.shutdown``: the drain on the loop
(``_Drainer``, a base class of the runtime), what it abandons when time runs out, the
release of the loop and pool, and the process hooks that reach runtimes still running
(after ``fork`` and at interpreter exit).

Split out of :mod:`spikard_tasks.runtime`, whose ``BackgroundRuntime`` inherits
``_Drainer`` (which inherits :class:`~spikard_tasks._runtime_exec._Executor`).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import logging
import os
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._runtime_checks import _describe
from ._runtime_exec import _CANCEL_GRACE, _TOO_LATE_RETRY, _Executor, _now
from ._runtime_job import _SCHEDULED, _WAITING, DrainReport, RuntimeJob, _notify

if TYPE_CHECKING:
    from ._runtime_job import _Waiter
    from .runtime import BackgroundRuntime

logger = logging.getLogger("spikard_tasks.runtime")

_TOO_LATE = "runtime shut down before the job's time"


class _Drainer(_Executor):
    """Drains a ``BackgroundRuntime`` at shutdown (a base class only)."""

    # Set by BackgroundRuntime.__init__, like those declared on _Executor; _cancel_locked
    # is BackgroundRuntime's.
    _finished_at_close: int
    _thread: threading.Thread | None
    _cancel_locked: Callable[[RuntimeJob[Any], str], list[_Waiter] | None]

    # -- draining --------------------------------------------------------------------

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
