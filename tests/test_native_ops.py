"""The operations surface of the bindings (``NativeQueue.stats``, ``list_jobs``,
``retry``, ``retry_jobs``, ``cancel_jobs``, ``purge``, ``pause``, ``resume``, ``paused``,
``workers``) on every backend: the shapes the Python face builds on, and the errors
bad input raises. The face itself (``TaskQueue.stats`` …) is tested elsewhere."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from spikard_tasks import ConfigError, TaskQueue

pytestmark = pytest.mark.timeout(90)

STATES = {"pending", "scheduled", "running", "retrying", "succeeded", "failed", "cancelled"}


@pytest.fixture
def queue(backend_url: str) -> Iterator[TaskQueue]:
    """A queue of this test's own on each backend."""
    q = TaskQueue(
        backend_url,
        queue=f"q-ops-{uuid.uuid4().hex[:8]}",
        poll_interval=0.05,
        heartbeat=0.2,
        lease=5.0,
    )
    yield q
    q.close()


def only(queue: TaskQueue, **more: object) -> str:
    """The JSON filter of this test's queue (plus ``more``)."""
    return json.dumps({"queue": queue.name, **more})


def eventually(what: str, check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 30
    while not check():
        assert time.monotonic() < deadline, f"timed out: {what}"
        time.sleep(0.02)


def test_stats_list_retry_cancel_and_purge(queue: TaskQueue) -> None:
    native = queue.native

    @queue.task(max_attempts=1)
    def boom() -> None:
        raise RuntimeError("no")

    jobs = [boom.delay() for _ in range(3)]
    with queue.worker(concurrency=2):
        eventually("all failed", lambda: all(j.info().status.value == "failed" for j in jobs))

    stats = native.stats()
    assert isinstance(stats["now_ms"], int)
    (row,) = [q for q in stats["queues"] if q["queue"] == queue.name]
    assert set(row["counts"]) == STATES
    assert row["counts"]["failed"] == 3
    assert row["failed_last_minute"] == 3
    assert row["succeeded_last_minute"] == 0
    assert row["oldest_ready_ms"] is None
    assert row["paused"] is False

    first = native.list_jobs(only(queue, statuses=["failed"]), 2)
    assert len(first["jobs"]) == 2
    assert first["jobs"][0] == native.get(first["jobs"][0]["id"])
    rest = native.list_jobs(only(queue, statuses=["failed"]), 2, first["next_cursor"])
    assert len(rest["jobs"]) == 1 and rest["next_cursor"] is None
    listed = {j["id"] for j in first["jobs"] + rest["jobs"]}
    assert listed == {j.id for j in jobs}

    assert native.retry(jobs[0].id) is True
    assert native.retry(jobs[0].id) is False
    assert native.get(jobs[0].id)["status"] == "pending"  # type: ignore[index]
    assert native.retry_jobs(only(queue, statuses=["failed"])) == 2
    assert native.cancel_jobs(only(queue)) == 3
    time.sleep(0.01)
    assert native.purge(only(queue), 3600.0) == 0
    assert native.purge(only(queue, statuses=["cancelled"], task=boom.name), 0.0) == 3
    assert native.list_jobs(only(queue), 1000) == {"jobs": [], "next_cursor": None}


def test_pause_resume_and_live_workers(queue: TaskQueue) -> None:
    native = queue.native
    release = threading.Event()

    @queue.task
    def hold() -> str:
        release.wait(30)
        return "ok"

    assert native.pause(queue.name) is True
    assert native.pause(queue.name) is False
    assert queue.name in native.paused()
    job = hold.delay()
    with queue.worker(concurrency=2) as worker:
        name = worker.name

        def listed() -> list[dict[str, object]]:
            return [w for w in native.workers() if w["name"] == name]

        eventually("worker listed", lambda: len(listed()) == 1)
        (me,) = listed()
        assert me["host"] == socket.gethostname()
        assert me["queues"] == [queue.name]
        assert me["concurrency"] == 2
        assert me["jobs_held"] == 0
        assert set(me) >= {"pid", "started_at_ms", "heartbeat_at_ms", "version"}
        time.sleep(0.3)  # several poll intervals: the paused queue is not claimed
        assert job.info().status.value == "pending"
        assert native.resume(queue.name) is True
        assert native.resume(queue.name) is False
        eventually("held after resume", lambda: listed()[0]["jobs_held"] == 1)
        release.set()
        assert job.result(timeout=30) == "ok"
    assert [w for w in native.workers() if w["name"] == name] == []


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda n: n.list_jobs("{}", 0), "limit"),
        (lambda n: n.list_jobs("{}", 1001), "limit"),
        (lambda n: n.list_jobs("{}", 10, "not-a-cursor"), "malformed cursor"),
        (lambda n: n.list_jobs('{"status": ["failed"]}', 10), "invalid job filter"),
        (lambda n: n.list_jobs('{"statuses": ["dead"]}', 10), "invalid job filter"),
        (lambda n: n.list_jobs("[", 10), "invalid job filter"),
        (lambda n: n.list_jobs('{"since_ms": 5, "until_ms": 1}', 10), "since"),
        (lambda n: n.purge("{}", -1.0), "older_than"),
        (lambda n: n.purge("{}", float("nan")), "older_than"),
        (lambda n: n.retry_jobs('{"queue": ""}'), "queue name"),
        (lambda n: n.pause(""), "queue name"),
        (lambda n: n.resume("\ud800"), "queue name"),
    ],
)
def test_bad_input_is_a_config_error(
    call: Callable[[object], object], message: str, tmp_path: object
) -> None:
    q = TaskQueue(f"sqlite:///{tmp_path}/jobs.db", queue="q")
    try:
        with pytest.raises(ConfigError, match=message):
            call(q.native)
    finally:
        q.close()
