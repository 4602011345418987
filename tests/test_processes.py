"""Real worker processes: durability across processes, graceful drain, crash recovery."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from spikard_tasks import JobStatus, TaskQueue

from .procs import events, start_worker, stop, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def producer(url: str) -> TaskQueue:
    """A producer that does not import the handlers (strict=False enqueues)."""
    return TaskQueue(url)


def test_job_survives_until_a_worker_starts_later(sqlite_url: str, tmp_path: Path) -> None:
    q = producer(sqlite_url)
    job = q.enqueue("add", args=[20, 22], strict=False)
    time.sleep(0.2)
    assert job.status() is JobStatus.PENDING
    del q  # the producer is gone; only the SQLite file remains

    worker = start_worker(sqlite_url, tmp_path / "log")
    try:
        again = TaskQueue(sqlite_url)
        found = again.get_job(job.id)
        assert found is not None
        assert found.result(timeout=30) == 42
    finally:
        output = stop(worker)
    assert worker.returncode == 0, output
    assert '"worker": "stopped"' in output


def test_sigterm_drains_in_flight_and_loses_nothing(sqlite_url: str, tmp_path: Path) -> None:
    log = tmp_path / "log"
    q = producer(sqlite_url)
    jobs = [q.enqueue("slow", args=[i, 0.8], strict=False) for i in range(6)]
    worker = start_worker(sqlite_url, log, "--concurrency", "2")
    wait_for(lambda: sum(events(log, "start").values()) >= 2, what="two jobs to start")
    output = stop(worker, signal.SIGTERM)
    assert worker.returncode == 0, output
    started, finished = events(log, "start"), events(log, "finish")
    assert started == finished, "every job that started finished during the drain"
    assert 2 <= sum(started.values()) < 6
    statuses = [j.status() for j in jobs]
    assert statuses.count(JobStatus.SUCCEEDED) == sum(finished.values())
    assert all(s in (JobStatus.SUCCEEDED, JobStatus.PENDING) for s in statuses), statuses

    second = start_worker(sqlite_url, log, "--concurrency", "4")
    try:
        assert [j.result(timeout=30) for j in jobs] == list(range(6))
    finally:
        stop(second)
    assert set(events(log, "start").values()) == {1}, "each job ran exactly once"


def test_drain_timeout_releases_unfinished_jobs(sqlite_url: str, tmp_path: Path) -> None:
    log = tmp_path / "log"
    q = producer(sqlite_url)
    job = q.enqueue("aslow", args=[1, 3.0], strict=False)
    worker = start_worker(sqlite_url, log, "--drain-timeout", "0.3")
    wait_for(lambda: events(log, "start")["1"] == 1, what="the job to start")
    t0 = time.monotonic()
    output = stop(worker, signal.SIGTERM)
    assert worker.returncode == 0, output
    assert time.monotonic() - t0 < 2.5, "stopped at the drain timeout, not at the job's end"
    info = job.info()
    assert info.status is JobStatus.PENDING
    assert info.attempts == 0, "a released attempt is not counted"

    second = start_worker(sqlite_url, log)
    try:
        assert job.result(timeout=30) == 1
    finally:
        stop(second)


def test_killed_worker_job_is_rerun_after_its_lease(sqlite_url: str, tmp_path: Path) -> None:
    log = tmp_path / "log"
    fast_lease = {"SPIKARD_TASKS_LEASE": "1.5", "SPIKARD_TASKS_HEARTBEAT": "0.3"}
    q = producer(sqlite_url)
    job = q.enqueue("slow", args=[7, 2.0], strict=False)
    victim = start_worker(sqlite_url, log, env=fast_lease)
    wait_for(lambda: events(log, "start")["7"] == 1, what="the job to start")
    # Killed after its start is on record (within 20 ms): the lost attempt counts.
    wait_for(lambda: job.info().started_at is not None, what="the start to be recorded")
    stop(victim, signal.SIGKILL)
    assert job.status() is JobStatus.RUNNING

    rescuer = start_worker(sqlite_url, log, env=fast_lease)
    try:
        assert job.result(timeout=30) == 7
    finally:
        stop(rescuer)
    info = job.info()
    assert info.attempts == 2
    assert info.errors[0].error.startswith("WorkerLost")
    assert events(log, "start")["7"] == 2, "run again once: at-least-once"
