"""The operations of a queue (stats, the job list, retry, bulk cancel and purge, pause,
live workers) on every backend, ``inprocess://`` included, through the sync methods and
their async twins, with real workers. Durable stores are shared between tests, so each
test works in queues of its own and reads only them."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from spikard_tasks import (
    Backoff,
    ConfigError,
    JobFailed,
    JobPage,
    JobStatus,
    QueueStats,
    Stats,
    TaskQueue,
    WorkerInfo,
)

from .conftest import BACKENDS, _url
from .procs import wait_for

pytestmark = pytest.mark.timeout(120)

#: What the flaky task does next: fail while "fail" is true.
FLAKY = {"fail": True}


@pytest.fixture(params=[*BACKENDS, "inprocess"])
def ops_queue(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TaskQueue]:
    """A queue on each backend with tasks ``ok``, ``boom``, ``flaky`` and ``other``."""
    url = "inprocess://" if request.param == "inprocess" else _url(request.param, tmp_path)
    queue = TaskQueue(
        url,
        environment=False,
        poll_interval=0.01,
        backoff=Backoff(initial=0.01, max=0.05, jitter=0.0),
        queue=f"q-{uuid.uuid4().hex[:8]}",
        drain_timeout=5.0,
    )

    @queue.task(name="ok")
    def ok(x: int = 0) -> int:
        return x

    @queue.task(name="other")
    def other() -> str:
        return "other"

    @queue.task(name="boom", max_attempts=1)
    def boom() -> None:
        raise ValueError("boom")

    @queue.task(name="flaky", max_attempts=1)
    def flaky() -> str:
        if FLAKY["fail"]:
            raise RuntimeError("not yet")
        return "fine"

    FLAKY["fail"] = True
    yield queue
    queue.close()


def _name() -> str:
    return f"q-{uuid.uuid4().hex[:8]}"


def _counts(queue: TaskQueue, name: str) -> dict[str, int]:
    found = queue.stats().queue(name)
    return found.counts if found else {}


# -- stats ------------------------------------------------------------------------------


def test_stats_counts_match_a_known_mix(ops_queue: TaskQueue) -> None:
    queue = ops_queue
    busy, held = queue.name, _name()
    assert queue.pause(held) is True
    with queue.worker(queues=[busy]):
        done = [queue.enqueue("ok", [1]), queue.enqueue("ok", [2])]
        failed = queue.enqueue("boom")
        later = queue.enqueue("ok", delay=3600)
        gone = queue.enqueue("ok", delay=3600)
        assert gone.cancel()
        waiting = [queue.enqueue("ok", queue=held) for _ in range(3)]
        assert [j.result(30) for j in done] == [1, 2]
        with pytest.raises(JobFailed):
            failed.result(30)
        stats = queue.stats()
        assert later.status() is JobStatus.SCHEDULED
        assert all(j.status() is JobStatus.PENDING for j in waiting)
    assert isinstance(stats, Stats) and stats.at.tzinfo is not None
    mine = stats.queue(busy)
    assert isinstance(mine, QueueStats)
    assert mine.counts == {
        "pending": 0,
        "scheduled": 1,
        "running": 0,
        "retrying": 0,
        "succeeded": 2,
        "failed": 1,
        "cancelled": 1,
    }
    assert (mine.succeeded_last_minute, mine.failed_last_minute) == (2, 1)
    assert mine.oldest_ready_age is None and mine.paused is False
    other = stats.queue(held)
    assert other is not None and other.paused is True
    assert other.counts["pending"] == 3 and sum(other.counts.values()) == 3
    assert other.oldest_ready_age is not None and other.oldest_ready_age >= 0
    totals = stats.counts
    assert set(totals) == set(mine.counts)
    assert all(totals[s] >= mine.counts[s] + other.counts[s] for s in totals)
    assert stats.queue("no-such-queue-" + uuid.uuid4().hex) is None
    as_dict = stats.to_dict()
    assert as_dict["queues"] and "counts" in as_dict
    queue.resume(held)


def test_a_paused_queue_without_jobs_is_listed(ops_queue: TaskQueue) -> None:
    name = _name()
    assert ops_queue.pause(name) is True
    assert ops_queue.pause(name) is False  # already paused
    entry = ops_queue.stats().queue(name)
    assert entry is not None and entry.paused and sum(entry.counts.values()) == 0
    assert name in ops_queue.paused()
    assert ops_queue.resume(name) is True
    assert ops_queue.resume(name) is False
    assert name not in ops_queue.paused()
    assert ops_queue.stats().queue(name) is None


# -- the job list -----------------------------------------------------------------------


def test_list_jobs_filters_and_pages(ops_queue: TaskQueue) -> None:
    queue = ops_queue
    name = queue.name
    queue.pause(name)  # nothing runs: the jobs stay as enqueued
    first = [queue.enqueue("ok", [i]).id for i in range(4)]
    time.sleep(0.01)
    middle = dt.datetime.now(dt.timezone.utc)
    time.sleep(0.01)
    second = [queue.enqueue("ok", [i]).id for i in range(3)]
    others = [queue.enqueue("other").id for _ in range(2)]
    scheduled = queue.enqueue("ok", delay=3600).id

    seen: list[str] = []
    cursor = None
    sizes = []
    while True:
        page = queue.list_jobs(queue=name, task="ok", limit=3, cursor=cursor)
        assert isinstance(page, JobPage)
        sizes.append(len(page))
        seen += [j.id for j in page]
        times = [j.enqueued_at for j in page]
        assert times == sorted(times, reverse=True)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert sizes == [3, 3, 2]
    assert len(seen) == len(set(seen)) == 8
    assert set(seen) == {*first, *second, scheduled}

    pending = queue.list_jobs(queue=name, status="pending", limit=100)
    assert {j.id for j in pending} == {*first, *second, *others}
    assert pending.next_cursor is None
    both = queue.list_jobs(queue=name, status=["scheduled", "pending"], task="other")
    assert {j.id for j in both} == set(others)
    assert [j.id for j in queue.list_jobs(queue=name, status="scheduled")] == [scheduled]
    early = queue.list_jobs(queue=name, until=middle, limit=100)
    assert {j.id for j in early} == set(first)
    late = queue.list_jobs(queue=name, since=middle, task="ok", limit=100)
    assert {j.id for j in late} == {*second, scheduled}
    naive = middle.replace(tzinfo=None)  # naive datetimes are UTC
    assert {j.id for j in queue.list_jobs(queue=name, until=naive, limit=100)} == set(first)
    assert len(queue.list_jobs(queue=f"{name}-none")) == 0
    info = next(iter(queue.list_jobs(queue=name, task="other", limit=1)))
    assert info.task == "other" and info.queue == name
    assert page.to_dict()["next_cursor"] is None
    queue.resume(name)


# -- retry ------------------------------------------------------------------------------


def test_retry_runs_a_failed_job_again_keeping_its_history(ops_queue: TaskQueue) -> None:
    queue = ops_queue
    with queue.worker():
        job = queue.enqueue("flaky")
        with pytest.raises(JobFailed):
            job.result(30)
        failed = job.info()
        assert failed.status is JobStatus.FAILED and len(failed.errors) == 1
        FLAKY["fail"] = False
        assert queue.retry(job.id) is True
        assert job.result(30) == "fine"
    info = job.info()
    assert info.status is JobStatus.SUCCEEDED and info.attempts == 1
    assert [e.error for e in info.errors] == [failed.errors[0].error]
    assert "not yet" in info.errors[0].error
    assert queue.retry(job.id) is False  # succeeded: nothing to retry
    assert queue.retry("no-such-job") is False


def test_bulk_retry_cancel_and_purge_count_what_they_touch(ops_queue: TaskQueue) -> None:
    queue = ops_queue
    name = queue.name
    queue.pause(name)
    mine = [queue.enqueue("ok", [i]) for i in range(3)]
    rest = [queue.enqueue("other") for _ in range(2)]
    assert queue.cancel_jobs(queue=name, task="ok") == 3
    assert _counts(queue, name)["cancelled"] == 3
    assert _counts(queue, name)["pending"] == 2
    assert all(j.status() is JobStatus.CANCELLED for j in mine)
    assert queue.cancel_jobs(queue=name, task="ok") == 0  # finished: not touched
    assert queue.retry_jobs(queue=name, status="cancelled") == 3
    assert all(j.status() is JobStatus.PENDING for j in mine)
    assert queue.cancel_jobs(queue=name) == 5
    time.sleep(0.01)  # purge takes jobs finished strictly before now (ms)
    assert queue.purge(queue=name, older_than=3600) == 0  # finished just now
    assert queue.purge(queue=name, task="other", older_than=dt.timedelta(0)) == 2
    assert queue.purge(queue=name) == 3
    assert len(queue.list_jobs(queue=name)) == 0
    assert all(queue.get_job(j.id) is None for j in [*mine, *rest])
    with pytest.raises(ConfigError, match="retry only touches failed or cancelled"):
        queue.retry_jobs(status="succeeded")
    with pytest.raises(ConfigError, match="purge only touches"):
        queue.purge(status="pending")
    queue.resume(name)


def test_purge_leaves_unfinished_jobs(ops_queue: TaskQueue) -> None:
    queue = ops_queue
    queue.pause(queue.name)
    job = queue.enqueue("ok")
    assert queue.purge(queue=queue.name) == 0
    assert job.status() is JobStatus.PENDING
    queue.resume(queue.name)


# -- pause ------------------------------------------------------------------------------


def test_pause_stops_claims_while_the_other_queue_drains(ops_queue: TaskQueue) -> None:
    queue = ops_queue
    stopped, busy = _name(), _name()
    with queue.worker(queues=[stopped, busy]):
        assert queue.pause(stopped) is True
        time.sleep(0.3)  # more than one poll interval: every claim from now on skips it
        held = [queue.enqueue("ok", [i], queue=stopped) for i in range(3)]  # enqueue works
        drained = [queue.enqueue("ok", [i], queue=busy) for i in range(3)]
        assert [j.result(30) for j in drained] == [0, 1, 2]
        time.sleep(0.3)  # the worker polled many times meanwhile
        assert [j.status() for j in held] == [JobStatus.PENDING] * 3
        assert queue.stats().queue(stopped).paused  # type: ignore[union-attr]
        assert queue.resume(stopped) is True
        assert [j.result(30) for j in held] == [0, 1, 2]


# -- workers ----------------------------------------------------------------------------


def _listed(queue: TaskQueue, name: str | None) -> WorkerInfo | None:
    return next((w for w in queue.workers() if w.name == name), None)


def test_workers_lists_a_running_worker_until_it_stops(ops_queue: TaskQueue) -> None:
    queue = ops_queue
    worker = queue.worker(concurrency=3).start()
    try:
        info = wait_for(lambda: _listed(queue, worker.name), "the worker to register")
        assert isinstance(info, WorkerInfo)
        assert info.host == socket.gethostname() and info.pid == os.getpid()
        assert info.queues == [queue.name]
        if queue.is_durable:
            assert info.concurrency == 3
        else:  # the runtime's max_concurrent_tasks (the worker's concurrency does not apply)
            assert info.concurrency >= 1
        assert info.started_at <= info.last_heartbeat
        assert info.jobs_held >= 0 and info.version
        assert info.to_dict()["name"] == worker.name
    finally:
        worker.stop()
    assert _listed(queue, worker.name) is None


# -- async twins ------------------------------------------------------------------------


async def test_async_twins(ops_queue: TaskQueue) -> None:
    queue = ops_queue
    name = queue.name
    assert await queue.apause(name) is True
    assert name in await queue.apaused()
    job = await queue.aenqueue("ok", [7])
    page = await queue.alist_jobs(queue=name)
    assert [j.id for j in page] == [job.id]
    assert (await queue.astats()).queue(name).counts["pending"] == 1  # type: ignore[union-attr]
    assert await queue.acancel_jobs(queue=name) == 1
    assert await queue.aretry(job.id) is True
    assert await queue.acancel_jobs(queue=name) == 1
    assert await queue.aretry_jobs(queue=name) == 1
    assert await queue.acancel_jobs(queue=name) == 1
    await asyncio.sleep(0.01)  # purge takes jobs finished strictly before now (ms)
    assert await queue.apurge(queue=name) == 1
    assert await queue.aresume(name) is True
    assert isinstance(await queue.aworkers(), list)


# -- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda q: q.list_jobs(status="done"), "unknown job status 'done'; valid: pending"),
        (lambda q: q.list_jobs(status=["failed", 3]), "unknown job status 3"),
        (lambda q: q.cancel_jobs(status="nope"), "valid: pending, scheduled"),
        (lambda q: q.list_jobs(limit=0), "limit must be a whole number from 1 to 1000"),
        (lambda q: q.list_jobs(limit=1001), "from 1 to 1000, got 1001"),
        (lambda q: q.list_jobs(limit=True), "limit"),
        (lambda q: q.list_jobs(cursor="not a cursor"), "malformed cursor"),
        (lambda q: q.list_jobs(since="2024-01-01"), "since must be a datetime"),
        (lambda q: q.purge(older_than=math.nan), "older_than"),
        (lambda q: q.purge(older_than=-1), "older_than"),
        (lambda q: q.purge(older_than=math.inf), "older_than"),
        (lambda q: q.list_jobs(task=""), "task must be a non-empty string"),
        (lambda q: q.retry(""), "job_id"),
        (lambda q: q.pause(""), "queue must be a non-empty string"),
        (
            lambda q: q.list_jobs(
                since=dt.datetime(2024, 1, 2, tzinfo=dt.timezone.utc),
                until=dt.datetime(2024, 1, 1),
            ),
            "is after until",
        ),
    ],
)
def test_bad_input_is_a_config_error(
    ops_queue: TaskQueue, call: Callable[[TaskQueue], Any], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        call(ops_queue)


def test_naive_and_aware_datetimes_mean_the_same_instant(ops_queue: TaskQueue) -> None:
    queue = ops_queue
    queue.pause(queue.name)
    job = queue.enqueue("ok")
    after = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=5)
    aware = queue.list_jobs(queue=queue.name, until=after)
    naive = queue.list_jobs(queue=queue.name, until=after.replace(tzinfo=None))
    local = after.astimezone(dt.timezone(dt.timedelta(hours=5)))
    shifted = queue.list_jobs(queue=queue.name, until=local)
    assert [j.id for j in aware] == [j.id for j in naive] == [j.id for j in shifted] == [job.id]
    queue.resume(queue.name)
