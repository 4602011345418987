"""A task module for the command-line tests.

The URL comes from SPIKARD_TASKS_URL (and lease/heartbeat from SPIKARD_TASKS_LEASE and
SPIKARD_TASKS_HEARTBEAT, read by TaskQueue itself). With SPIKARD_TEST_SCHEDULE set, the
module stores a schedule of that name at import time, as apps often do.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from spikard_tasks import CronSchedule, TaskQueue

queue = TaskQueue(
    os.environ.get("SPIKARD_TASKS_URL", "sqlite:///cli-test.db"),
    poll_interval=0.01,
    drain_timeout=30.0,
)


@queue.task(name="fetch")
def fetch(url: str) -> str:
    return url.upper()


@queue.task(name="report")
def report(a: int, b: int) -> int:
    return a + b


@queue.task(name="boom")
def boom() -> None:
    raise ValueError("line one\nline two")


@queue.task(name="nap")
def nap(marker: str, seconds: float) -> str:
    """Sleeps ``seconds`` the first time (creating ``marker``), returns at once after."""
    path = Path(marker)
    if path.exists():
        return "rested"
    path.write_text("started")
    time.sleep(seconds)
    return "slept"


if os.environ.get("SPIKARD_TEST_SCHEDULE"):
    queue.schedule(
        CronSchedule(
            "0 3 * * *", task="report", args=[1, 2], name=os.environ["SPIKARD_TEST_SCHEDULE"]
        )
    )
