"""The operations of an ``inprocess://`` queue (``stats``, ``list_jobs``, ``retry``,
``cancel_jobs``, ``purge``, ``pause``, ``limit``, ``workers``) over the jobs this process keeps: the
unfinished ones and the latest ``keep_results`` finished ones (or any whose ``Job``
handle is alive). A base of :class:`~spikard_tasks.inprocess.backend.InProcessBackend`.

Pausing a queue name keeps the runtime from starting that name's jobs (they stay
``pending``; running ones finish); resuming starts them again. Limits (``limit``, and the
tasks' ``rate_limit``/``max_running``) hold jobs the same way, in this process (see
:mod:`spikard_tasks.inprocess.limits`). A retried job runs again
under the same id, with a fresh attempt budget and its earlier errors kept.
"""

from __future__ import annotations

import collections
import os
import socket
import threading
import time
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .. import _native
from .._ops_filter import JobFilter, parse_cursor
from ..exceptions import QueueFull, RuntimeShutDown
from ..job import JobInfo
from ..ops_types import STATES, JobPage, LimitInfo, QueueStats, Stats, WorkerInfo
from .attempts import _now
from .limits import LocalLimits, gate
from .meta import JobMeta, job_info
from .runtime import BackgroundRuntime
from .runtime_job import RuntimeJob, _utc

if TYPE_CHECKING:
    from ..task import Task
    from .executor import Executor

__all__ = ["InProcessOps", "WorkerEntry"]

_READY = ("pending", "retrying")
_NOT_STARTED = ("pending", "scheduled", "retrying")


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds * 1000)


def _matches(job: RuntimeJob[Any], state: str, flt: JobFilter) -> bool:
    meta: JobMeta = job.meta
    if flt.statuses and state not in flt.statuses:
        return False
    if flt.task is not None and meta.task != flt.task:
        return False
    if flt.queue is not None and meta.queue != flt.queue:
        return False
    enqueued = int(job.enqueued_at * 1000)
    if flt.since_ms is not None and enqueued < flt.since_ms:
        return False
    return flt.until_ms is None or enqueued < flt.until_ms


class WorkerEntry:
    """A running ``InProcessWorker`` as ``workers()`` lists it."""

    __slots__ = ("name", "queues", "started_at")

    def __init__(self, name: str, queues: list[str], started_at: float) -> None:
        self.name = name
        self.queues = queues
        self.started_at = started_at


class InProcessOps:
    """The operations over this process' jobs (see the module documentation)."""

    _lock: threading.Lock
    _runtime: BackgroundRuntime | None
    _jobs: weakref.WeakValueDictionary[str, RuntimeJob[Any]]
    _recent: collections.deque[RuntimeJob[Any]]
    _unique: dict[str, RuntimeJob[Any]]
    _paused: set[str]
    _workers: dict[str, WorkerEntry]
    _flow: LocalLimits
    _tasks: Mapping[str, Task[Any, Any]]

    def runtime(self) -> BackgroundRuntime:
        """The current runtime (the backend's)."""
        raise NotImplementedError

    # -- the jobs kept -----------------------------------------------------------------

    def _kept(self) -> list[RuntimeJob[Any]]:
        """Every job this process keeps (one per id)."""
        for _ in range(100):
            try:
                return list(self._jobs.values())
            except RuntimeError:  # another thread enqueued while we copied
                continue
        with self._lock:
            return list(self._jobs.values())

    def _matching(self, flt: JobFilter) -> list[tuple[RuntimeJob[Any], str]]:
        out: list[tuple[RuntimeJob[Any], str]] = []
        for job in self._kept():
            state = job.status()
            if _matches(job, state, flt):
                out.append((job, state))
        return out

    # -- reading -----------------------------------------------------------------------

    def stats(self) -> Stats:
        """Figures per queue name over the jobs kept (and every paused name)."""
        now = time.time()
        per: dict[str, dict[str, Any]] = {}

        def entry(name: str) -> dict[str, Any]:
            if name not in per:
                per[name] = {"counts": dict.fromkeys(STATES, 0), "oldest": None, "ok": 0, "bad": 0}
            return per[name]

        for job in self._kept():
            state = job.status()
            row = entry(job.meta.queue)
            row["counts"][state] += 1
            if state in _READY:
                due = job.run_at if job.run_at is not None else job.enqueued_at
                if due <= now and (row["oldest"] is None or due < row["oldest"]):
                    row["oldest"] = due
            finished = job.finished_at
            if finished is not None and now - 60.0 <= finished <= now:
                if state == "succeeded":
                    row["ok"] += 1
                elif state == "failed":
                    row["bad"] += 1
        for name in list(self._paused):
            entry(name)
        queues = [
            QueueStats(
                queue=name,
                counts=row["counts"],
                oldest_ready_age=None if row["oldest"] is None else max(0.0, now - row["oldest"]),
                succeeded_last_minute=row["ok"],
                failed_last_minute=row["bad"],
                paused=name in self._paused,
            )
            for name, row in sorted(per.items())
        ]
        at = _utc(now)
        assert at is not None
        return Stats(at=at, queues=queues, limits=self.limits())

    def list_jobs(self, flt: JobFilter, limit: int, cursor: str | None) -> JobPage:
        """A page of the kept jobs, newest first by (enqueue time in ms, id)."""
        after = parse_cursor(cursor)
        keyed = [((int(job.enqueued_at * 1000), job.id), job) for job, _ in self._matching(flt)]
        if after is not None:
            keyed = [item for item in keyed if item[0] < after]
        keyed.sort(key=lambda item: item[0], reverse=True)
        page = keyed[: limit + 1]
        jobs: list[JobInfo] = [job_info(job) for _, job in page[:limit]]
        following = None
        if len(page) > limit:
            last_ms, last_id = page[limit - 1][0]
            following = f"{last_ms}:{last_id}"
        return JobPage(jobs, following)

    def workers(self) -> list[WorkerInfo]:
        """This process' running worker(s): their jobs held are the runtime's running."""
        with self._lock:
            entries = list(self._workers.values())
            runtime = self._runtime
        if not entries:
            return []
        held = 0 if runtime is None else runtime.stats.running
        limit = 0 if runtime is None else runtime.max_concurrent_tasks
        beat = _utc(time.time())
        out = []
        for entry in sorted(entries, key=lambda e: e.name):
            started = _utc(entry.started_at)
            assert started is not None and beat is not None
            out.append(
                WorkerInfo(
                    name=entry.name,
                    host=socket.gethostname(),
                    pid=os.getpid(),
                    queues=list(entry.queues),
                    concurrency=limit,
                    started_at=started,
                    last_heartbeat=beat,
                    jobs_held=held,
                    version=_native.__version__,
                )
            )
        return out

    # -- acting ------------------------------------------------------------------------

    def retry(self, job_id: str) -> bool:
        """Runs a failed or cancelled job again under its id (fresh budget)."""
        old = self._jobs.get(job_id)
        if old is None or old.status() not in ("failed", "cancelled"):
            return False
        return self._rerun(old)

    def _rerun(self, old: RuntimeJob[Any]) -> bool:
        meta: JobMeta = old.meta
        plan = meta.plan
        if plan is None:
            return False
        runtime = self.runtime()
        with self._lock:
            if self._jobs.get(old.id) is not old:  # retried meanwhile
                return False
            key = meta.unique_key
            holder = None if key is None else self._unique.get(key)
            if holder is not None and holder is not old and not holder.done():
                return False
            job = runtime._new_job(
                plan.runner,
                meta.args,
                meta.kwargs,
                meta.task,
                None,
                job_id=old.id,
                priority=old.priority,
                timeout=plan.timeout,
                retry=plan.retry,
                meta=meta,
            )
            job._errors = list(old._errors or ())  # the history stays
            try:
                runtime._admit((job,))
            except (QueueFull, RuntimeShutDown):
                return False
            self._jobs[job.id] = job
            self._recent.append(job)
            if key is not None:
                self._unique[key] = job
        return True

    def retry_jobs(self, flt: JobFilter) -> int:
        """``retry`` for every kept job matching ``flt`` (failed/cancelled ones)."""
        return sum(1 for job, _ in self._matching(flt) if self._rerun(job))

    def cancel_jobs(self, flt: JobFilter) -> int:
        """Cancels the matching jobs not started; asks running ones (not asked yet)."""
        touched = 0
        for job, state in self._matching(flt):
            if state == "running" and job._cancel_requested:
                continue
            if (state in _NOT_STARTED or state == "running") and job.cancel():
                touched += 1
        return touched

    def purge(self, flt: JobFilter, older_than: float) -> int:
        """Forgets the matching finished jobs that finished ``older_than`` seconds ago."""
        before = time.time() - older_than
        doomed = {
            job.id
            for job, state in self._matching(flt)
            if job.done() and job.finished_at is not None and job.finished_at < before
        }
        if not doomed:
            return 0
        with self._lock:
            for job_id in doomed:
                self._jobs.pop(job_id, None)
            kept = [job for job in self._recent if job.id not in doomed]
            self._recent.clear()
            self._recent.extend(kept)
            self._unique = {k: j for k, j in self._unique.items() if j.id not in doomed}
        return len(doomed)

    # -- pausing and limits: the runtime's gate ----------------------------------------

    def _install_gate(self, ex: Executor) -> None:
        """Sets what ``ex`` asks before it starts a job (its lock held, or a new runtime):
        nothing when no queue name is paused and no limit applies."""
        ex._gate = gate(self._flow, frozenset(self._paused), ex, _now)
        if self._flow.active:
            ex._on_end = self._flow.ended
            self._flow.count_running(ex._slots)

    def _apply_gate(self) -> None:
        runtime = self._runtime
        if runtime is not None:  # the gate is read under the runtime's lock
            ex = runtime._ex
            with ex._lock:
                self._install_gate(ex)
            ex._call_on_loop(ex._wake)

    def pause(self, queue: str) -> bool:
        """Keeps the runtime from starting jobs of ``queue``."""
        with self._lock:
            if queue in self._paused:
                return False
            self._paused.add(queue)
            self._apply_gate()
        return True

    def resume(self, queue: str) -> bool:
        """Lets the runtime start jobs of ``queue`` again."""
        with self._lock:
            if queue not in self._paused:
                return False
            self._paused.discard(queue)
            self._apply_gate()
        return True

    def paused(self) -> list[str]:
        """The paused queue names."""
        with self._lock:
            return sorted(self._paused)

    def set_limit(self, scope: str, name: str, rate: str | None, max_running: int | None) -> bool:
        """Limits the jobs of task or queue ``name`` in this process (both ``None``:
        removes the limit); whether that changed anything."""
        with self._lock:
            changed = self._flow.set(scope, name, rate, max_running)
            if changed:
                self._apply_gate()
        return changed

    def limits(self) -> list[LimitInfo]:
        """The limits of this process' jobs: the queue names' and the tasks' (from their
        ``rate_limit`` / ``max_running``)."""
        self.sync_task_limits()
        return self._flow.infos(_now())

    def sync_task_limits(self) -> None:
        """Applies the registered tasks' ``rate_limit`` and ``max_running`` (a task
        registered since counts from now on)."""
        for name, task in list(self._tasks.items()):
            if task.rate_limit is not None or task.max_running is not None:
                self.set_limit("task", name, task.rate_limit, task.max_running)

    def set_local_caps(self, caps: dict[str, int]) -> None:
        """The per-queue concurrency of the running worker (``{}`` when it stops)."""
        with self._lock:
            self._flow.set_local(caps)
            self._apply_gate()

    # -- workers -----------------------------------------------------------------------

    def worker_started(self, name: str, queues: list[str]) -> None:
        """Lists a starting ``InProcessWorker`` in ``workers()``."""
        with self._lock:
            self._workers[name] = WorkerEntry(name, list(queues), time.time())

    def worker_stopped(self, name: str) -> None:
        """Removes a stopped worker from ``workers()``."""
        with self._lock:
            self._workers.pop(name, None)
