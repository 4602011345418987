"""``Worker``: a native worker running this process' task handlers (the stand-in for
``inprocess://`` queues is :class:`spikard_tasks.inprocess.InProcessWorker`)."""

from __future__ import annotations

import asyncio
import atexit
import dataclasses
import inspect
import json
import logging
import signal
import socket
import threading
import types
import weakref
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from . import _bridge, _logging, _native, _otel
from ._chain import needs_loop, task_runner
from ._flow import QueuesArg, queue_caps
from ._hooks import Hook, run_start_hooks, run_stop_hooks
from .config import TaskQueueConfig, describe_url
from .context import CURRENT
from .exceptions import SpikardTasksError
from .task import Task

__all__ = ["Worker", "WorkerQueue", "running_workers"]

log = logging.getLogger("spikard_tasks.worker")

_running: weakref.WeakSet[Worker] = weakref.WeakSet()


class WorkerQueue(Protocol):
    """What a worker needs from its ``TaskQueue``."""

    config: TaskQueueConfig

    @property
    def tasks(self) -> Mapping[str, Task[Any, Any]]:
        """Registered tasks by name."""
        ...

    @property
    def native(self) -> _native.NativeQueue:
        """The durable engine's queue (opened on first use)."""
        ...

    @property
    def middleware_chain(self) -> tuple[Callable[..., Any], ...]:
        """The middleware wrapping each attempt, outermost first."""
        ...

    @property
    def worker_hooks(self) -> tuple[tuple[Hook, ...], tuple[Hook, ...]]:
        """``(on_worker_start hooks, on_worker_stop hooks)``."""
        ...


def running_workers(queue: WorkerQueue) -> list[Worker]:
    """The workers of ``queue`` running in this process."""
    return [w for w in list(_running) if w.queue is queue]


@atexit.register
def _stop_running_workers() -> None:
    """Drains workers still running at interpreter exit so their jobs go back."""
    for worker in list(_running):
        try:
            worker.stop()
        except Exception:
            log.exception("stopping worker %s at exit failed", worker.name)


class Worker:
    """Runs the queue's registered handlers on the native (apalis) worker.

    It consumes exactly ``queues`` when given, else the queue's own (``config.queue``).
    ``queues`` may map names to their concurrency in this worker (``{"emails": 4,
    "reports": 1}``; ``None``: no cap of its own): ``concurrency`` is then the total,
    by default the sum when every queue has a number. ``start()`` returns at once;
    ``stop()`` stops fetching, lets in-flight jobs finish within the drain timeout and
    puts unfinished ones back in the queue. Works as a sync or async context manager.
    """

    def __init__(
        self,
        queue: WorkerQueue,
        *,
        concurrency: int | None = None,
        queues: QueuesArg | None = None,
        name: str | None = None,
        drain_timeout: float | None = None,
    ) -> None:
        if concurrency is not None and (isinstance(concurrency, bool) or concurrency < 1):
            raise SpikardTasksError("concurrency must be at least 1")
        self.queue = queue
        listed, caps = queue_caps(queues)
        names = [queue.config.queue] if listed is None else listed
        if not names:
            raise SpikardTasksError("queues must name at least one queue")
        self.queues = list(dict.fromkeys(names))
        #: Each queue's concurrency inside this worker (queues not in it: no cap of their own).
        self.queue_concurrency = caps
        if concurrency is None and caps and len(caps) == len(self.queues):
            concurrency = sum(caps.values())
        self.concurrency = concurrency or queue.config.concurrency
        self._name = name
        self.drain_timeout = drain_timeout
        self._native: _native.NativeWorker | None = None
        self._loop: _bridge.EventLoopThread | None = None
        self._report: dict[str, int] | None = None
        self._signalled = False
        self._lock = threading.Lock()
        #: Whether this worker also runs the cron scheduler (see ``spikard_tasks.cron``).
        self.scheduler = True
        #: Whether tasks with a ``backoff`` of their own use it (``testing.eager`` turns
        #: it off for retries without delay).
        self.task_backoff = True

    @property
    def name(self) -> str | None:
        """The worker's unique name once started."""
        return self._native.name if self._native is not None else self._name

    @property
    def running(self) -> bool:
        """True between ``start()`` and the end of ``stop()``."""
        return self._native is not None and self._native.is_running()

    def _event_loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop.loop if self._loop is not None else None

    def start(self) -> Worker:
        """Starts the worker in the background; returns ``self``."""
        with self._lock:
            if self._native is not None:
                raise SpikardTasksError("this worker was already started")
            tasks = self.queue.tasks
            chain = self.queue.middleware_chain
            on_start, on_stop = self.queue.worker_hooks
            tracing = _otel.available()
            handlers = {
                name: (task_runner(t, chain, self._event_loop, tracing=tracing), t.is_async)
                for name, t in tasks.items()
            }
            async_submit = None
            async_hooks = any(inspect.iscoroutinefunction(h) for h in on_start + on_stop)
            if async_hooks or any(needs_loop(t, chain) for t in tasks.values()):
                self._loop = _bridge.EventLoopThread()
                async_submit = self._loop.submit
            options: dict[str, Any] = {
                "concurrency": self.concurrency,
                "queues": self.queues,
                "name": self._name,
                "drain_timeout": self.drain_timeout,
                "scheduler": self.scheduler,
                "host": socket.gethostname(),  # for workers(): where this one runs
            }
            # One entry per task, with or without a limit: a limit removed from the code
            # is removed from the store when the next worker starts.
            options["limits"] = [
                {
                    "scope": "task",
                    "name": n,
                    "rate": t.rate_limit,
                    "max_running": t.max_running,
                }
                for n, t in tasks.items()
            ]
            if self.queue_concurrency:
                options["queue_concurrency"] = dict(self.queue_concurrency)
            backoffs = {n: dataclasses.asdict(t.backoff) for n, t in tasks.items() if t.backoff}
            if backoffs and self.task_backoff:
                options["task_backoff"] = json.dumps(backoffs)
            native = self.queue.native
            _logging.refresh()  # the engine logs at logging's level as configured now
            try:
                run_start_hooks(on_start, self._event_loop())
                self._native = native.start_worker(
                    handlers, options, async_submit, (CURRENT, native)
                )
            except BaseException:
                if self._loop is not None:
                    self._loop.stop()
                    self._loop = None
                raise
            _running.add(self)
            url = describe_url(self.queue.config.url)
            log.info(
                "worker %s started: url=%s queues=%s concurrency=%d tasks=%s version=%s",
                self._native.name,
                url,
                self.queues,
                self.concurrency,
                sorted(handlers),
                _native.__version__,
                extra={
                    "worker": self._native.name,
                    "url": url,
                    "queues": list(self.queues),
                    "concurrency": self.concurrency,
                },
            )
            return self

    def request_stop(self) -> None:
        """Asks the worker to stop; returns at once (``join()`` waits)."""
        if self._native is not None:
            self._native.request_stop()

    def join(self, timeout: float | None = None) -> dict[str, int] | None:
        """Waits for the worker to exit; returns its report, or ``None`` on timeout."""
        if self._report is not None:
            return self._report
        if self._native is None:
            raise SpikardTasksError("the worker was not started")
        report = self._native.join(timeout)
        if report is None:
            return None
        self._report = dict(report)
        run_stop_hooks(self.queue.worker_hooks[1], self._event_loop())
        if self._loop is not None:
            self._loop.stop()
            self._loop = None
        _running.discard(self)
        log.info("worker %s stopped: %s", self._native.name, self._report)
        return self._report

    def stop(self, timeout: float | None = None) -> dict[str, int]:
        """Stops and drains; returns the report (``succeeded``, ``retried``,
        ``failed``, ``cancelled``, ``released``)."""
        if self._native is None:
            return {}
        self.request_stop()
        report = self.join(timeout)
        if report is None:
            raise TimeoutError(f"worker {self.name} did not stop within {timeout}s")
        return report

    def in_flight(self) -> int:
        """How many jobs run in a handler right now (0 unless running)."""
        return self._native.in_flight() if self._native is not None else 0

    def stats(self) -> dict[str, int]:
        """Live counters."""
        return dict(self._native.stats()) if self._native is not None else {}

    def run_forever(self) -> dict[str, int]:
        """Runs until SIGINT/SIGTERM (or ``request_stop()``), then drains. Signal handlers
        are installed only when called from the main thread, before the worker starts
        (a signal that arrives while it starts stops it once started)."""
        restore: dict[signal.Signals, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                restore[sig] = signal.signal(sig, self._on_signal)
        try:
            self.start()
            if self._signalled:
                self.request_stop()
            while True:
                report = self.join(timeout=0.5)
                if report is not None:
                    return report
        except KeyboardInterrupt:
            # A second Ctrl-C while draining: stop waiting; unfinished jobs are released.
            self.request_stop()
            return self.join() or {}
        finally:
            for sig, handler in restore.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, _frame: types.FrameType | None) -> None:
        log.warning("received %s: draining", signal.Signals(signum).name)
        self._signalled = True
        self.request_stop()

    def __enter__(self) -> Worker:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> Worker:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.start)

    async def __aexit__(self, *_exc: object) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.stop)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Worker {self.name or '?'} {state} queues={self.queues}>"
