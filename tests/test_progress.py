"""Job progress through the native queue: a running job's handler reports it with
``NativeQueue.set_progress``, and ``job.info().progress`` reads it back (while the job
runs and after it finished), on every backend several processes can share."""

from __future__ import annotations

import math
import threading
import uuid
from collections.abc import Iterator

import pytest

from spikard_tasks import ConfigError, JobStatus, TaskQueue
from spikard_tasks.job import Progress

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def queue(shared_url: str) -> Iterator[TaskQueue]:
    """A queue of this test's own on a SQLite file or a shared server."""
    q = TaskQueue(shared_url, queue=f"q-progress-{uuid.uuid4().hex[:8]}", poll_interval=0.01)
    yield q
    q.close()


def test_a_handler_reports_progress_seen_while_running_and_kept_after(queue: TaskQueue) -> None:
    job_id: list[str] = []
    reported = threading.Event()
    release = threading.Event()
    answers: list[bool] = []

    @queue.task
    def crunch() -> str:
        native = queue.native
        answers.append(native.set_progress(job_id[0], 0.1))
        answers.append(native.set_progress(job_id[0], 0.4, "step 2 of 5"))
        reported.set()
        release.wait(30)
        return "done"

    job = crunch.delay()
    job_id.append(job.id)
    assert job.info().progress is None
    assert queue.native.set_progress(job.id, 0.3, "not running yet") is False
    assert job.info().progress is None

    with queue.worker(concurrency=1):
        assert reported.wait(30)
        running = job.info()
        assert running.status is JobStatus.RUNNING
        assert running.progress is not None
        assert (running.progress.fraction, running.progress.message) == (0.4, "step 2 of 5")
        at = running.progress.at
        assert at is not None and at.tzinfo is not None
        assert running.enqueued_at is not None and running.enqueued_at <= at
        release.set()
        assert job.result(timeout=30) == "done"

    assert answers == [True, True]
    info = job.info()
    assert info.status is JobStatus.SUCCEEDED
    assert info.progress == Progress(0.4, "step 2 of 5", at)
    assert info.finished_at is not None and at <= info.finished_at
    # The record dict of the bindings carries it as the engine stores it.
    record = queue.native.get(job.id)
    assert record is not None
    assert record["progress"] == {
        "fraction": 0.4,
        "message": "step 2 of 5",
        "at_ms": record["progress"]["at_ms"],
    }
    # A finished or unknown job takes no report.
    assert queue.native.set_progress(job.id, 1.0, "too late") is False
    assert job.info().progress == info.progress
    assert queue.native.set_progress(str(uuid.uuid4()), 0.5) is False


@pytest.mark.parametrize(
    ("fraction", "message"),
    [
        (math.nan, None),
        (math.inf, None),
        (-0.01, None),
        (1.01, None),
        (0.5, "x" * 1001),
        (0.5, "a\0b"),
        (0.5, "lone \ud800 surrogate"),
    ],
)
def test_bad_progress_is_refused_with_config_error(
    queue: TaskQueue, fraction: float, message: str | None
) -> None:
    with pytest.raises(ConfigError):
        queue.native.set_progress(str(uuid.uuid4()), fraction, message)


def test_progress_from_record() -> None:
    assert Progress.from_record(None) is None
    got = Progress.from_record({"fraction": 1, "message": None, "at_ms": 0})
    assert got is not None
    assert isinstance(got.fraction, float) and got.fraction == 1.0
    assert got.message is None
    assert got.at is not None and got.at.timestamp() == 0
