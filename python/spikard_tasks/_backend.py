"""What a ``TaskQueue`` needs from its backend, and the durable (native) backend.

A :class:`TaskQueue` delegates storage and execution to one backend object chosen from
its URL: :class:`DurableBackend` for the durable URLs (the Rust engine:
``sqlite://``, ``memory://``, …) and
:class:`~spikard_tasks.inprocess.InProcessBackend` for ``inprocess://``. ``Job`` handles
call the same backend, so their API is the same on both.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import Any, Protocol

from . import _native
from ._ops_filter import JobFilter
from .config import TaskQueueConfig
from .exceptions import RuntimeShutDown
from .job import Job, JobBackend, JobInfo
from .ops_types import JobPage, LimitInfo, Stats, WorkerInfo
from .status import JobStatus

__all__ = ["Backend", "DurableBackend", "EnqueueSpec"]

#: One job to enqueue: task name, JSON arguments, JSON keyword arguments and the
#: validated options of :func:`spikard_tasks.options.build_options`.
EnqueueSpec = tuple[str, list[Any], dict[str, Any], dict[str, Any]]


class Backend(JobBackend, Protocol):
    """The operations ``TaskQueue`` and ``Job`` delegate to a backend."""

    #: The backend kind from the URL: ``"sqlite"``, ``"memory"``, ``"inprocess"``, …
    kind: str

    def enqueue(self, batch: Sequence[EnqueueSpec]) -> list[Job[Any]]:
        """Enqueues every job of ``batch`` or none; returns the jobs in order."""
        ...

    def get_job(self, job_id: str) -> Job[Any] | None:
        """The job with this id, or ``None``."""
        ...

    def counts(self, queue: str | None) -> dict[str, int]:
        """Job counts per state."""
        ...

    def close(self) -> None:
        """Releases what the backend holds (connections, a runtime); idempotent."""
        ...

    # The operations (``spikard_tasks.operations``), with checked arguments.

    def stats(self) -> Stats:
        """Figures per queue."""
        ...

    def list_jobs(self, flt: JobFilter, limit: int, cursor: str | None) -> JobPage:
        """One page of matching jobs, newest first."""
        ...

    def retry(self, job_id: str) -> bool:
        """A failed or cancelled job back to pending with a fresh budget."""
        ...

    def retry_jobs(self, flt: JobFilter) -> int:
        """``retry`` for every matching job (``flt.statuses`` failed/cancelled only)."""
        ...

    def cancel_jobs(self, flt: JobFilter) -> int:
        """Cancels (or asks to stop) every matching unfinished job."""
        ...

    def purge(self, flt: JobFilter, older_than: float) -> int:
        """Deletes matching finished jobs that finished ``older_than`` seconds ago."""
        ...

    def pause(self, queue: str) -> bool:
        """Pauses ``queue``; whether that changed anything."""
        ...

    def resume(self, queue: str) -> bool:
        """Resumes ``queue``; whether that changed anything."""
        ...

    def paused(self) -> list[str]:
        """The paused queues."""
        ...

    def workers(self) -> list[WorkerInfo]:
        """The live workers."""
        ...

    def set_limit(self, scope: str, name: str, rate: str | None, max_running: int | None) -> bool:
        """Stores the limit of ``scope`` ``name`` (checked values), or removes it when
        both are ``None``; whether that changed anything."""
        ...

    def limits(self) -> list[LimitInfo]:
        """Every stored limit with its running count."""
        ...


class DurableBackend:
    """The durable backend: the Rust engine, opened on first use."""

    def __init__(self, config: TaskQueueConfig, kind: str, label: str) -> None:
        self.kind = kind
        self._config = config
        self._label = label
        self._native: _native.NativeQueue | None = None
        self._closed = False
        self._lock = threading.Lock()

    @property
    def native(self) -> _native.NativeQueue:
        """The native queue, opened (and its schema set up) on first use;
        ``RuntimeShutDown`` once closed."""
        native = self._native
        if native is None:
            with self._lock:
                if self._closed:
                    raise RuntimeShutDown(f"{self._label} is closed")
                if self._native is None:
                    self._native = _native.NativeQueue(self._config.to_json())
                native = self._native
        return native

    def close(self) -> None:
        """Closes every connection of the native queue; idempotent."""
        with self._lock:
            self._closed = True
            native, self._native = self._native, None
        if native is not None:
            native.close()

    def enqueue(self, batch: Sequence[EnqueueSpec]) -> list[Job[Any]]:
        """Writes the jobs in one transaction."""
        rows = self.native.enqueue(batch if isinstance(batch, list) else list(batch))
        return [Job(self, job_id) for job_id, _created in rows]

    def info(self, job: Job[Any]) -> JobInfo | None:
        """Reads the job's row."""
        return self.info_by_id(job.id)

    def info_by_id(self, job_id: str) -> JobInfo | None:
        """Reads the row of the job with this id."""
        rec = self.native.get(job_id)
        return None if rec is None else JobInfo.from_record(rec)

    def status(self, job: Job[Any]) -> JobStatus:
        """Reads the job's state."""
        info = self.info(job)
        if info is None:
            raise LookupError(f"job {job.id} does not exist (expired or never enqueued)")
        return info.status

    def wait_info(self, job_id: str, timeout: float | None) -> JobInfo | None:
        """Waits for the job to finish; its snapshot, or ``None`` on timeout."""
        rec = self.native.wait(job_id, timeout)
        return None if rec is None else JobInfo.from_record(rec)

    def result(self, job: Job[Any], timeout: float | None) -> Any:
        """Waits in the engine (no polling from Python)."""
        info = self.wait_info(job.id, timeout)
        if info is None:
            raise TimeoutError(f"job {job.id} did not finish within {timeout}s")
        return info.outcome()

    async def wait(self, job: Job[Any], timeout: float | None) -> Any:
        """Waits on a thread of the default executor."""
        loop = asyncio.get_running_loop()
        info = await loop.run_in_executor(None, self.wait_info, job.id, timeout)
        if info is None:
            raise TimeoutError(f"job {job.id} did not finish within {timeout}s")
        return info.outcome()

    def get_job(self, job_id: str) -> Job[Any] | None:
        """Looks the id up in the backend."""
        return None if self.native.get(job_id) is None else Job(self, job_id)

    def cancel(self, job_id: str) -> bool:
        """Cancels in the backend (a running job is asked to stop)."""
        return self.native.cancel(job_id)

    def counts(self, queue: str | None) -> dict[str, int]:
        """Counts the stored jobs of a queue per state."""
        return dict(self.native.counts(queue))

    # -- operations (the checks are done: ``spikard_tasks._ops_filter``) ----------------

    def stats(self) -> Stats:
        """Figures per queue of the store."""
        return Stats.from_record(self.native.stats())

    def list_jobs(self, flt: JobFilter, limit: int, cursor: str | None) -> JobPage:
        """One page of matching jobs, newest first (keyset pagination in the store)."""
        page = self.native.list_jobs(flt.to_json(), limit, cursor)
        jobs = [JobInfo.from_record(rec) for rec in page["jobs"]]
        return JobPage(jobs, page.get("next_cursor"))

    def retry(self, job_id: str) -> bool:
        """Puts a failed or cancelled job back to pending."""
        return bool(self.native.retry(job_id))

    def retry_jobs(self, flt: JobFilter) -> int:
        """Puts matching failed/cancelled jobs back, in batches."""
        return int(self.native.retry_jobs(flt.to_json()))

    def cancel_jobs(self, flt: JobFilter) -> int:
        """Cancels matching jobs, in batches."""
        return int(self.native.cancel_jobs(flt.to_json()))

    def purge(self, flt: JobFilter, older_than: float) -> int:
        """Deletes matching finished jobs, in batches."""
        return int(self.native.purge(flt.to_json(), older_than))

    def pause(self, queue: str) -> bool:
        """Pauses ``queue`` in the store."""
        return bool(self.native.pause(queue))

    def resume(self, queue: str) -> bool:
        """Resumes ``queue`` in the store."""
        return bool(self.native.resume(queue))

    def paused(self) -> list[str]:
        """The store's paused queues."""
        return list(self.native.paused())

    def workers(self) -> list[WorkerInfo]:
        """The store's live workers."""
        return [WorkerInfo.from_record(rec) for rec in self.native.workers()]

    def set_limit(self, scope: str, name: str, rate: str | None, max_running: int | None) -> bool:
        """Stores (or removes) a limit in the store."""
        return bool(self.native.set_limit(scope, name, rate, max_running))

    def limits(self) -> list[LimitInfo]:
        """The store's limits with their running counts."""
        now_ms = int(time.time() * 1000)
        found = [LimitInfo.from_record(rec, now_ms) for rec in self.native.limits()]
        return sorted(found, key=lambda lim: (lim.scope, lim.name))
