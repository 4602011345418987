"""Quick throughput check of the pure-Python ``BackgroundRuntime`` fast path.

Submits N no-op jobs (async, then sync) from one producer thread and waits for all of
them; prints jobs/s for the whole round trip (submit + run + completion bookkeeping).

    PYTHONPATH=python python benches/bench_runtime_quick.py [--jobs 100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from spikard_tasks.exceptions import QueueFull
from spikard_tasks.runtime import BackgroundRuntime


async def noop_async() -> None:
    """An async handler that does nothing."""


def noop_sync() -> None:
    """A sync handler that does nothing."""


def run_round(
    fn: Callable[[], Any], jobs: int, concurrency: int, queue_size: int
) -> tuple[float, int]:
    """Submit ``jobs`` jobs and wait for the last; return (jobs/s, QueueFull retries).

    On ``QueueFull`` the producer yields (``time.sleep(0)``) and tries again.
    """
    rt = BackgroundRuntime(max_queue_size=queue_size, max_concurrent_tasks=concurrency)
    rt.start()
    retries = 0
    submit = rt.submit
    start = time.perf_counter()
    last = None
    for _ in range(jobs):
        while True:
            try:
                last = submit(fn)
                break
            except QueueFull:
                retries += 1
                time.sleep(0)
    assert last is not None
    last.result(timeout=120)
    while rt.stats.running or rt.stats.queued:
        time.sleep(0.0005)
    elapsed = time.perf_counter() - start
    stats = rt.stats
    assert stats.succeeded == jobs, stats
    rt.shutdown()
    return jobs / elapsed, retries


def main() -> None:
    """Parse arguments and print one line per round."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=128)
    ns = parser.parse_args()
    for queue_size in (ns.jobs, 1024):
        print(f"max_queue_size={queue_size} max_concurrent_tasks={ns.concurrency}")
        for label, fn in (("async no-op", noop_async), ("sync no-op", noop_sync)):
            for i in range(ns.rounds):
                rate, retries = run_round(fn, ns.jobs, ns.concurrency, queue_size)
                print(
                    f"  {label:12s} round {i + 1}: {rate:>10,.0f} jobs/s"
                    f"  (QueueFull retries {retries})"
                )


if __name__ == "__main__":
    main()
