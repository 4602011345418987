"""``InProcessWorker``: the worker of an ``inprocess://`` queue, so that the same program
runs unchanged on the fast path."""

from __future__ import annotations

import logging
import os
import threading

from .._flow import QueuesArg
from .._hooks import run_start_hooks, run_stop_hooks
from ..exceptions import SpikardTasksError
from ..worker import Worker, WorkerQueue
from .backend import InProcessBackend

__all__ = ["InProcessWorker"]

log = logging.getLogger("spikard_tasks.worker")


class InProcessWorker(Worker):
    """The worker of an ``inprocess://`` queue, so that the same program runs unchanged
    on the fast path.

    Jobs of an ``inprocess://`` queue run on its runtime whether or not a worker runs.
    ``start()`` starts that runtime; ``stop()`` (and leaving the ``with``/``async with``
    block, and SIGINT/SIGTERM in ``run_forever()``) drains it: no new job is accepted by
    it, queued and running jobs get up to ``drain_timeout`` to finish, the rest is
    cancelled. The next enqueue starts a fresh runtime. ``concurrency`` and the names of
    ``queues`` do not apply (the URL's ``max_concurrent_tasks`` does; every queue name
    runs); the numbers of a ``queues`` mapping do while it runs: at most that many jobs
    of that queue name run at once. The report has the durable
    worker's keys: ``succeeded``, ``retried``, ``failed`` and ``cancelled`` count the
    jobs that ended while the worker ran, ``released`` the jobs the drain left
    unfinished.
    """

    def __init__(
        self,
        queue: WorkerQueue,
        backend: InProcessBackend,
        *,
        concurrency: int | None = None,
        queues: QueuesArg | None = None,
        name: str | None = None,
        drain_timeout: float | None = None,
    ) -> None:
        super().__init__(
            queue, concurrency=concurrency, queues=queues, name=name, drain_timeout=drain_timeout
        )
        self._backend = backend
        self._started = False
        self._drainer: threading.Thread | None = None
        self._done = threading.Event()
        self._baseline: dict[str, int] = {}

    @property
    def name(self) -> str | None:
        """The worker's name (``inprocess-<pid>`` unless one was given)."""
        return self._name or f"inprocess-{os.getpid()}"

    @property
    def running(self) -> bool:
        """True between ``start()`` and the end of the drain."""
        return self._started and not self._done.is_set()

    def start(self) -> InProcessWorker:
        """Starts the queue's runtime (if needed); returns ``self``."""
        with self._lock:
            if self._started:
                raise SpikardTasksError("this worker was already started")
            self._backend.start()
            try:
                run_start_hooks(self.queue.worker_hooks[0], self._backend._loop())
            except BaseException:
                self._backend.drain(self.drain_timeout)
                raise
            self._backend.sync_task_limits()
            self._backend.set_local_caps(self.queue_concurrency)
            self._baseline = self._backend.totals()
            self._started = True
            self._backend.worker_started(str(self.name), self.queues)
        log.info("in-process worker %s started: tasks=%s", self.name, sorted(self.queue.tasks))
        return self

    def request_stop(self) -> None:
        """Starts draining the runtime in the background; returns at once."""
        with self._lock:
            if not self._started or self._drainer is not None:
                return
            self._drainer = threading.Thread(
                target=self._drain, name=f"{self.name}-drain", daemon=True
            )
            self._drainer.start()

    def _drain(self) -> None:
        released = 0
        try:
            released = self._backend.drain(self.drain_timeout).unfinished
        except Exception:
            log.exception("draining in-process worker %s failed", self.name)
        finally:
            totals = self._backend.totals()
            self._report = {
                key: totals[key] - self._baseline.get(key, 0)
                for key in ("succeeded", "retried", "failed", "cancelled")
            }
            self._report["released"] = released
            run_stop_hooks(self.queue.worker_hooks[1], None)
            self._backend.set_local_caps({})
            self._backend.worker_stopped(str(self.name))
            self._done.set()
            log.info("in-process worker %s stopped: %s", self.name, self._report)

    def join(self, timeout: float | None = None) -> dict[str, int] | None:
        """Waits for the drain to end; returns the report, or ``None`` on timeout."""
        if not self._started:
            raise SpikardTasksError("the worker was not started")
        if not self._done.wait(timeout):
            return None
        return self._report

    def stop(self, timeout: float | None = None) -> dict[str, int]:
        """Drains the runtime; returns the report (see the class documentation)."""
        if not self._started:
            return {}
        self.request_stop()
        report = self.join(timeout)
        if report is None:
            raise TimeoutError(f"worker {self.name} did not stop within {timeout}s")
        return report

    def in_flight(self) -> int:
        """How many jobs run in a handler right now."""
        return self._backend.totals()["running"]

    def stats(self) -> dict[str, int]:
        """Live counters of the queue's runtimes (``queued``, ``running``, …)."""
        return self._backend.totals()
