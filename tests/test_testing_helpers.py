"""``spikard_tasks.testing``: capture and eager mode, as a user's test suite uses them."""

from __future__ import annotations

from pathlib import Path

import pytest

from spikard_tasks import Cancel, JobStatus, TaskQueue
from spikard_tasks.exceptions import JobCancelled, JobFailed, UnknownTask
from spikard_tasks.testing import capture, eager


def _queue(url: str) -> TaskQueue:
    queue = TaskQueue(url, queue="helpers")

    @queue.task(name="add")
    def add(a: int, b: int) -> int:
        return a + b

    @queue.task(name="boom", max_attempts=1)
    def boom() -> None:
        raise ValueError("no")

    @queue.task(name="stop")
    async def stop() -> None:
        raise Cancel("not today")

    @queue.task(name="fan_out")
    def fan_out(n: int) -> int:
        for i in range(n):
            add.delay(i, i)
        return n

    return queue


@pytest.fixture(params=["memory", "sqlite"])
def queue(request: pytest.FixtureRequest, tmp_path: Path) -> TaskQueue:
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path}/h.db"
    return _queue(url)


def test_capture_records_and_still_stores(queue: TaskQueue) -> None:
    with capture(queue) as enqueued:
        job = queue.tasks["add"].delay(1, 2)
        queue.enqueue_many([("add", [3, 4], {}), ("boom", [], {})])
    assert enqueued.tasks() == ["add", "add", "boom"]
    (found,) = enqueued.assert_enqueued("add", args=[1, 2], times=1)
    assert found.job.id == job.id
    assert job.status() is JobStatus.PENDING  # stored, nobody ran it
    enqueued.assert_not_enqueued("fan_out")
    with pytest.raises(AssertionError, match="was enqueued 2 times, not 1"):
        enqueued.assert_enqueued("add", times=1)
    with pytest.raises(AssertionError, match="was not enqueued"):
        enqueued.assert_enqueued("add", args=[9, 9])
    with pytest.raises(AssertionError, match="boom"):
        enqueued.assert_not_enqueued()
    enqueued.clear()
    enqueued.assert_not_enqueued()
    # Outside the block nothing is recorded any more.
    queue.tasks["add"].delay(5, 6)
    assert enqueued.jobs == []


def test_eager_runs_each_job_before_delay_returns(queue: TaskQueue) -> None:
    with eager(queue) as ran:
        job = queue.tasks["add"].delay(2, 3)
        assert job.status() is JobStatus.SUCCEEDED
        failed = queue.enqueue("boom")
        cancelled = queue.enqueue("stop")
    assert job.result() == 5  # readable after the block too
    with pytest.raises(JobFailed, match="ValueError: no"):
        failed.result()
    with pytest.raises(JobCancelled):
        cancelled.result()
    assert ran.tasks() == ["add", "boom", "stop"]
    assert queue.counts()["succeeded"] == 0, "nothing reached the queue's own backend"


def test_eager_runs_jobs_enqueued_by_jobs(queue: TaskQueue) -> None:
    with eager(queue) as ran:
        assert queue.tasks["fan_out"].delay(3).result() == 3
    assert ran.tasks() == ["fan_out", "add", "add", "add"]
    assert [j.job.result() for j in ran.of("add")] == [0, 2, 4]


def test_eager_keeps_the_json_rules(queue: TaskQueue) -> None:
    from spikard_tasks.exceptions import SerializationError

    with eager(queue), pytest.raises(SerializationError):
        queue.tasks["add"].delay(object(), 1)


def test_eager_retries_without_the_backoff_delay(queue: TaskQueue) -> None:
    """The queue's default backoff (1 s, then 2 s) would make this job take 3 s; under
    eager() the retries run at once, well inside a 1.5 s timeout, on the engine's path."""
    calls: list[int] = []

    @queue.task(name="flaky", max_attempts=3)
    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError(f"try {len(calls)}")
        return "ok"

    assert queue.config.backoff.initial == 1.0
    with eager(queue, timeout=1.5):
        job = flaky.delay()
    assert job.result() == "ok"
    info = job.info()
    assert info.attempts == 3
    assert [e.error for e in info.errors] == ["ConnectionError: try 1", "ConnectionError: try 2"]


def test_eager_refuses_a_task_this_process_does_not_register(queue: TaskQueue) -> None:
    with eager(queue), pytest.raises(UnknownTask, match="eager"):
        queue.enqueue("nobody.registers.this", strict=False)
    assert queue.counts().get("pending", 0) == 0
