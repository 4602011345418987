"""Drain rate against queue depth, and worker memory after a long drain.

    python benches/depth.py [--url sqlite:///depth.db] [--deep 1000000] [--shallow 10000]

Measures, with one worker process (no-op sync handler, concurrency 16):
1. the drain rate of a queue holding ``--shallow`` jobs;
2. the drain rate of the first ``--shallow`` jobs of a queue holding ``--deep`` jobs
   (no per-fetch cost may grow with depth), and of the whole deep queue;
3. the worker's RSS once the deep queue is drained, and its peak.
Prints the figures and the deep ÷ shallow ratio.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

from spikard_tasks import Job, JobStatus, TaskQueue
from spikard_tasks.cli.bench import (
    BenchSizes,
    _proc_status_kib,
    _start_worker,
    _stop_worker,
    register_tasks,
)
from spikard_tasks.cli.progress import ProgressBar

BATCH = 10_000


def _fill(queue: TaskQueue, count: int) -> tuple[float, list[Job]]:
    """Enqueues ``count`` jobs; returns the rate and the jobs in enqueue order."""
    started = time.perf_counter()
    bar = ProgressBar(count, "enqueue")
    jobs: list[Job] = []
    for start in range(0, count, BATCH):
        n = min(BATCH, count - start)
        jobs += queue.enqueue_many(
            [{"task": "bench.noop_sync", "args": [start + i]} for i in range(n)]
        )
        bar.update(start + n)
    bar.close()
    return count / (time.perf_counter() - started), jobs


def _wait_done(job: Job, started: float, count: int) -> float:
    """Waits until ``job`` finished (jobs of one priority run in enqueue order, so the
    ``count``-th job ends about when ``count`` jobs have); returns jobs/s since
    ``started``. A status read is one primary-key lookup, unlike ``queue.counts()``,
    which reads the whole queue and would load the database under test."""
    while job.status() is not JobStatus.SUCCEEDED:
        time.sleep(0.005)
    return count / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--url", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--deep", type=int, default=1_000_000)
    parser.add_argument("--shallow", type=int, default=10_000)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="spikard-depth-"))
    url = args.url or f"sqlite:///{tmp}/depth.db"
    sizes = BenchSizes()
    rates: dict[str, float] = {}
    rss: tuple[int | None, int | None] = (None, None)
    for label, count in (("shallow", args.shallow), ("deep", args.deep)):
        name = f"depth-{uuid.uuid4().hex[:8]}"
        queue = TaskQueue(url, queue=name)
        register_tasks(queue)
        enqueue_rate, jobs = _fill(queue, count)
        print(f"{label}: {count:,} jobs queued at {enqueue_rate:,.0f} jobs/s", flush=True)
        proc = _start_worker(url, name, sizes, tmp / f"{label}.log")
        try:
            # The clock starts when the first job is done: worker start-up is not drain.
            _wait_done(jobs[0], time.perf_counter(), 1)
            started = time.perf_counter()
            first = min(args.shallow, count)
            rates[f"{label}_first"] = _wait_done(jobs[first - 1], started, first - 1)
            rates[f"{label}_all"] = _wait_done(jobs[-1], started, count - 1)
            del jobs
            while queue.counts()["succeeded"] < count:  # the last few still running
                time.sleep(0.1)
            if label == "deep":
                rss = (_proc_status_kib(proc.pid, "VmRSS"), _proc_status_kib(proc.pid, "VmHWM"))
        finally:
            _stop_worker(proc)
    print(f"url: {url}")
    print(f"drain of {args.shallow:,} queued:            {rates['shallow_all']:,.0f} jobs/s")
    print(f"first {args.shallow:,} of {args.deep:,} queued:   {rates['deep_first']:,.0f} jobs/s")
    print(f"all {args.deep:,}:                        {rates['deep_all']:,.0f} jobs/s")
    print(f"deep first ÷ shallow: {rates['deep_first'] / rates['shallow_all']:.2f}")
    rss_now, peak = (None if v is None else v / 1024 for v in rss)
    print(f"worker RSS after the deep drain: {rss_now} MiB (peak {peak} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
