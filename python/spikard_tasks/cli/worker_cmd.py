"""``spikard-tasks worker`` and ``spikard-tasks scheduler``: long-running processes.

A worker stops on SIGINT/SIGTERM. The first signal drains: no new job starts, the jobs in
flight get up to the drain timeout to finish, the rest goes back to the queue (attempt not
counted), and the process exits with code 0. A second signal stops at once (exit code
128 + the signal's number, 130 for Ctrl-C): the jobs still running are abandoned where they
are, marked running under this worker's lease; once the lease expires, any worker of the
store puts them back (``WorkerLost``: the abandoned attempt counts, and a job on its last
attempt fails) and runs them again.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import types

from .._flow import parse_queues
from ..cron import CronSchedule
from ..exceptions import ConfigError
from ..pool.recycle import Recycler
from ..queue import TaskQueue
from ..worker import Worker
from .targets import CliError, load_queue, schedules_noted, sqlite_path
from .worker_pool import run_supervisor, wants_pool

__all__ = ["cmd_scheduler", "cmd_worker"]

log = logging.getLogger("spikard_tasks.cli")


def _jobs(n: int) -> str:
    return f"{n} job" if n == 1 else f"{n} jobs"


def _use_url(queue: TaskQueue, url: str) -> None:
    """Points the app's queue (and so every task's ``.delay()``) at ``url``, keeping its
    configuration and handlers. Nothing was opened yet: the import's schedules were noted."""
    fresh = TaskQueue(queue.config.replace(url=url), environment=False)
    if not fresh.is_durable:
        raise CliError("worker --url needs a durable backend URL (sqlite, postgres, …)")
    queue.close()
    queue.config, queue.backend, queue._backend = fresh.config, fresh.backend, fresh._backend


def _load(args: argparse.Namespace) -> TaskQueue:
    """The app's queue, on ``--url`` if given, with its import-time schedules stored."""
    noted: list[tuple[TaskQueue, CronSchedule]] = []
    with schedules_noted(noted):
        queue = load_queue(args.target)
    if args.url:
        _use_url(queue, args.url)
    for owner, schedule in noted:
        owner.schedule(schedule, strict=False)
    return queue


def _queues(text: str | None) -> dict[str, int | None] | None:
    """``--queues a,b=2``: each queue with its concurrency in this worker (``None``: no
    cap of its own)."""
    if text is None:
        return None
    try:
        return parse_queues(text)
    except ConfigError as exc:
        raise CliError(str(exc)) from None


def _recycler(args: argparse.Namespace, worker: Worker, queue: TaskQueue) -> Recycler | None:
    """A pool child's recycler (installed and started), else ``None``."""
    child = getattr(args, "pool_child", None)
    if child is None:
        return None
    recycler = Recycler(
        worker,
        index=child.index,
        max_jobs=child.max_jobs,
        max_memory_mb=child.max_memory,
        parent=child.parent,
    )
    recycler.install(queue)
    recycler.start()
    return recycler


def _run(worker: Worker, queue: TaskQueue) -> dict[str, int]:
    """Runs ``worker`` until a signal; a second signal exits the process at once."""
    drain = worker.drain_timeout if worker.drain_timeout is not None else queue.config.drain_timeout
    signals = 0

    def on_signal(signum: int, _frame: types.FrameType | None) -> None:
        nonlocal signals
        signals += 1
        n = worker.in_flight()
        if signals == 1:
            log.warning(
                "stopping: %s in flight, waiting up to %g s (press Ctrl-C again to stop now)",
                _jobs(n),
                drain,
            )
            worker.request_stop()
            return
        log.warning(
            "abandoning %s; they return to the queue when their lease expires (within %g s), "
            "then run again: the abandoned attempt counts, and a job on its last attempt fails",
            _jobs(n),
            queue.config.lease,
        )
        print(json.dumps({"worker": "abandoned", "in_flight": n}), flush=True)
        sys.stderr.flush()
        os._exit(128 + signum)

    restore = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        worker.start()
        if signals:
            worker.request_stop()
        while True:
            report = worker.join(timeout=0.5)
            if report is not None:
                return report
    finally:
        for sig, handler in restore.items():
            signal.signal(sig, handler)


def _report(args: argparse.Namespace, report: dict[str, int], recycler: Recycler | None) -> None:
    """Prints the report, or (in a pool child) writes it to the supervisor's pipe."""
    child = getattr(args, "pool_child", None)
    if child is None or child.report_fd is None:
        print(json.dumps({"worker": "stopped", **report}), flush=True)
        return
    recycled = recycler.reason if recycler is not None else None
    with os.fdopen(child.report_fd, "w") as pipe:
        pipe.write(json.dumps({**report, "recycled": recycled}))


def cmd_worker(args: argparse.Namespace) -> int:
    """``worker``: runs the app's handlers until SIGINT/SIGTERM, then drains (with
    ``--processes N``: a supervisor of N worker children, see ``worker_pool``)."""
    if wants_pool(args):
        return run_supervisor(args)
    queues = _queues(args.queues)  # a wrong value fails before the app is imported
    queue = _load(args)
    worker = queue.worker(
        concurrency=args.concurrency,
        queues=queues,
        name=args.name,
        drain_timeout=args.drain_timeout,
        scheduler=not args.no_scheduler,
    )
    path = sqlite_path(queue.config.url)
    if path is not None:
        log.info("database: SQLite file %s", path)
    metrics = None
    if args.metrics_port is not None:
        from ..metrics import serve_metrics

        metrics = serve_metrics(queue, args.metrics_port, args.metrics_host, queues=worker.queues)
        log.info(
            "metrics on http://%s:%d/metrics (and /healthz, /readyz)", metrics.host, metrics.port
        )
    recycler = _recycler(args, worker, queue)
    try:
        report = _run(worker, queue)
    finally:
        if recycler is not None:
            recycler.close()
        if metrics is not None:
            metrics.close()
    _report(args, report, recycler)
    return 0


def cmd_scheduler(args: argparse.Namespace) -> int:
    """``scheduler``: runs only the cron scheduler until SIGINT/SIGTERM."""
    queue = _load(args)
    path = sqlite_path(queue.config.url)
    log.info("scheduler started for %r%s", queue, f" (SQLite file {path})" if path else "")
    queue.run_scheduler()
    print(json.dumps({"scheduler": "stopped"}), flush=True)
    return 0
