"""A task module for the flow-control tests (tests/test_flow_control.py), run by real
worker processes: ``spikard-tasks worker tests.apps.flow_app:queue``.

The URL comes from SPIKARD_TASKS_URL and the queue name from SPIKARD_TEST_QUEUE (unique per
test: the servers are shared). Limits of tasks are kept per task name across the store,
so the task names end with the queue name too: ``paced-<queue>`` (``rate_limit`` from
SPIKARD_TEST_RATE, default ``50/s``), ``capped-<queue>`` (``max_running`` from
SPIKARD_TEST_CAP, default 3) and ``plain-<queue>`` (no limit). Each handler returns
``[start, end, pid]``: the wall-clock times its body began and ended, and this process' id.
"""

from __future__ import annotations

import os
import time

from spikard_tasks import TaskQueue

NAME = os.environ.get("SPIKARD_TEST_QUEUE", "default")

queue = TaskQueue(
    os.environ.get("SPIKARD_TASKS_URL", "sqlite:///flow-test.db"),
    queue=NAME,
    poll_interval=0.01,
    drain_timeout=30.0,
)


def _timed(seconds: float) -> list[float]:
    start = time.time()
    if seconds:
        time.sleep(seconds)
    return [start, time.time(), os.getpid()]


@queue.task(name=f"paced-{NAME}", rate_limit=os.environ.get("SPIKARD_TEST_RATE", "50/s"))
def paced(n: int, seconds: float = 0.0) -> list[float]:
    """Rate limited: returns ``[start, end, pid]``."""
    return _timed(seconds)


@queue.task(name=f"capped-{NAME}", max_running=int(os.environ.get("SPIKARD_TEST_CAP", "3")))
def capped(n: int, seconds: float = 0.2) -> list[float]:
    """At most SPIKARD_TEST_CAP running at once: returns ``[start, end, pid]``."""
    return _timed(seconds)


@queue.task(name=f"plain-{NAME}")
def plain(n: int, seconds: float = 0.0) -> list[float]:
    """No limit of its own: returns ``[start, end, pid]``."""
    return _timed(seconds)
