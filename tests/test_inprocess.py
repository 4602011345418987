"""``TaskQueue("inprocess://...")``: the same tasks on the in-process fast path.

Real runtimes, threads and event loops; handlers are held with events, never with sleeps
whose length decides the outcome.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import spikard_tasks
from spikard_tasks import (
    BackgroundRuntime,
    Backoff,
    Cancel,
    ConfigError,
    JobCancelled,
    JobFailed,
    JobStatus,
    QueueFull,
    Retry,
    SerializationError,
    TaskQueue,
    UnknownTask,
)

pytestmark = pytest.mark.timeout(60)

WAIT = 10.0


def until(predicate: Callable[[], bool], limit: float = WAIT) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition never became true")
        time.sleep(0.001)


@pytest.fixture
def make_queue() -> Iterator[Callable[..., TaskQueue]]:
    """Builds in-process queues with fast backoff; drains them after the test."""
    made: list[TaskQueue] = []

    def make(url: str = "inprocess://", **options: Any) -> TaskQueue:
        options.setdefault("backoff", Backoff(initial=0.01, max=0.05, jitter=0.0))
        queue = TaskQueue(url, **options)
        made.append(queue)
        return queue

    yield make
    for queue in made:
        queue.worker().start().stop()


# -- configuration --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("inprocess://?max_queue_size=0", "max_queue_size"),
        ("inprocess://?max_queue_size=-3", "max_queue_size"),
        ("inprocess://?max_queue_size=ten", "max_queue_size"),
        ("inprocess://?max_concurrent_tasks=1.5", "max_concurrent_tasks"),
        ("inprocess://?drain_timeout=-1", "drain_timeout"),
        ("inprocess://?drain_timeout=nan", "drain_timeout"),
        ("inprocess://?keep_results=-1", "keep_results"),
        ("inprocess://?max_queue_sise=5", "unknown inprocess:// option 'max_queue_sise'"),
        ("inprocess://?max_queue_size=1&max_queue_size=2", "given twice"),
        ("inprocess://?max_queue_size", "key=value"),
        ("inprocess://somewhere", "no host or path"),
        ("inprocess:", "inprocess://"),
    ],
)
def test_bad_urls_are_config_errors(url: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        TaskQueue(url)


def test_url_options_configure_the_runtime(make_queue: Callable[..., TaskQueue]) -> None:
    queue = make_queue(
        "inprocess://?max_queue_size=7&max_concurrent_tasks=3&drain_timeout=2.5&keep_results=5"
    )
    runtime = queue._backend.runtime()  # type: ignore[attr-defined]
    assert (runtime.max_queue_size, runtime.max_concurrent_tasks) == (7, 3)
    assert runtime.drain_timeout == 2.5
    assert not queue.is_durable
    assert "inprocess://" in repr(queue)


def test_drain_timeout_defaults_to_the_config(make_queue: Callable[..., TaskQueue]) -> None:
    queue = make_queue(drain_timeout=4.0)
    assert queue._backend.runtime().drain_timeout == 4.0  # type: ignore[attr-defined]


def test_what_the_fast_path_cannot_do_is_refused(make_queue: Callable[..., TaskQueue]) -> None:
    queue = make_queue()

    @queue.task(name="t")
    def t() -> None:
        return None

    with pytest.raises(ConfigError, match="no durable engine"):
        queue.native  # noqa: B018
    with pytest.raises(UnknownTask, match="registered here"):
        queue.enqueue("elsewhere", strict=False)
    with pytest.raises(UnknownTask):
        queue.enqueue_many([{"task": "t"}, {"task": "elsewhere"}], strict=False)
    with pytest.raises(ConfigError, match="unknown enqueue options"):
        t.enqueue(persist=True)
    with pytest.raises(ConfigError, match="delay"):
        t.enqueue(delay=-1)
    with pytest.raises(ConfigError, match="timeout"):
        t.enqueue(timeout=0)
    with pytest.raises(ConfigError, match="timezone-aware"):
        t.enqueue(run_at=dt.datetime(2030, 1, 1))
    with pytest.raises(ConfigError, match="not both"):
        t.enqueue(delay=1, run_at=dt.datetime.now(dt.timezone.utc))
    with pytest.raises(ConfigError, match="max_attempts"):
        t.enqueue(max_attempts=0)
    with pytest.raises(ConfigError, match="unique_key"):
        t.enqueue(unique_key="")
    with pytest.raises(ConfigError, match="max_attempts"):
        TaskQueue("inprocess://", max_attempts=0)
    with pytest.raises(ConfigError, match="backoff"):
        TaskQueue("inprocess://", backoff=Backoff(multiplier=0.5))
    assert sum(queue.counts().values()) == 0, "nothing was accepted"


# -- the bound ------------------------------------------------------------------------


def test_queue_full_at_exactly_capacity(make_queue: Callable[..., TaskQueue]) -> None:
    queue = make_queue("inprocess://?max_queue_size=2&max_concurrent_tasks=1")
    gate = threading.Event()
    started = threading.Event()

    @queue.task(name="hold")
    def hold(n: int) -> int:
        started.set()
        gate.wait(WAIT)
        return n

    try:
        first = hold.delay(0)  # no worker: it starts at once
        assert started.wait(WAIT)
        assert first.status() is JobStatus.RUNNING
        queued = [hold.delay(1), queue.enqueue("hold", args=[2])]
        assert [j.status() for j in queued] == [JobStatus.PENDING, JobStatus.PENDING]
        t0 = time.monotonic()
        with pytest.raises(QueueFull, match="max_queue_size=2"):
            hold.delay(3)
        assert time.monotonic() - t0 < 1.0, "QueueFull is immediate, it never blocks"
        with pytest.raises(QueueFull):
            hold.enqueue(args=[4], delay=5)  # scheduled jobs count too
        with pytest.raises(QueueFull):
            queue.enqueue_many([("hold", [5])])
        assert queue.counts()["pending"] == 2
    finally:
        gate.set()
    assert [j.result(WAIT) for j in (first, *queued)] == [0, 1, 2]
    assert hold.delay(6).result(WAIT) == 6, "room again once jobs finished"


def test_enqueue_many_is_all_or_nothing(make_queue: Callable[..., TaskQueue]) -> None:
    queue = make_queue("inprocess://?max_queue_size=3&max_concurrent_tasks=1")
    gate = threading.Event()

    @queue.task(name="hold")
    def hold(n: int) -> int:
        gate.wait(WAIT)
        return n

    try:
        running = hold.delay(0)
        until(lambda: running.status() is JobStatus.RUNNING)
        with pytest.raises(QueueFull, match="a batch of 4 does not fit"):
            queue.enqueue_many([("hold", [i]) for i in range(1, 5)])
        assert queue.counts()["pending"] == 0
        fits = queue.enqueue_many([("hold", [i]) for i in range(1, 4)])
    finally:
        gate.set()
    assert [j.result(WAIT) for j in fits] == [1, 2, 3]


# -- outcomes -------------------------------------------------------------------------


def test_results_sync_and_async_without_a_worker(make_queue: Callable[..., TaskQueue]) -> None:
    queue = make_queue()

    @queue.task
    def add(a: int, b: int) -> int:
        return a + b

    @queue.task(name="greet")
    async def greet(name: str, punctuation: str = "!") -> dict[str, Any]:
        await asyncio.sleep(0.001)
        return {"greeting": f"hello {name}{punctuation}", "items": (1, 2.5, None, True)}

    jobs = [add.delay(i, i) for i in range(20)]
    hello = greet.delay("ada", punctuation="?")
    assert [j.result(WAIT) for j in jobs] == [2 * i for i in range(20)]
    assert hello.result(WAIT) == {"greeting": "hello ada?", "items": [1, 2.5, None, True]}
    info = hello.info()
    assert info.status is JobStatus.SUCCEEDED
    assert (info.task, info.queue, info.attempts, info.max_attempts) == ("greet", "default", 1, 3)
    assert info.kwargs == {"punctuation": "?"} and info.args == ["ada"]
    assert info.enqueued_at is not None and info.started_at is not None
    assert info.finished_at is not None
    assert info.enqueued_at <= info.started_at <= info.finished_at
    assert info.result == hello.result(0)
    assert add.name in queue.tasks


def test_a_failing_handler_does_not_stop_others(make_queue: Callable[..., TaskQueue]) -> None:
    queue = make_queue("inprocess://?max_concurrent_tasks=2", max_attempts=1)

    @queue.task(name="maybe")
    def maybe(i: int) -> int:
        if i % 3 == 0:
            raise ValueError(f"bad {i}")
        return i

    @queue.task(name="amaybe")
    async def amaybe(i: int) -> int:
        if i % 3 == 0:
            raise KeyError(i)
        return -i

    jobs = [maybe.delay(i) for i in range(30)] + [amaybe.delay(i) for i in range(30)]
    for n, job in enumerate(jobs):
        i = n % 30
        if i % 3 == 0:
            with pytest.raises(JobFailed):
                job.result(WAIT)
        else:
            assert job.result(WAIT) == (i if n < 30 else -i)
    counts = queue.counts()
    assert (counts["failed"], counts["succeeded"]) == (20, 40)


def test_job_failed_carries_error_and_traceback(make_queue: Callable[..., TaskQueue]) -> None:
    queue = make_queue()

    @queue.task(max_attempts=2)
    def broken(x: int) -> None:
        raise ValueError(f"bad value {x}")

    job = broken.delay(7)
    with pytest.raises(JobFailed) as caught:
        job.result(WAIT)
    assert caught.value.error == "ValueError: bad value 7"
    assert caught.value.job_id == job.id
    assert caught.value.traceback and "in broken" in caught.value.traceback
    info = job.info()
    assert (info.status, info.attempts, len(info.errors)) == (JobStatus.FAILED, 2, 2)
    assert [e.attempt for e in info.errors] == [1, 2]


def test_retries_with_backoff_and_retry_signal(make_queue: Callable[..., TaskQueue]) -> None:
    queue = make_queue()
    calls: list[float] = []

    @queue.task(max_attempts=5)
    def flaky() -> str:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise ConnectionError("transient")
        if len(calls) == 2:
            raise Retry(after=0.3, reason="not yet")
        return "ok"

    job = flaky.delay()
    assert job.result(WAIT) == "ok"
    assert calls[2] - calls[1] >= 0.3
    info = job.info()
    assert info.attempts == 3
    assert [e.error for e in info.errors] == ["ConnectionError: transient", "Retry: not yet"]


def test_cancel_from_handler_and_by_id(make_queue: Callable[..., TaskQueue]) -> None:
    queue = make_queue("inprocess://?max_concurrent_tasks=1")
    gate = threading.Event()

    @queue.task(max_attempts=5)
    def refuse() -> None:
        raise Cancel("not worth it")

    @queue.task(name="hold")
    def hold() -> None:
        gate.wait(WAIT)

    @queue.task(name="sleepy")
    async def sleepy() -> None:
        await asyncio.sleep(WAIT)

    refused = refuse.delay()
    with pytest.raises(JobCancelled, match="not worth it"):
        refused.result(WAIT)
    assert refused.info().attempts == 1

    try:
        running = hold.delay()
        until(lambda: running.status() is JobStatus.RUNNING)
        waiting = hold.delay()
        assert queue.cancel(waiting.id) is True
        assert waiting.status() is JobStatus.CANCELLED
        assert queue.cancel(waiting.id) is False
        with pytest.raises(JobCancelled, match="cancelled by request"):
            waiting.result(WAIT)
        assert queue.cancel(running.id) is True, "a running sync job is asked to stop"
    finally:
        gate.set()
    assert running.result(WAIT) is None, "a sync handler that returns keeps its result"

    asleep = sleepy.delay()
    until(lambda: asleep.status() is JobStatus.RUNNING)
    assert asleep.cancel() is True
    with pytest.raises(JobCancelled):
        asleep.result(WAIT)
    assert queue.cancel(asleep.id) is False
    assert queue.cancel("no-such-job") is False


def test_result_timeout_and_handler_timeout(make_queue: Callable[..., TaskQueue]) -> None:
    queue = make_queue(max_attempts=1)
    gate = threading.Event()

    @queue.task(name="hold")
    def hold() -> None:
        gate.wait(WAIT)

    @queue.task(name="sleepy", timeout=0.2)
    async def sleepy() -> None:
        await asyncio.sleep(WAIT)

    job = hold.delay()
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        job.result(timeout=0.2)
    assert time.monotonic() - t0 < 5
    gate.set()
    job.result(WAIT)
    with pytest.raises(JobFailed, match=r"TimeoutError: attempt 1 ran past its 0.2s timeout"):
        sleepy.delay().result(WAIT)


async def test_async_api(make_queue: Callable[..., TaskQueue]) -> None:
    queue = make_queue()

    @queue.task(name="square")
    async def square(x: int) -> int:
        return x * x

    async with queue.worker():
        job = await square.adelay(9)
        assert await job.wait(timeout=WAIT) == 81
        other = await queue.aenqueue("square", args=[3])
        assert await other.wait(timeout=WAIT) == 9
        assert await queue.aget_job(other.id) == other
        assert await queue.acancel(other.id) is False

    @queue.task(name="wait_long")
    async def wait_long() -> None:
        await asyncio.sleep(WAIT)

    slow = await queue.aenqueue("wait_long")
    with pytest.raises(TimeoutError):
        await slow.wait(timeout=0.1)
    assert await queue.acancel(slow.id) is True
    with pytest.raises(JobCancelled):
        await slow.wait(timeout=WAIT)


# -- order, time, uniqueness ----------------------------------------------------------


def test_priority_order_with_one_slot(make_queue: Callable[..., TaskQueue]) -> None:
    queue = make_queue("inprocess://?max_concurrent_tasks=1")
    gate = threading.Event()
    order: list[int] = []

    @queue.task(name="hold")
    def hold() -> None:
        gate.wait(WAIT)

    @queue.task
    def record(p: int) -> None:
        order.append(p)

    blocker = hold.delay()
    until(lambda: blocker.status() is JobStatus.RUNNING)
    priorities = [3, -1, 10, 0, 7, 7, 2]
    jobs = [record.enqueue(args=[p], priority=p) for p in priorities]
    gate.set()
    for job in jobs:
        job.result(WAIT)
    assert order == sorted(priorities, reverse=True)
    assert jobs[2].info().priority == 10


def test_delayed_job_never_starts_early(make_queue: Callable[..., TaskQueue]) -> None:
    queue = make_queue()
    started: dict[str, float] = {}

    @queue.task
    def stamp(key: str) -> None:
        started[key] = time.time()

    t0 = time.time()
    delayed = stamp.enqueue(args=["delay"], delay=0.4)
    at = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=0.5)
    scheduled = stamp.enqueue(args=["run_at"], run_at=at)
    assert delayed.status() is JobStatus.SCHEDULED
    assert scheduled.status() is JobStatus.SCHEDULED
    assert queue.counts()["scheduled"] == 2
    delayed.result(WAIT)
    scheduled.result(WAIT)
    assert started["delay"] >= t0 + 0.4
    assert started["run_at"] >= at.timestamp()
    info = scheduled.info()
    assert info.run_at is not None and info.run_at >= at


def test_unique_key_deduplicates_unfinished_jobs(make_queue: Callable[..., TaskQueue]) -> None:
    queue = make_queue()

    @queue.task
    def report(day: str) -> str:
        return day

    first = report.enqueue(args=["mon"], unique_key="report:mon", delay=0.2)
    second = report.enqueue(args=["mon"], unique_key="report:mon")
    [third] = queue.enqueue_many([{"task": report, "args": ["mon"], "unique_key": "report:mon"}])
    assert first.id == second.id == third.id
    assert first.result(WAIT) == "mon"
    again = report.enqueue(args=["mon"], unique_key="report:mon")
    assert again.id != first.id, "a finished job's key is free again"
    assert again.info().unique_key == "report:mon"


# -- JSON rules -----------------------------------------------------------------------


class Opaque:
    pass


@pytest.mark.parametrize(
    ("args", "kwargs", "fragment"),
    [
        ([{1, 2}], {}, r"args\[0\]: object of type set"),
        ([Opaque()], {}, "Opaque"),
        ([], {"when": dt.datetime(2026, 1, 1)}, r"kwargs\[\"when\"\]: object of type datetime"),
        ([b"bytes"], {}, "bytes"),
        ([float("nan")], {}, "NaN"),
        ([{1: "int key"}], {}, "keys must be str"),
        ([2**70], {}, "64-bit"),
    ],
)
def test_non_json_arguments_are_refused(
    make_queue: Callable[..., TaskQueue], args: list[object], kwargs: dict[str, Any], fragment: str
) -> None:
    queue = make_queue()

    @queue.task(name="t")
    def t(*a: object, **k: object) -> None:
        return None

    with pytest.raises(SerializationError, match=fragment):
        t.delay(*args, **kwargs)
    with pytest.raises(SerializationError):
        queue.enqueue_many(
            [{"task": "t", "args": [1]}, {"task": "t", "args": args, "kwargs": kwargs}]
        )
    assert sum(queue.counts().values()) == 0, "nothing accepted, not even the valid job"


def test_handlers_get_json_copies_and_results_must_be_json(
    make_queue: Callable[..., TaskQueue],
) -> None:
    queue = make_queue()
    mine = {"nested": [1, 2]}

    @queue.task(name="inspect")
    def inspect_args(*args: Any, **kwargs: Any) -> list[Any]:
        args[1]["nested"].append(3)  # mutates the job's copy, not the caller's dict
        return [[type(a).__name__ for a in args], kwargs]

    @queue.task(name="returns_set", max_attempts=3)
    def returns_set() -> object:
        return {1, 2}

    job = inspect_args.delay((1, 2), mine, big=2**63, flag=(True,))
    assert job.result(WAIT) == [["list", "dict"], {"big": 2**63, "flag": [True]}]
    assert mine == {"nested": [1, 2]}
    bad = returns_set.delay()
    with pytest.raises(JobFailed, match="SerializationError: result: object of type set"):
        bad.result(WAIT)
    assert bad.info().attempts == 1, "not retried: a retry cannot fix it"


# -- lookup, counts, workers ----------------------------------------------------------


def test_get_job_keeps_recent_jobs(make_queue: Callable[..., TaskQueue]) -> None:
    queue = make_queue("inprocess://?keep_results=3")

    @queue.task
    def noop(i: int) -> int:
        return i

    ids = [noop.delay(i).id for i in range(10)]  # handles dropped at once
    for job_id in ids[-3:]:
        found = queue.get_job(job_id)
        assert found is not None and found.result(WAIT) == int(ids.index(job_id))
    held = noop.delay(99)
    for i in range(5):
        noop.delay(i).result(WAIT)
    assert queue.get_job(held.id) == held, "a held handle keeps its job findable"
    assert queue.get_job("00000000-0000-0000-0000-000000000000") is None
    assert len(held.id) == 36 and held.id.count("-") == 4


def test_worker_context_drains_and_the_queue_keeps_working(
    make_queue: Callable[..., TaskQueue],
) -> None:
    queue = make_queue(drain_timeout=5.0)

    @queue.task
    def later(x: int) -> int:
        return x

    with queue.worker(concurrency=4) as worker:
        assert worker.running
        job = later.enqueue(args=[1], delay=0.2)
    assert job.status() is JobStatus.SUCCEEDED, "leaving the block drained the runtime"
    report = worker.stop()
    assert report["succeeded"] >= 1 and report["released"] == 0
    assert set(report) == {"succeeded", "retried", "failed", "cancelled", "released"}
    assert later.delay(2).result(WAIT) == 2, "the next enqueue starts a fresh runtime"


def test_drain_cancels_what_cannot_run_in_time(make_queue: Callable[..., TaskQueue]) -> None:
    queue = make_queue(drain_timeout=0.5)

    @queue.task
    def noop() -> None:
        return None

    far = noop.enqueue(delay=60)
    report = queue.worker().start().stop()
    assert report["released"] == 1
    assert far.status() is JobStatus.CANCELLED
    with pytest.raises(JobCancelled, match="shut down"):
        far.result(0)


def test_background_runtime_is_exported_and_runs_tasks() -> None:
    for name in ("BackgroundRuntime", "DrainReport", "RuntimeStats", "RuntimeJob"):
        assert name in spikard_tasks.__all__
    queue = TaskQueue("inprocess://")

    @queue.task(name="double")
    def double(x: int) -> int:
        return 2 * x

    with BackgroundRuntime(max_queue_size=4, max_concurrent_tasks=2) as runtime:
        job = runtime.submit(double, 21)
        assert job.result(WAIT) == 42
        assert job.name == "double"
        assert runtime.submit(lambda: 1).result(WAIT) == 1
