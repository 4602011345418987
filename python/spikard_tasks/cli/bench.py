"""``spikard-tasks bench``: the in-process fast path against durable backends, in one run.

For the fast path (``inprocess://``) and for each durable URL (default: a fresh SQLite
file) it measures, with no-op handlers:

* **enqueue, single** — ``task.delay(i)`` calls per second, one job per call;
* **enqueue, bulk** — jobs per second through ``queue.enqueue_many`` in batches;
* **drain, sync / async** — jobs per second to run N queued no-op jobs;
* **latency p50 / p99** — enqueue → handler start on an idle worker, one job at a time
  (the handler returns ``time.time()`` at its start);
* **peak RSS** — of the durable worker process (``spikard-tasks worker`` in a
  subprocess, ``VmHWM``), and of this process for the fast path (its handlers run here);
  **RSS growth** is the peak minus the RSS before the work started.

How each figure is taken, so that they can be compared:

* Durable: enqueue rates are measured on a queue no worker consumes. Drain and latency
  use one worker in a separate process (the deployment shape: producers and workers are
  different processes) with ``--concurrency`` slots; drain time runs from the commit of
  one ``enqueue_many`` of N jobs to the last success (it includes the worker noticing the
  jobs: at most ``poll_interval``), and latency includes the worker's poll delay.
* Fast path: its handlers always run in this process; during the enqueue rounds they run
  concurrently with the producer. For the drain, every execution slot is first held by a
  blocking job, N jobs are queued, then the slots are released and the time to the last
  success is measured. The bound is sized to hold a whole round.

Figures depend on the machine; compare the ratios of one run. ``--quick`` uses small
sizes (a smoke test, not a measurement).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from .. import _native
from ..config import TaskQueueConfig
from ..job import Job
from ..queue import TaskQueue
from .args import int_range, seconds
from .bench_report import (
    FIGURES,
    _labels,
    _mib,
    _proc_status_kib,
    _reset_peak_rss,
    _sqlite_file_version,
    machine,
    ratios,
    table,
)
from .progress import ProgressBar

__all__ = [
    "FIGURES",
    "BenchSizes",
    "add_arguments",
    "main",
    "ratios",
    "register_tasks",
    "run",
    "run_durable",
    "run_fast_path",
    "wait_succeeded",
]


FAST_PATH = "inprocess://"
_WORKER_TARGET = "spikard_tasks.cli.bench_tasks:queue"
_WAIT = 300.0  # upper bound for any single wait; only reached when something is broken


@dataclasses.dataclass(frozen=True)
class BenchSizes:
    """How much work each measurement does."""

    jobs: int = 10_000
    enqueue: int = 2_000
    batch: int = 1_000
    samples: int = 200
    concurrency: int = 16
    poll_interval: float = TaskQueueConfig.poll_interval


QUICK = BenchSizes(jobs=300, enqueue=100, batch=100, samples=20, concurrency=4)


def register_tasks(queue: TaskQueue, gate: threading.Event | None = None) -> None:
    """Registers the benchmark's tasks on ``queue``: ``bench.noop_sync``,
    ``bench.noop_async``, ``bench.stamp`` (returns ``time.time()`` at its start) and
    ``bench.block`` (waits for ``gate``, when one is given)."""

    @queue.task(name="bench.noop_sync")
    def noop_sync(i: int) -> None:
        return None

    @queue.task(name="bench.noop_async")
    async def noop_async(i: int) -> None:
        return None

    @queue.task(name="bench.stamp")
    def stamp() -> float:
        return time.time()

    @queue.task(name="bench.block")
    def block() -> None:
        if gate is not None:
            gate.wait(_WAIT)


# -- measurements shared by both paths ------------------------------------------------


def _bar(label: str, total: int, progress: bool) -> ProgressBar:
    return ProgressBar(total, f"{label:<30}", stream=sys.stderr if progress else io.StringIO())


def _enqueue_single(queue: TaskQueue, count: int, label: str, progress: bool) -> float:
    """``task.delay()`` calls per second."""
    task = queue.tasks["bench.noop_sync"]
    bar = _bar(f"{label} enqueue single", count, progress)
    step = max(count // 50, 1)
    started = time.perf_counter()
    for i in range(count):
        task.delay(i)
        if i % step == 0:
            bar.update(i)
    elapsed = time.perf_counter() - started
    bar.update(count)
    bar.close()
    return count / elapsed


def _enqueue_bulk(queue: TaskQueue, count: int, batch: int, label: str, progress: bool) -> float:
    """Jobs per second through ``enqueue_many`` in batches of ``batch``."""
    bar = _bar(f"{label} enqueue bulk", count, progress)
    specs = [{"task": "bench.noop_sync", "args": [i]} for i in range(count)]
    started = time.perf_counter()
    for first in range(0, count, batch):
        queue.enqueue_many(specs[first : first + batch])
        bar.update(min(first + batch, count))
    elapsed = time.perf_counter() - started
    bar.close()
    return count / elapsed


def _latency(queue: TaskQueue, samples: int, label: str, progress: bool) -> tuple[float, float]:
    """p50 and p99 (ms) of enqueue → handler start, one job at a time."""
    stamp = queue.tasks["bench.stamp"]
    bar = _bar(f"{label} latency", samples, progress)
    stamp.delay().result(_WAIT)  # warm-up, not counted
    values: list[float] = []
    for i in range(samples):
        enqueued = time.time()
        started = stamp.delay().result(_WAIT)
        values.append((float(started) - enqueued) * 1000.0)
        bar.update(i + 1)
        time.sleep(0.001)  # let the worker go idle again
    bar.close()
    return _percentile(values, 50), _percentile(values, 99)


def _percentile(values: Sequence[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(math.ceil(pct / 100.0 * len(ordered)) - 1, 0)
    return ordered[min(rank, len(ordered) - 1)]


def _wait_all(jobs: Sequence[Job[Any]]) -> None:
    for job in jobs:
        job.result(_WAIT)


def _fast_drain(
    queue: TaskQueue, task: str, sizes: BenchSizes, gate: threading.Event, bar: ProgressBar
) -> float:
    """Jobs per second to run ``sizes.jobs`` queued jobs once the slots are free."""
    gate.clear()
    blockers = [queue.enqueue("bench.block") for _ in range(sizes.concurrency)]
    deadline = time.monotonic() + _WAIT
    while queue.counts()["running"] < sizes.concurrency and time.monotonic() < deadline:
        time.sleep(0.001)
    jobs: list[Job[Any]] = []
    for first in range(0, sizes.jobs, sizes.batch):
        last = min(first + sizes.batch, sizes.jobs)
        jobs += queue.enqueue_many([{"task": task, "args": [i]} for i in range(first, last)])
    started = time.perf_counter()
    gate.set()
    step = max(len(jobs) // 50, 1)
    for i in range(0, len(jobs), step):
        _wait_all(jobs[i : i + step])
        bar.update(min(i + step, len(jobs)))
    elapsed = time.perf_counter() - started
    _wait_all(blockers)
    return sizes.jobs / elapsed


def _fast_idle(queue: TaskQueue) -> None:
    deadline = time.monotonic() + _WAIT
    while time.monotonic() < deadline:
        counts = queue.counts()
        if not (counts["pending"] or counts["running"] or counts["scheduled"]):
            return
        time.sleep(0.001)


def run_fast_path(sizes: BenchSizes, progress: bool = True) -> dict[str, Any]:
    """Measures every figure on ``inprocess://`` in this process."""
    label = "inprocess"
    _reset_peak_rss()
    before = _proc_status_kib("self", "VmRSS")
    capacity = max(sizes.jobs, sizes.enqueue) + 2 * sizes.concurrency + 16
    url = (
        f"{FAST_PATH}?max_queue_size={capacity}"
        f"&max_concurrent_tasks={sizes.concurrency}&drain_timeout=60"
    )
    queue = TaskQueue(url, queue="bench", environment=False)
    gate = threading.Event()
    gate.set()
    register_tasks(queue, gate)
    queue.enqueue("bench.noop_sync", [0]).result(_WAIT)  # starts the runtime
    out: dict[str, Any] = {"target": FAST_PATH, "url": url, "backend": "inprocess"}
    out["enqueue_single_per_s"] = _enqueue_single(queue, sizes.enqueue, label, progress)
    _fast_idle(queue)
    out["enqueue_bulk_per_s"] = _enqueue_bulk(queue, sizes.jobs, sizes.batch, label, progress)
    _fast_idle(queue)
    for kind in ("sync", "async"):
        bar = _bar(f"{label} drain {kind}", sizes.jobs, progress)
        out[f"drain_{kind}_per_s"] = _fast_drain(queue, f"bench.noop_{kind}", sizes, gate, bar)
        bar.close()
        _fast_idle(queue)
    out["latency_p50_ms"], out["latency_p99_ms"] = _latency(queue, sizes.samples, label, progress)
    peak = _proc_status_kib("self", "VmHWM")
    out["peak_rss_mib"] = _mib(peak)
    out["rss_growth_mib"] = None if peak is None or before is None else (peak - before) / 1024
    with queue.worker():  # drains the runtime on exit
        pass
    return out


# -- durable backends -----------------------------------------------------------------


def _start_worker(
    url: str, queue_name: str, sizes: BenchSizes, log: Path
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "SPIKARD_TASKS_URL": url,
        "SPIKARD_TASKS_QUEUE": queue_name,
        "SPIKARD_TASKS_POLL_INTERVAL": repr(sizes.poll_interval),
    }
    with open(log, "wb") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "spikard_tasks.cli",
                "worker",
                _WORKER_TARGET,
                "--concurrency",
                str(sizes.concurrency),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _stop_worker(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _durable_drain(
    queue: TaskQueue, task: str, sizes: BenchSizes, proc: subprocess.Popen[bytes], bar: ProgressBar
) -> float:
    """Jobs per second for a worker process to run ``sizes.jobs`` jobs enqueued at once."""
    base = queue.counts()["succeeded"]
    queue.enqueue_many([{"task": task, "args": [i]} for i in range(sizes.jobs)])
    started = time.perf_counter()

    def check() -> None:
        if proc.poll() is not None:
            raise RuntimeError(f"the benchmark worker stopped (exit code {proc.returncode})")

    return wait_succeeded(queue, base, sizes.jobs, started, bar, check)


def wait_succeeded(
    queue: TaskQueue,
    base: int,
    total: int,
    started: float,
    bar: ProgressBar,
    check: Callable[[], None] = lambda: None,
) -> float:
    """Waits until ``total`` more jobs of ``queue`` succeeded than ``base``; returns jobs
    per second since ``started`` (a ``time.perf_counter()``).

    ``queue.counts()`` reads every row of the queue, so polling it in a tight loop would
    load the database the benchmark measures: the pause between polls is a quarter of the
    expected remaining time (5 ms to 250 ms), a handful of polls per drain.
    """
    deadline = time.monotonic() + _WAIT
    while True:
        done = queue.counts()["succeeded"] - base
        bar.update(done)
        if done >= total:
            return total / (time.perf_counter() - started)
        check()
        if time.monotonic() > deadline:
            raise RuntimeError(f"{total - done} jobs did not finish within {_WAIT:.0f}s")
        elapsed = time.perf_counter() - started
        remaining = (total - done) * elapsed / done if done else 0.05
        time.sleep(min(0.25, max(0.005, remaining / 4)))


def _run_leftovers(queue: TaskQueue, total: int, label: str, progress: bool) -> None:
    """Runs the jobs the enqueue rounds left in ``queue`` (untimed), so the benchmark
    leaves no pending jobs behind; finished ones expire after ``result_ttl``."""
    bar = _bar(f"{label} clean-up", total, progress)
    with queue.worker(scheduler=False):
        wait_succeeded(queue, 0, total, time.perf_counter(), bar)
    bar.close()


def run_durable(url: str, sizes: BenchSizes, progress: bool = True) -> dict[str, Any]:
    """Measures every figure on a durable backend; the worker runs in a subprocess."""
    label = _native.backend_kind(url)
    name = f"bench-{uuid.uuid4().hex[:8]}"
    options: dict[str, Any] = {"poll_interval": sizes.poll_interval}
    producer = TaskQueue(url, queue=name, environment=False, **options)
    register_tasks(producer)
    # No worker consumes it while the enqueue rounds are timed; see _run_leftovers.
    idle = TaskQueue(url, queue=f"{name}-idle", environment=False, **options)
    register_tasks(idle)
    out: dict[str, Any] = {"target": _native.redact_url(url), "url": url, "backend": label}
    out["enqueue_single_per_s"] = _enqueue_single(idle, sizes.enqueue, label, progress)
    out["enqueue_bulk_per_s"] = _enqueue_bulk(idle, sizes.jobs, sizes.batch, label, progress)
    with tempfile.TemporaryDirectory(prefix="spikard-bench-") as tmp:
        log = Path(tmp) / "worker.log"
        proc = _start_worker(url, name, sizes, log)
        try:
            probe = producer.enqueue("bench.noop_sync", [0])
            try:
                probe.result(60)
            except TimeoutError:
                raise RuntimeError(
                    f"the benchmark worker did not start:\n{log.read_text(errors='replace')}"
                ) from None
            idle_rss = _proc_status_kib(proc.pid, "VmRSS")
            for kind in ("sync", "async"):
                bar = _bar(f"{label} drain {kind}", sizes.jobs, progress)
                out[f"drain_{kind}_per_s"] = _durable_drain(
                    producer, f"bench.noop_{kind}", sizes, proc, bar
                )
                bar.close()
            p50, p99 = _latency(producer, sizes.samples, label, progress)
            out["latency_p50_ms"], out["latency_p99_ms"] = p50, p99
            peak = _proc_status_kib(proc.pid, "VmHWM")
        finally:
            _stop_worker(proc)
    _run_leftovers(idle, sizes.enqueue + sizes.jobs, label, progress)
    out["peak_rss_mib"] = _mib(peak)
    out["rss_growth_mib"] = None if peak is None or idle_rss is None else (peak - idle_rss) / 1024
    version = _sqlite_file_version(url)
    if version:
        out["sqlite_version"] = version
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the benchmark's options to ``parser`` (``spikard-tasks bench`` and
    ``benches/bench.py`` share them)."""
    d, count = BenchSizes(), int_range(1)
    parser.add_argument(
        "--url",
        action="append",
        default=None,
        help="durable backend URL (repeatable; default: a fresh SQLite file)",
    )
    parser.add_argument("--jobs", type=count, help=f"jobs per drain and bulk round ({d.jobs})")
    parser.add_argument("--enqueue", type=count, help=f"single enqueue calls ({d.enqueue})")
    parser.add_argument("--batch", type=count, help=f"jobs per enqueue_many call ({d.batch})")
    parser.add_argument("--samples", type=count, help=f"latency samples ({d.samples})")
    parser.add_argument(
        "-c", "--concurrency", type=count, help=f"worker slots on every path ({d.concurrency})"
    )
    parser.add_argument(
        "--poll-interval",
        type=seconds(),
        help=f"durable worker poll interval, seconds ({d.poll_interval}, the default config)",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (a CI smoke run)")
    parser.add_argument(
        "--json", metavar="PATH", help="also write the results as JSON (default: no file)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def sizes_from(args: argparse.Namespace) -> BenchSizes:
    """The sizes given on the command line (over the ``--quick`` or default sizes)."""
    base = QUICK if args.quick else BenchSizes()
    changes = {
        key: getattr(args, key)
        for key in ("jobs", "enqueue", "batch", "samples", "concurrency", "poll_interval")
        if getattr(args, key, None) is not None
    }
    sizes = dataclasses.replace(base, **changes)
    for key in ("jobs", "enqueue", "batch", "samples", "concurrency"):
        if getattr(sizes, key) < 1:
            raise SystemExit(f"spikard-tasks bench: --{key} must be at least 1")
    return sizes


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Runs the benchmark as the command line asked; prints the report."""
    out = out or sys.stdout
    sizes = sizes_from(args)
    progress = not args.no_progress
    with tempfile.TemporaryDirectory(prefix="spikard-bench-") as tmp:
        urls = args.url or [f"sqlite:///{tmp}/bench.db"]
        started = time.time()
        results = [run_fast_path(sizes, progress)]
        results += [run_durable(url, sizes, progress) for url in urls]
        elapsed = time.time() - started
    ratio = ratios(results)
    m = machine()
    engine_sqlite = next((r["sqlite_version"] for r in results if "sqlite_version" in r), None)
    if engine_sqlite:
        m["engine_sqlite"] = engine_sqlite
    meta = {
        "machine": m,
        "sizes": dataclasses.asdict(sizes),
        "quick": bool(args.quick),
        "seconds": elapsed,
    }
    print(
        f"spikard-tasks {m['spikard_tasks']} · Python {m['python']} · SQLite "
        f"{engine_sqlite or '?'} (engine), {m['python_sqlite3']} (Python) · {m['cores']} cores · "
        f"{m['cpu']}",
        file=out,
    )
    print(
        f"sizes: drain {sizes.jobs:,} jobs per handler kind, bulk {sizes.jobs:,} jobs in "
        f"batches of {sizes.batch:,}, {sizes.enqueue:,} single enqueues, "
        f"{sizes.samples} latency samples, concurrency {sizes.concurrency}, durable "
        f"poll_interval {sizes.poll_interval}s, durable worker in a subprocess"
        + (" (--quick: a smoke run, not a measurement)" if args.quick else ""),
        file=out,
    )
    for label, result in zip(_labels(results), results, strict=True):
        print(f"{label}: {result['target']}", file=out)
    print(table(results, ratio), file=out)
    if args.json:
        payload = {
            "meta": meta,
            "results": [{k: v for k, v in r.items() if k != "url"} for r in results],
            "ratios": ratio,
        }
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=2)
        print(f"wrote {args.json}", file=out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m spikard_tasks.bench`` / ``benches/bench.py``."""
    parser = argparse.ArgumentParser(
        prog="spikard-tasks bench", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
