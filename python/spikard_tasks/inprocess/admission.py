"""Admission and cancellation of a ``BackgroundRuntime``'s jobs: all of a batch or none
(``QueueFull``), and cancelling a job in any state."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..exceptions import QueueFull, RuntimeShutDown
from .attempts import _CANCELLED_BY_REQUEST
from .executor import Executor
from .runtime_job import _PENDING, _RUNNING, _SCHEDULED, _WAITING, RuntimeJob, _notify

if TYPE_CHECKING:
    from .runtime_job import _Waiter

__all__ = ["Admission"]


class Admission:
    """Admits jobs into an :class:`Executor` and cancels them; the owner of every
    :class:`RuntimeJob` of the runtime."""

    def __init__(self, ex: Executor) -> None:
        self._ex = ex

    @property
    def _lock(self) -> threading.Lock:
        """The runtime's lock (replaced after ``fork``)."""
        return self._ex._lock

    def _on_loop_thread(self) -> bool:
        """Whether the caller runs on the runtime's loop thread."""
        return self._ex._on_loop_thread()

    def _admit(self, jobs: Sequence[RuntimeJob[Any]]) -> None:
        """Accept all of ``jobs`` or none of them (``QueueFull``, ``RuntimeShutDown``);
        the runtime has started the loop."""
        ex = self._ex
        arm = False
        pending = ex._pending
        with ex._lock:
            if ex._closed:
                raise RuntimeShutDown(ex._shut_down_message())
            unfinished = len(pending) + ex._running + ex._waiting
            if unfinished + len(jobs) > ex._capacity:
                batch = f"; a batch of {len(jobs)} does not fit" if len(jobs) > 1 else ""
                raise QueueFull(
                    f"background runtime {ex._name!r} is full:"
                    f" {unfinished} jobs unfinished"
                    f" (max_queue_size={ex._max_queue_size} +"
                    f" max_concurrent_tasks={ex._max_concurrent}){batch}"
                )
            for job in jobs:
                if job._due is None:
                    if not pending or pending[-1]._priority >= job._priority:
                        pending.append(job)
                    else:
                        ex._insert_by_priority_locked(job)
                else:
                    job._state = _SCHEDULED
                    arm = ex._schedule_locked(job, job._due) or arm
            wake = bool(ex._idle) and bool(pending) and not ex._wake_scheduled
            if wake:
                ex._wake_scheduled = True
        if wake:
            ex._call_on_loop(ex._wake)
        if arm:
            ex._call_on_loop(ex._arm_timer)

    def _cancel(self, job: RuntimeJob[Any]) -> bool:
        """Cancel ``job`` (see :meth:`RuntimeJob.cancel`)."""
        ex = self._ex
        waiters: list[_Waiter] | None = None
        cancel_running = False
        wake_all = False
        with ex._lock:
            state = job._state
            if state == _RUNNING:
                job._cancel_requested = True
                cancel_running = job._is_async
            elif state == _PENDING:
                try:
                    ex._pending.remove(job)
                except ValueError:  # not accepted (yet): nothing to cancel here
                    return False
                waiters = ex._cancel_locked(job, _CANCELLED_BY_REQUEST)
            elif state in _WAITING:
                ex._waiting -= 1
                waiters = ex._cancel_locked(job, _CANCELLED_BY_REQUEST)
                wake_all = ex._stopping and not ex._waiting
            else:
                return False
        if waiters:
            _notify(waiters)
        if cancel_running:
            ex._call_on_loop(self._cancel_running, job)
        if wake_all:
            ex._call_on_loop(ex._wake_all)
        return True

    def _cancel_running(self, job: RuntimeJob[Any]) -> None:
        """Cancel the worker task running async ``job`` (runs on the loop)."""
        ex = self._ex
        if job._state != _RUNNING:
            return
        for slot, current in enumerate(ex._slots):
            if current is job:
                ex._workers[slot].cancel()
                return
