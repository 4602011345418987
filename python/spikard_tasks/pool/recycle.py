"""``Recycler``: inside a worker child, asks the worker to stop (drain, then exit) once it
started ``max_jobs`` jobs or its RSS passed ``max_memory_mb``, or when the supervisor is
gone; the supervisor replaces a recycled child at once.

Jobs are counted as they start, by a middleware: the job that reaches the limit stops the
claiming at once, so a child with concurrency 1 runs exactly ``max_jobs`` jobs. Memory and
the supervisor are checked by a thread every ``interval`` seconds.
"""

from __future__ import annotations

import logging
import os
import resource
import threading
from collections.abc import Iterator
from typing import Any, Protocol

__all__ = ["Recycler", "rss_mb"]

log = logging.getLogger("spikard_tasks.pool")


class _Stoppable(Protocol):
    def request_stop(self) -> None: ...


def rss_mb() -> float:
    """This process' resident set size in MB (``/proc/self/statm``; the peak from
    ``getrusage`` where there is no ``/proc``)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


class Recycler:
    """Stops ``worker`` for recycling. ``install(queue)`` before the worker starts (for
    ``max_jobs``), ``start()`` with it, ``close()`` after it stopped."""

    def __init__(
        self,
        worker: _Stoppable,
        *,
        index: int,
        max_jobs: int | None = None,
        max_memory_mb: float | None = None,
        parent: int | None = None,
        interval: float = 0.5,
    ) -> None:
        self._worker = worker
        self._index = index
        self._max_jobs = max_jobs
        self._max_memory = max_memory_mb
        self._parent = parent
        self._interval = interval
        self._started = 0
        self._count_lock = threading.Lock()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        #: Why the child was recycled (``None`` unless it was).
        self.reason: str | None = None

    def install(self, queue: Any) -> None:
        """Adds the job-counting middleware to ``queue`` (only with ``max_jobs``)."""
        if self._max_jobs is None:
            return
        limit = self._max_jobs

        def count_jobs(_ctx: Any) -> Iterator[None]:
            with self._count_lock:
                self._started += 1
                reached = self._started == limit
            if reached:
                self._recycle(f"{limit} jobs started")
            yield

        count_jobs.__qualname__ = "max_jobs_per_child"
        queue.middleware(count_jobs)

    def _recycle(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
            log.info("worker child %d recycled: %s; draining", self._index, reason)
        self._worker.request_stop()

    def _watch(self) -> None:
        while not self._done.wait(self._interval):
            if self._parent is not None and os.getppid() != self._parent:
                log.warning("worker child %d: the supervisor is gone; draining", self._index)
                self._worker.request_stop()
                return
            if self._max_memory is not None:
                used = rss_mb()
                if used > self._max_memory:
                    self._recycle(f"RSS {used:.0f} MB above {self._max_memory:g} MB")
            if self.reason is not None:  # the worker may have been starting: ask again
                self._worker.request_stop()

    def start(self) -> None:
        """Starts the watching thread (when there is memory or a supervisor to watch)."""
        if self._max_memory is None and self._parent is None:
            return
        self._thread = threading.Thread(target=self._watch, name="recycler", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stops the watching thread."""
        self._done.set()
        if self._thread is not None:
            self._thread.join()
