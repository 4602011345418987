"""Drain rate of no-op jobs on one worker: sync and async handlers.

    python benches/drain.py [--jobs 10000] [--url sqlite:///bench.db] [--concurrency 16]

Enqueues N no-op jobs (bulk), starts one in-process worker and measures the time until
the last one finished. Prints a table and writes JSON (``--json PATH``). Figures are
machine-dependent; compare ratios taken in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from typing import Any

from spikard_tasks import TaskQueue, __version__
from spikard_tasks.bench import wait_succeeded
from spikard_tasks.cli.progress import ProgressBar, format_table


def make_queue(url: str, name: str, concurrency: int) -> TaskQueue:
    queue = TaskQueue(url, queue=name, concurrency=concurrency, poll_interval=0.005)

    @queue.task(name="noop_sync")
    def noop_sync(i: int) -> None:
        return None

    @queue.task(name="noop_async")
    async def noop_async(i: int) -> None:
        return None

    return queue


def drain(url: str, task: str, jobs: int, concurrency: int) -> dict[str, Any]:
    queue = make_queue(url, f"bench-{task}-{time.time_ns()}", concurrency)
    t0 = time.perf_counter()
    batch = 5000
    for start in range(0, jobs, batch):
        queue.enqueue_many(
            [{"task": task, "args": [i]} for i in range(start, min(start + batch, jobs))]
        )
    enqueue_s = time.perf_counter() - t0
    bar = ProgressBar(jobs, f"{task:10}")
    t1 = time.perf_counter()
    with queue.worker(concurrency=concurrency):
        wait_succeeded(queue, 0, jobs, t1, bar)
    drain_s = time.perf_counter() - t1
    bar.close()
    return {
        "task": task,
        "jobs": jobs,
        "bulk_enqueue_jobs_per_s": jobs / enqueue_s,
        "drain_s": drain_s,
        "drain_jobs_per_s": jobs / drain_s,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--url", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--json", default=None, help="write results to this file")
    args = parser.parse_args()
    url = args.url or f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    results = [drain(url, t, args.jobs, args.concurrency) for t in ("noop_sync", "noop_async")]
    meta = {
        "spikard_tasks": __version__,
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "url": url,
        "concurrency": args.concurrency,
    }
    print(f"spikard-tasks {__version__}, python {meta['python']}, {meta['cores']} cores, {url}")
    print(
        format_table(
            ["handler", "jobs", "bulk enqueue jobs/s", "drain s", "drain jobs/s"],
            [
                [
                    r["task"],
                    r["jobs"],
                    r["bulk_enqueue_jobs_per_s"],
                    r["drain_s"],
                    r["drain_jobs_per_s"],
                ]
                for r in results
            ],
        )
    )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"meta": meta, "results": results}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
