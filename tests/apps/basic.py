"""A task module used by tests that run real worker processes.

The queue URL comes from SPIKARD_TASKS_URL; tasks append lines to SPIKARD_TEST_LOG so
the test can see what ran, when and in which process.
"""

from __future__ import annotations

import asyncio
import os
import time

from spikard_tasks import Backoff, TaskQueue

queue = TaskQueue(
    os.environ.get("SPIKARD_TASKS_URL", "sqlite:///test-apps.db"),
    poll_interval=0.01,
    drain_timeout=float(os.environ.get("SPIKARD_TEST_DRAIN", "10")),
    backoff=Backoff(initial=0.01, max=0.05, jitter=0.0),
)


def _log(event: str, detail: object) -> None:
    path = os.environ.get("SPIKARD_TEST_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(f"{event} {detail} {os.getpid()} {time.time():.6f}\n")


@queue.task(name="add")
def add(a: int, b: int) -> int:
    _log("add", f"{a}+{b}")
    return a + b


@queue.task(name="slow")
def slow(n: int, seconds: float) -> int:
    _log("start", n)
    time.sleep(seconds)
    _log("finish", n)
    return n


@queue.task(name="aslow")
async def aslow(n: int, seconds: float) -> int:
    _log("start", n)
    await asyncio.sleep(seconds)
    _log("finish", n)
    return n
