"""``Operations``: what an operator reads and does to a queue's store — figures per
queue, the job list, retry, bulk cancel and purge, pause and resume, flow-control limits,
live workers. A base
of ``TaskQueue`` (like ``TaskRegistry``); each method has an ``a``-prefixed awaitable twin
that runs it on the default executor.

On a durable URL they act on the whole store (every queue in it, every process using
it); on ``inprocess://`` on the jobs this process keeps (see
:mod:`spikard_tasks.inprocess`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ._backend import Backend
from ._flow import check_max_running, check_rate
from ._ops_filter import (
    FINISHED,
    RETRYABLE,
    build_filter,
    check_limit,
    check_older_than,
    parse_cursor,
)
from ._text import check_text
from .config import TaskQueueConfig
from .exceptions import ConfigError
from .ops_types import JobPage, LimitInfo, Stats, WorkerInfo

__all__ = ["Operations"]

T = TypeVar("T")

#: What ``status=`` takes: a state name, several, or ``None`` (any state).
StatusArg = str | Sequence[str] | None


async def _off_loop(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, lambda: fn(*args, **kwargs))


class Operations:
    """Stats, the job list and the operator's actions (the base of ``TaskQueue``)."""

    _backend: Backend
    config: TaskQueueConfig

    # -- reading -----------------------------------------------------------------------

    def stats(self) -> Stats:
        """Figures per queue of the store: jobs per state, how long the oldest ready job
        has waited, jobs succeeded and failed in the last minute, whether it is paused.
        ``stats().counts`` sums the states over every queue."""
        return self._backend.stats()

    async def astats(self) -> Stats:
        """Awaitable twin of :meth:`stats`."""
        return await _off_loop(self.stats)

    def list_jobs(
        self,
        *,
        status: StatusArg = None,
        task: str | None = None,
        queue: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> JobPage:
        """One page of jobs, newest first (by enqueue time, then id), that match every
        filter given: ``status`` (a state or several: ``"failed"``, ``["pending",
        "scheduled"]``), ``task``, ``queue``, enqueued at or after ``since`` and before
        ``until`` (naive datetimes are UTC). ``limit``: 1 to 1000 jobs. Pass the page's
        ``next_cursor`` as ``cursor`` for the next one (keyset pagination: pages stay
        consistent while jobs are added, and no page costs more than the first)."""
        flt = build_filter(status, task, queue, since, until)
        limit = check_limit(limit)
        parse_cursor(cursor)
        return self._backend.list_jobs(flt, limit, cursor)

    async def alist_jobs(
        self,
        *,
        status: StatusArg = None,
        task: str | None = None,
        queue: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> JobPage:
        """Awaitable twin of :meth:`list_jobs`."""
        return await _off_loop(
            self.list_jobs,
            status=status,
            task=task,
            queue=queue,
            since=since,
            until=until,
            limit=limit,
            cursor=cursor,
        )

    def workers(self) -> list[WorkerInfo]:
        """The live workers of the store (every host), by name: a worker that missed
        two heartbeats is gone. On ``inprocess://``: this process' running worker."""
        return self._backend.workers()

    async def aworkers(self) -> list[WorkerInfo]:
        """Awaitable twin of :meth:`workers`."""
        return await _off_loop(self.workers)

    # -- acting on jobs ----------------------------------------------------------------

    def retry(self, job_id: str) -> bool:
        """Puts a ``failed`` or ``cancelled`` job back to ``pending``, due now, with a
        fresh attempt budget (its earlier errors stay in ``info().errors``). ``False``
        for a job in another state, an unknown id, or one whose ``unique_key`` an
        unfinished job holds now."""
        if not isinstance(job_id, str) or not job_id:
            raise ConfigError(f"job_id must be a non-empty string, got {job_id!r}")
        return self._backend.retry(job_id)

    async def aretry(self, job_id: str) -> bool:
        """Awaitable twin of :meth:`retry`."""
        return await _off_loop(self.retry, job_id)

    def retry_jobs(
        self,
        *,
        status: StatusArg = None,
        task: str | None = None,
        queue: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> int:
        """:meth:`retry` for every ``failed`` and ``cancelled`` job matching the filter
        (``status`` narrows to one of those two); returns how many went back."""
        flt = build_filter(status, task, queue, since, until).restricted(RETRYABLE, "retry")
        return self._backend.retry_jobs(flt)

    async def aretry_jobs(
        self,
        *,
        status: StatusArg = None,
        task: str | None = None,
        queue: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> int:
        """Awaitable twin of :meth:`retry_jobs`."""
        return await _off_loop(
            self.retry_jobs, status=status, task=task, queue=queue, since=since, until=until
        )

    def cancel_jobs(
        self,
        *,
        status: StatusArg = None,
        task: str | None = None,
        queue: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> int:
        """Cancels every job matching the filter that has not started and asks the
        running ones to stop (as :meth:`TaskQueue.cancel` does for one); returns how
        many of both. Finished jobs are not touched."""
        flt = build_filter(status, task, queue, since, until)
        return self._backend.cancel_jobs(flt)

    async def acancel_jobs(
        self,
        *,
        status: StatusArg = None,
        task: str | None = None,
        queue: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> int:
        """Awaitable twin of :meth:`cancel_jobs`."""
        return await _off_loop(
            self.cancel_jobs, status=status, task=task, queue=queue, since=since, until=until
        )

    def purge(
        self,
        *,
        status: StatusArg = None,
        task: str | None = None,
        queue: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        older_than: float | dt.timedelta = 0,
    ) -> int:
        """Deletes finished jobs (``succeeded``, ``failed``, ``cancelled``; ``status``
        narrows) matching the filter that finished more than ``older_than`` seconds (or
        a ``timedelta``) ago; returns how many. Unfinished jobs are never deleted. The
        store deletes in bounded batches, so a large purge does not lock it for long."""
        flt = build_filter(status, task, queue, since, until).restricted(FINISHED, "purge")
        return self._backend.purge(flt, check_older_than(older_than))

    async def apurge(
        self,
        *,
        status: StatusArg = None,
        task: str | None = None,
        queue: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        older_than: float | dt.timedelta = 0,
    ) -> int:
        """Awaitable twin of :meth:`purge`."""
        return await _off_loop(
            self.purge,
            status=status,
            task=task,
            queue=queue,
            since=since,
            until=until,
            older_than=older_than,
        )

    # -- pausing -----------------------------------------------------------------------

    def _queue_name(self, queue: str | None) -> str:
        if queue is None:
            return self.config.queue
        if not isinstance(queue, str) or not queue:
            raise ConfigError(f"queue must be a non-empty string or None, got {queue!r}")
        check_text("queue name", queue)
        return queue

    def pause(self, queue: str | None = None) -> bool:
        """Pauses ``queue`` (default: this queue's name), persisted in the store: every
        worker on every host stops starting its jobs within one poll interval; jobs
        already started finish, and enqueueing still works. ``False`` if it was paused."""
        return self._backend.pause(self._queue_name(queue))

    async def apause(self, queue: str | None = None) -> bool:
        """Awaitable twin of :meth:`pause`."""
        return await _off_loop(self.pause, queue)

    def resume(self, queue: str | None = None) -> bool:
        """Resumes a paused ``queue`` (default: this queue's name); ``False`` if it was
        not paused."""
        return self._backend.resume(self._queue_name(queue))

    async def aresume(self, queue: str | None = None) -> bool:
        """Awaitable twin of :meth:`resume`."""
        return await _off_loop(self.resume, queue)

    def paused(self) -> list[str]:
        """The paused queues of the store, by name."""
        return sorted(self._backend.paused())

    async def apaused(self) -> list[str]:
        """Awaitable twin of :meth:`paused`."""
        return await _off_loop(self.paused)

    # -- flow control ------------------------------------------------------------------

    def limit(
        self,
        queue: str,
        *,
        max_running: int | None = None,
        rate_limit: str | None = None,
    ) -> bool:
        """Limits the jobs of ``queue`` across every worker on every host, kept in the
        store: at most ``max_running`` of them ``running`` at once (claimed ahead
        included) and at most ``rate_limit`` starts (``"100/s"``, ``"600/m"``, ``"10/h"``,
        ``"5/d"``: a token bucket of one token, so starts are spaced evenly). Replaces the
        queue's earlier limit; with both ``None`` it removes it. Jobs held back stay
        ``pending`` (no attempt used, never failed for it). Returns whether anything
        changed. ``ConfigError`` for a bad rate or a ``max_running`` below 1."""
        name = self._limited_queue(queue)
        rate = check_rate(rate_limit)
        cap = check_max_running(max_running)
        return self._backend.set_limit("queue", name, rate, cap)

    async def alimit(
        self,
        queue: str,
        *,
        max_running: int | None = None,
        rate_limit: str | None = None,
    ) -> bool:
        """Awaitable twin of :meth:`limit`."""
        return await _off_loop(self.limit, queue, max_running=max_running, rate_limit=rate_limit)

    def limits(self) -> list[LimitInfo]:
        """Every stored limit — of queues (:meth:`limit`) and of tasks (their
        ``rate_limit`` / ``max_running``, stored by the workers that run them) — with the
        jobs running under it now and when its rate allows the next start."""
        return self._backend.limits()

    async def alimits(self) -> list[LimitInfo]:
        """Awaitable twin of :meth:`limits`."""
        return await _off_loop(self.limits)

    def _limited_queue(self, queue: object) -> str:
        if not isinstance(queue, str) or not queue:
            raise ConfigError(f"queue must be a non-empty string, got {queue!r}")
        return check_text("queue name", queue)
