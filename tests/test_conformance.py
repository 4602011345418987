"""Backend conformance: the behaviour every backend must have (DESIGN §4).

Parametrized over every URL in ``conftest.BACKENDS``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from spikard_tasks import (
    Cancel,
    JobCancelled,
    JobFailed,
    JobStatus,
    Retry,
    TaskHandler,
    TaskQueue,
)

pytestmark = pytest.mark.timeout(60)


def test_sync_and_async_results(queue: TaskQueue) -> None:
    @queue.task
    def add(a: int, b: int) -> int:
        return a + b

    @queue.task(name="greet")
    async def greet(name: str, punctuation: str = "!") -> dict[str, Any]:
        await asyncio.sleep(0.001)
        return {"greeting": f"hello {name}{punctuation}", "items": [1, 2.5, None, True]}

    jobs = [add.delay(i, i) for i in range(20)]
    hello = greet.delay("ada", punctuation="?")
    assert hello.status() is JobStatus.PENDING
    with queue.worker(concurrency=4):
        assert [j.result(timeout=10) for j in jobs] == [2 * i for i in range(20)]
        assert hello.result(timeout=10) == {
            "greeting": "hello ada?",
            "items": [1, 2.5, None, True],
        }
    info = hello.info()
    assert info.status is JobStatus.SUCCEEDED
    assert info.task == "greet"
    assert info.attempts == 1
    assert info.kwargs == {"punctuation": "?"}
    assert info.enqueued_at is not None and info.finished_at is not None
    assert info.started_at is not None and info.enqueued_at <= info.started_at <= info.finished_at


EXACT_NUMBERS = [
    7.813841175890128e-255,  # the JSON parser's default loses its last digit
    5e-324,
    1.7976931348623157e308,
    0.1,
    -0.0,
    2.0**-1074 * 3,
    9007199254740993,  # 2**53 + 1: an int stays exact
    -(2**63),
    2**64 - 1,
]


def test_numbers_come_back_bit_for_bit(queue: TaskQueue) -> None:
    """Floats and 64-bit ints survive the store, the worker and the result unchanged."""
    seen: list[Any] = []

    @queue.task
    def echo(values: list[Any]) -> list[Any]:
        seen.append(values)
        return values

    job = echo.delay(EXACT_NUMBERS)
    with queue.worker(concurrency=1):
        result = job.result(timeout=10)
    for got in (seen[0], result, job.info().args[0]):
        assert [repr(v) for v in got] == [repr(v) for v in EXACT_NUMBERS]
        assert [type(v) for v in got] == [type(v) for v in EXACT_NUMBERS]


def test_flaky_handler_succeeds_on_third_attempt(queue: TaskQueue) -> None:
    calls: list[int] = []

    @queue.task(max_attempts=5)
    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError(f"transient {len(calls)}")
        return "ok"

    job = flaky.delay()
    with queue.worker(concurrency=1):
        assert job.result(timeout=10) == "ok"
    info = job.info()
    assert info.status is JobStatus.SUCCEEDED
    assert info.attempts == 3
    assert [e.error for e in info.errors] == [
        "ConnectionError: transient 1",
        "ConnectionError: transient 2",
    ]
    assert all(e.traceback and "ConnectionError" in e.traceback for e in info.errors)


def test_always_failing_handler_ends_failed_with_traceback(queue: TaskQueue) -> None:
    @queue.task(max_attempts=3)
    def broken(x: int) -> None:
        raise ValueError(f"bad value {x}")

    job = broken.delay(7)
    with queue.worker(concurrency=2):
        with pytest.raises(JobFailed) as caught:
            job.result(timeout=10)
    assert caught.value.error == "ValueError: bad value 7"
    assert "bad value 7" in str(caught.value)
    assert caught.value.traceback is not None
    assert "Traceback (most recent call last)" in caught.value.traceback
    assert "in broken" in caught.value.traceback
    info = job.info()
    assert info.status is JobStatus.FAILED
    assert info.attempts == 3
    assert len(info.errors) == 3


def test_async_handler_failure_and_retry_signal(queue: TaskQueue) -> None:
    seen: list[int] = []

    @queue.task(name="async-retry", max_attempts=3)
    async def async_retry() -> int:
        seen.append(1)
        if len(seen) == 1:
            raise Retry(after=0.05, reason="not yet")
        return len(seen)

    @queue.task(name="async-boom", max_attempts=1)
    async def async_boom() -> None:
        raise KeyError("missing")

    retry_job = async_retry.delay()
    boom_job = async_boom.delay()
    with queue.worker(concurrency=2):
        assert retry_job.result(timeout=10) == 2
        with pytest.raises(JobFailed, match="KeyError"):
            boom_job.result(timeout=10)
    info = retry_job.info()
    assert info.attempts == 2
    assert info.errors[0].error == "Retry: not yet"


def test_retry_after_is_honoured(queue: TaskQueue) -> None:
    times: list[float] = []

    @queue.task(max_attempts=2)
    def later() -> str:
        times.append(time.monotonic())
        if len(times) == 1:
            raise Retry(after=0.4)
        return "done"

    job = later.delay()
    with queue.worker(concurrency=1):
        assert job.result(timeout=10) == "done"
    assert times[1] - times[0] >= 0.4


def test_cancel_signal_from_handler(queue: TaskQueue) -> None:
    @queue.task(max_attempts=5)
    def refuse() -> None:
        raise Cancel("not worth it")

    job = refuse.delay()
    with queue.worker(concurrency=1):
        with pytest.raises(JobCancelled, match="not worth it"):
            job.result(timeout=10)
    info = job.info()
    assert info.status is JobStatus.CANCELLED
    assert info.attempts == 1


def test_priority_order_with_one_slot(queue: TaskQueue) -> None:
    order: list[int] = []

    @queue.task
    def record(p: int) -> None:
        order.append(p)

    priorities = [3, -1, 10, 0, 7, 7, 2]
    jobs = [record.enqueue(args=[p], priority=p) for p in priorities]
    with queue.worker(concurrency=1):
        for j in jobs:
            j.result(timeout=10)
    assert order == sorted(priorities, reverse=True)


def test_delayed_job_never_starts_early(queue: TaskQueue) -> None:
    started: dict[str, float] = {}

    @queue.task
    def stamp(key: str) -> None:
        started[key] = time.time()

    t0 = time.time()
    delayed = stamp.enqueue(args=["delay"], delay=0.5)
    at = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=0.7)
    scheduled = stamp.enqueue(args=["run_at"], run_at=at)
    assert delayed.status() is JobStatus.SCHEDULED
    assert scheduled.status() is JobStatus.SCHEDULED
    with queue.worker(concurrency=2):
        delayed.result(timeout=10)
        scheduled.result(timeout=10)
    assert started["delay"] >= t0 + 0.5
    assert started["run_at"] >= at.timestamp()
    info = scheduled.info()
    assert info.run_at is not None
    assert abs((info.run_at - at).total_seconds()) < 0.002


def test_cancel_pending_and_finished_jobs(queue: TaskQueue) -> None:
    @queue.task
    def noop() -> None:
        return None

    job = noop.enqueue(delay=60)
    assert queue.cancel(job.id) is True
    assert job.status() is JobStatus.CANCELLED
    assert queue.cancel(job.id) is False
    assert queue.cancel("no-such-job") is False
    with pytest.raises(JobCancelled):
        job.result(timeout=1)
    done = noop.delay()
    with queue.worker(concurrency=1):
        done.result(timeout=10)
    assert queue.cancel(done.id) is False


def test_get_job(queue: TaskQueue) -> None:
    @queue.task
    def noop() -> None:
        return None

    job = noop.delay()
    found = queue.get_job(job.id)
    assert found is not None and found.id == job.id
    assert queue.get_job("00000000-0000-0000-0000-000000000000") is None


def test_unique_key_deduplicates_unfinished_jobs(queue: TaskQueue) -> None:
    @queue.task
    def report(day: str) -> str:
        return day

    first = report.enqueue(args=["mon"], unique_key="report:mon", delay=0.2)
    second = report.enqueue(args=["mon"], unique_key="report:mon")
    assert second.id == first.id
    counts = queue.counts()
    assert counts["scheduled"] + counts["pending"] == 1
    with queue.worker(concurrency=1):
        first.result(timeout=10)
    third = report.enqueue(args=["mon"], unique_key="report:mon")
    assert third.id != first.id, "a finished job's key is free again"


def test_enqueue_many_in_order_and_by_name(queue: TaskQueue) -> None:
    @queue.task(name="mul")
    def mul(a: int, b: int) -> int:
        return a * b

    jobs = queue.enqueue_many(
        [
            {"task": "mul", "args": [2, 3]},
            ("mul", [4, 5], {}),
            {"task": mul, "args": [6], "kwargs": {"b": 7}, "priority": 3},
        ]
    )
    assert len(jobs) == 3
    assert jobs[2].info().priority == 3
    by_name = queue.enqueue("mul", args=[1, 1])
    with queue.worker(concurrency=2):
        assert [j.result(timeout=10) for j in jobs] == [6, 20, 42]
        assert by_name.result(timeout=10) == 1


def test_class_based_handler(queue: TaskQueue) -> None:
    @queue.task(name="report")
    class Report(TaskHandler):
        def __init__(self) -> None:
            self.prefix = "report"

        def handle(self, name: str) -> str:
            return f"{self.prefix}:{name}"

    job = queue.enqueue("report", args=["q3"])
    with queue.worker(concurrency=1):
        assert job.result(timeout=10) == "report:q3"


def test_result_timeout(queue: TaskQueue) -> None:
    @queue.task
    def noop() -> None:
        return None

    job = noop.delay()
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        job.result(timeout=0.2)
    assert time.monotonic() - t0 < 5


def test_handler_timeout_fails_attempt(queue: TaskQueue) -> None:
    @queue.task(name="sleepy", timeout=0.2, max_attempts=1)
    async def sleepy() -> None:
        await asyncio.sleep(30)

    job = sleepy.delay()
    with queue.worker(concurrency=1):
        with pytest.raises(JobFailed, match="TimeoutError"):
            job.result(timeout=10)


async def test_async_api(queue: TaskQueue) -> None:
    @queue.task(name="square")
    async def square(x: int) -> int:
        return x * x

    async with queue.worker(concurrency=2):
        job = await square.adelay(9)
        assert await job.wait(timeout=10) == 81
        other = await queue.aenqueue("square", args=[3])
        assert await other.wait(timeout=10) == 9
        assert await queue.aget_job(other.id) == other


def test_many_jobs_concurrently(make_queue: Callable[..., TaskQueue]) -> None:
    queue = make_queue()
    lock = threading.Lock()
    seen: list[int] = []

    @queue.task
    def collect(i: int) -> int:
        with lock:
            seen.append(i)
        return i

    jobs = queue.enqueue_many([{"task": collect, "args": [i]} for i in range(500)])
    with queue.worker(concurrency=8):
        assert [j.result(timeout=30) for j in jobs] == list(range(500))
    assert sorted(seen) == list(range(500)), "each job ran exactly once"
    assert queue.counts()["succeeded"] == 500


def test_sync_handler_past_its_timeout_frees_its_slot(queue: TaskQueue) -> None:
    release = threading.Event()

    @queue.task(name="stuck", timeout=0.3, max_attempts=1)
    def stuck() -> None:
        release.wait(20)

    @queue.task(name="quick")
    def quick() -> str:
        return "ok"

    blocked = stuck.delay()
    with queue.worker(concurrency=1):
        with pytest.raises(JobFailed, match="TimeoutError"):
            blocked.result(timeout=10)
        # One slot, one thread stuck in `stuck`: a replacement thread runs the next job.
        assert quick.delay().result(timeout=10) == "ok"
        release.set()


def test_a_worker_stopped_right_after_it_started_stops_cleanly(queue: TaskQueue) -> None:
    # `with queue.worker(): ...` around code that fails at once must let the user's
    # exception through, not replace it with an error of the stopping worker.
    @queue.task
    def noop() -> None:
        return None

    for _ in range(10):
        with pytest.raises(ValueError, match="the caller's own error"):
            with queue.worker(concurrency=1):
                raise ValueError("the caller's own error")
        report = queue.worker(concurrency=1).start().stop()
        assert report["succeeded"] == 0 and report["released"] == 0
