"""The ``spikard-tasks demo``: a few hundred sync and async jobs through a SQLite file.

It shows the whole path: tasks defined in Python, jobs persisted in SQLite, a worker
whose engine is apalis on tokio calling the handlers (sync on Python threads, async on
an event loop), retries with backoff, and results read back.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import random
import time
from typing import Any

from ..config import Backoff
from ..exceptions import JobFailed
from ..queue import TaskQueue
from ..status import JobStatus
from .progress import ProgressBar, format_table

__all__ = ["queue", "run_demo"]

DEMO_URL = os.environ.get("SPIKARD_TASKS_DEMO_URL", "sqlite:///spikard_tasks_demo.db")

queue = TaskQueue(DEMO_URL, queue="demo", backoff=Backoff(initial=0.05, max=0.5), environment=False)


@queue.task(name="demo.checksum")
def checksum(text: str, rounds: int = 200) -> str:
    """Sync, CPU-bound: hashes a string a few hundred times."""
    data = text.encode()
    for _ in range(rounds):
        data = hashlib.sha256(data).digest()
    return data.hex()[:16]


@queue.task(name="demo.fetch")
async def fetch(url: str, latency_ms: int = 5) -> dict[str, Any]:
    """Async, I/O-bound: pretends to fetch a URL."""
    await asyncio.sleep(latency_ms / 1000)
    return {"url": url, "status": 200, "bytes": len(url) * 100}


@queue.task(name="demo.flaky", max_attempts=4)
def flaky(n: int) -> int:
    """Fails its first attempt about a third of the time; retried with backoff."""
    if random.random() < 0.33:
        raise ConnectionError(f"upstream hiccup for item {n}")
    return n * n


@queue.task(name="demo.doomed", max_attempts=2)
def doomed(n: int) -> None:
    """Always fails: shows a job ending `failed` with its errors kept."""
    raise ValueError(f"item {n} is invalid")


def _quiet_job_lines() -> bool:
    """The demo fails jobs on purpose and sums them up itself; the engine's per-job lines
    (a WARNING per retry, an ERROR with its traceback per failure) would bury that
    summary, so they are dropped unless ``SPIKARD_TASKS_LOG`` asks for logs."""
    if os.environ.get("SPIKARD_TASKS_LOG"):
        return False
    logging.getLogger("spikard_tasks.engine.job").setLevel(logging.CRITICAL)
    return True


def run_demo(jobs: int = 300, concurrency: int = 8) -> int:
    """Enqueues ``jobs`` jobs, runs a worker until they finish and prints a summary."""
    print(f"spikard-tasks demo: {queue!r}")
    if _quiet_job_lines():
        print("(per-job log lines hidden; SPIKARD_TASKS_LOG=info shows them)")
    specs: list[dict[str, Any]] = []
    for i in range(jobs):
        kind = i % 10
        if kind < 4:
            specs.append({"task": "demo.checksum", "args": [f"item-{i}"]})
        elif kind < 8:
            specs.append({"task": "demo.fetch", "args": [f"https://example.test/{i}"]})
        elif kind < 9 or i % 20 != 9:
            specs.append({"task": "demo.flaky", "args": [i], "priority": 5})
        else:
            specs.append({"task": "demo.doomed", "args": [i]})
    started = time.perf_counter()
    handles = queue.enqueue_many(specs)
    enqueue_s = time.perf_counter() - started
    print(f"enqueued {len(handles)} jobs in one transaction ({enqueue_s * 1000:.1f} ms)")

    bar = ProgressBar(len(handles), "running")
    run_started = time.perf_counter()
    with queue.worker(concurrency=concurrency):
        remaining = {h.id for h in handles}
        while remaining:
            # Wait on the last unfinished job for a moment, then count what finished.
            probe = next(iter(remaining))
            queue._wait(probe, 0.1)
            for job_id in list(remaining):
                info = queue._job_info(job_id)
                if info is None or info.status.is_finished:
                    remaining.discard(job_id)
            bar.update(len(handles) - len(remaining))
    bar.close()
    elapsed = time.perf_counter() - run_started

    per_task: dict[str, dict[str, int]] = {}
    sample_error: str | None = None
    for h in handles:
        info = h.info()
        row = per_task.setdefault(
            info.task, {"jobs": 0, "succeeded": 0, "failed": 0, "attempts": 0, "retries": 0}
        )
        row["jobs"] += 1
        row["attempts"] += info.attempts
        row["retries"] += max(info.attempts - 1, 0)
        if info.status is JobStatus.SUCCEEDED:
            row["succeeded"] += 1
        elif info.status is JobStatus.FAILED:
            row["failed"] += 1
            if sample_error is None:
                try:
                    h.result(0)
                except JobFailed as exc:
                    sample_error = exc.error
    rows: list[list[object]] = [
        [name, r["jobs"], r["succeeded"], r["failed"], r["retries"], r["attempts"] / r["jobs"]]
        for name, r in sorted(per_task.items())
    ]
    total = [
        sum(r[key] for r in per_task.values()) for key in ("jobs", "succeeded", "failed", "retries")
    ]
    rows.append(["total", *total, sum(r["attempts"] for r in per_task.values()) / len(handles)])
    print()
    print(format_table(["task", "jobs", "succeeded", "failed", "retries", "avg attempts"], rows))
    print()
    print(f"{len(handles)} jobs finished in {elapsed:.2f} s ({len(handles) / elapsed:,.0f} jobs/s)")
    example = handles[0]
    print(f"example result: job {example.id} -> {example.result(0)!r}")
    if sample_error:
        print(f"example failure (kept with its traceback): {sample_error}")
    print(f"everything above is stored in {DEMO_URL}; look at it with:")
    print(f"  spikard-tasks status --url {DEMO_URL} {example.id}")
    print(f"  spikard-tasks info --url {DEMO_URL}")
    print(f"  spikard-tasks jobs list --url {DEMO_URL} --status failed")
    print(f"  spikard-tasks dashboard --url {DEMO_URL}   (needs spikard-tasks[serve])")
    return 0
