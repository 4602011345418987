"""One program, any backend: the queue URL comes from SPIKARD_TASKS_URL.

``python -m tests.apps.portable`` runs a fixed scenario (results, retries, a handler's
``Cancel``, a failing handler, JSON round trips, by-name and bulk enqueue, a delay, a
unique key, a cancelled job, the async API) with the program's own worker and prints
what it saw as one JSON line. The test runs it unchanged on ``inprocess://`` and on a
SQLite file and expects the same line.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from typing import Any

from spikard_tasks import (
    Backoff,
    Cancel,
    Job,
    JobCancelled,
    JobFailed,
    SerializationError,
    TaskQueue,
)

queue = TaskQueue(
    os.environ.get("SPIKARD_TASKS_URL", "inprocess://"),
    poll_interval=0.01,
    drain_timeout=10.0,
    backoff=Backoff(initial=0.01, max=0.05, jitter=0.0),
)

_calls: dict[str, int] = {}
_lock = threading.Lock()


@queue.task(name="add")
def add(a: int, b: int) -> int:
    return a + b


@queue.task(name="shout")
async def shout(text: str) -> str:
    await asyncio.sleep(0.001)
    return text.upper()


@queue.task(name="flaky", max_attempts=3)
def flaky(key: str) -> str:
    with _lock:
        _calls[key] = _calls.get(key, 0) + 1
        calls = _calls[key]
    if calls < 3:
        raise ConnectionError(f"transient {calls}")
    return f"{key} after {calls}"


@queue.task(name="refuse", max_attempts=5)
def refuse() -> None:
    raise Cancel("not worth it")


@queue.task(name="broken", max_attempts=2)
def broken(x: int) -> None:
    raise ValueError(f"bad value {x}")


@queue.task(name="echo")
def echo(*args: Any, **kwargs: Any) -> list[Any]:
    return [list(args), kwargs, [type(a).__name__ for a in args]]


@queue.task(name="stamp")
def stamp() -> float:
    return time.time()


def outcome(job: Job) -> list[Any]:
    """``[status, value or error, attempts]`` of a finished job."""
    try:
        value: Any = job.result(timeout=30)
    except JobFailed as exc:
        value = exc.error
    except JobCancelled as exc:
        value = exc.reason
    info = job.info()
    return [info.status.value, value, info.attempts, len(info.errors)]


async def async_part() -> list[Any]:
    async with queue.worker(concurrency=2):
        job = await shout.adelay("async")
        other = await queue.aenqueue("add", args=[20, 22])
        return [await job.wait(timeout=30), await other.wait(timeout=30)]


def main() -> dict[str, Any]:
    """Runs the scenario; returns what it saw."""
    seen: dict[str, Any] = {}
    try:
        add.delay({1, 2}, 3)
    except SerializationError as exc:
        seen["bad_argument"] = str(exc)
    jobs = {
        "add": add.delay(2, 3),
        "shout": shout.delay("hi"),
        "flaky": flaky.delay("k"),
        "refuse": refuse.delay(),
        "broken": broken.delay(7),
        "echo": echo.delay((1, (2, 3)), {"k": (4,)}, flag=True),
        "by_name": queue.enqueue("add", args=[10], kwargs={"b": 5}),
    }
    bulk = queue.enqueue_many([{"task": "add", "args": [i, i]} for i in range(5)])
    enqueued = time.time()
    delayed = stamp.enqueue(delay=0.3)
    first = add.enqueue(args=[1, 1], unique_key="once", delay=0.2)
    second = add.enqueue(args=[1, 1], unique_key="once")
    parked = add.enqueue(args=[0, 0], delay=60)
    seen["cancel_parked"] = [queue.cancel(parked.id), queue.cancel(parked.id)]
    with queue.worker(concurrency=4):
        seen.update({name: outcome(job) for name, job in jobs.items()})
        seen["bulk"] = [job.result(timeout=30) for job in bulk]
        # Durable times are stored in whole milliseconds: allow that much.
        seen["delay_respected"] = delayed.result(timeout=30) >= enqueued + 0.3 - 0.001
        seen["unique"] = [second.id == first.id, first.result(timeout=30)]
    seen["parked"] = outcome(parked)
    looked_up = queue.get_job(jobs["add"].id)
    seen["get_job"] = None if looked_up is None else looked_up.status().value
    seen["missing"] = [queue.get_job("no-such-job"), queue.cancel("no-such-job")]
    seen["echo_info"] = [jobs["echo"].info().args, jobs["echo"].info().kwargs]
    seen["async"] = asyncio.run(async_part())
    return seen


if __name__ == "__main__":
    print(json.dumps(main(), sort_keys=True))
