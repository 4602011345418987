"""Many producers at once: no enqueue fails because the database broke a lock conflict
(a MariaDB deadlock or lock wait timeout is retried inside the engine), and unique keys
stay exactly-once: one unfinished job per key, returned to every caller."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from spikard_tasks import Job, TaskQueue

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

THREADS = 20
CALLS = 1_000
#: Jobs per ``enqueue_many`` batch and the keys the batches draw from.
BATCH = 20
KEYS = 200


def _hammer(
    produce: Callable[[int, int], list[Job]], calls: int = CALLS
) -> tuple[list[list[Job]], float]:
    """Runs ``produce(thread, call)`` ``calls`` times on each of THREADS threads at once;
    returns every thread's jobs and the seconds taken. Any exception fails the test
    (after all threads stopped), with the first few errors and their count."""
    jobs: list[list[Job]] = [[] for _ in range(THREADS)]
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def run(t: int) -> None:
        start.wait()
        for i in range(calls):
            try:
                jobs[t].extend(produce(t, i))
            except Exception as exc:
                errors.append(exc)

    threads = [threading.Thread(target=run, args=(t,)) for t in range(THREADS)]
    began = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    took = time.perf_counter() - began
    assert not errors, f"{len(errors)} of {THREADS * calls} calls raised: {errors[:3]!r}"
    return jobs, took


def _queue(url: str) -> TaskQueue:
    return TaskQueue(url, queue=f"stress-{uuid.uuid4().hex[:8]}")


def _unfinished(queue: TaskQueue) -> int:
    counts = queue.counts()
    return sum(counts.get(s, 0) for s in ("pending", "scheduled", "running", "retrying"))


def _report(what: str, url: str, calls: int, jobs: int, took: float) -> None:
    scheme = url.split(":", 1)[0]
    print(f"\n{scheme} {what}: {calls} calls ({jobs} enqueues), 0 errors, {took:.1f} s")


def test_same_unique_key_from_many_threads(shared_url: str) -> None:
    queue = _queue(shared_url)

    def one(t: int, i: int) -> list[Job]:
        return [queue.enqueue("stress", args=[t, i], unique_key="the-key", strict=False)]

    jobs, took = _hammer(one)
    ids = {job.id for thread in jobs for job in thread}
    assert len(ids) == 1, f"{len(ids)} jobs for one unique key"
    assert _unfinished(queue) == 1
    job = queue.get_job(ids.pop())
    assert job is not None and job.info().unique_key == "the-key"
    _report("same key", shared_url, THREADS * CALLS, THREADS * CALLS, took)


def test_distinct_unique_keys_from_many_threads(shared_url: str) -> None:
    queue = _queue(shared_url)

    def one(t: int, i: int) -> list[Job]:
        return [queue.enqueue("stress", unique_key=f"k-{t}-{i}", strict=False)]

    jobs, took = _hammer(one)
    ids = {job.id for thread in jobs for job in thread}
    assert len(ids) == THREADS * CALLS
    assert _unfinished(queue) == THREADS * CALLS
    _report("distinct keys", shared_url, THREADS * CALLS, THREADS * CALLS, took)


def test_batches_of_mixed_keys_from_many_threads(shared_url: str) -> None:
    queue = _queue(shared_url)
    seeds = random.Random(7)
    # Each batch: keys from a shared pool (some twice in one batch) and jobs without a key,
    # in random order, so concurrent batches want the same keys in different orders.
    plans = [
        [
            [seeds.randrange(KEYS) if seeds.random() < 0.75 else None for _ in range(BATCH)]
            for _ in range(CALLS // BATCH)
        ]
        for _ in range(THREADS)
    ]

    def batch(t: int, i: int) -> list[Job]:
        keys = plans[t][i]
        specs: list[dict[str, Any]] = [
            {"task": "stress", "args": [t, i, n]}
            | ({} if key is None else {"unique_key": f"key-{key}"})
            for n, key in enumerate(keys)
        ]
        return queue.enqueue_many(specs, strict=False)

    jobs, took = _hammer(batch, CALLS // BATCH)
    by_key: dict[str, set[str]] = {}
    plain: set[str] = set()
    for t, thread in enumerate(jobs):
        keys = [k for plan in plans[t] for k in plan]
        assert len(thread) == len(keys)
        for job, key in zip(thread, keys, strict=True):
            if key is None:
                plain.add(job.id)
            else:
                by_key.setdefault(f"key-{key}", set()).add(job.id)
    assert all(len(ids) == 1 for ids in by_key.values()), "a key got more than one job"
    assert _unfinished(queue) == len(by_key) + len(plain)
    assert len(plain) == sum(k is None for plan in plans for p in plan for k in p)
    _report("batches of mixed keys", shared_url, THREADS * CALLS // BATCH, THREADS * CALLS, took)
