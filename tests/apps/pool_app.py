"""A task module for the process pool tests and benchmark.

The URL comes from SPIKARD_TASKS_URL, the queue name from SPIKARD_TEST_QUEUE (unique per
test: Redis is shared), lease and heartbeat from SPIKARD_TASKS_LEASE / _HEARTBEAT (read by
TaskQueue itself). Handlers append ``start N PID`` / ``done N PID`` lines to the file
SPIKARD_TEST_LOG (one ``write`` of an ``O_APPEND`` file per line: lines of several
processes do not mix).
"""

from __future__ import annotations

import os
import time

from spikard_tasks import TaskQueue

queue = TaskQueue(
    os.environ.get("SPIKARD_TASKS_URL", "sqlite:///pool-test.db"),
    queue=os.environ.get("SPIKARD_TEST_QUEUE", "default"),
    poll_interval=0.01,
    drain_timeout=30.0,
)


def _log(kind: str, n: int) -> None:
    path = os.environ.get("SPIKARD_TEST_LOG")
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{kind} {n} {os.getpid()}\n".encode())
        finally:
            os.close(fd)


@queue.task(name="record")
def record(n: int, seconds: float = 0.0) -> int:
    """Logs its start and end (with this process' pid), sleeping ``seconds`` between."""
    _log("start", n)
    time.sleep(seconds)
    _log("done", n)
    return n


def spin_body(rounds: int = 5000) -> int:
    """About 2 ms of pure-Python work (the CPU-bound body of the benchmark)."""
    total = 0
    for i in range(rounds):
        total = (total * 31 + i) % 1_000_003
    return total


@queue.task(name="spin")
def spin(rounds: int = 5000) -> int:
    """The CPU-bound handler: ``spin_body``."""
    return spin_body(rounds)


_redis = None


def incr_body(key: str) -> int:
    """One Redis ``INCR`` on the Redis of SPIKARD_TEST_REDIS (the I/O-bound body)."""
    global _redis
    if _redis is None:
        import redis

        _redis = redis.Redis.from_url(os.environ["SPIKARD_TEST_REDIS"])
    return int(_redis.incr(key))


@queue.task(name="incr")
def incr(key: str) -> int:
    """The Redis-INCR handler: ``incr_body``."""
    return incr_body(key)
