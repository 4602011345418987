"""Leases across real worker processes: a live worker keeps its job however long it
runs, and a worker that lost its lease cannot overwrite the newer attempt."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from spikard_tasks import JobStatus

from .fault_procs import Workers, read_log, running_workers, unique_queue
from .procs import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

#: One-second leases, renewed every 0.3 s.
SHORT_LEASE = {"SPIKARD_TASKS_LEASE": "1", "SPIKARD_TASKS_HEARTBEAT": "0.3"}


@pytest.fixture
def workers(shared_url: str, tmp_path: Path) -> Iterator[Workers]:
    """Worker processes on ``shared_url`` (a fresh queue), killed at the end if needed."""
    env = {**SHORT_LEASE, "SPIKARD_TASKS_QUEUE": unique_queue("leases")}
    with running_workers(shared_url, tmp_path, env) as made:
        yield made


def test_job_longer_than_its_lease_is_never_stolen(workers: Workers) -> None:
    producer = workers.producer()
    procs = [workers.start("--concurrency", "4") for _ in range(2)]
    # Sleeping sync, busy sync (holding the interpreter) and async handlers, each 4x
    # the lease, while a second worker looks for expired leases every 0.3 s.
    jobs = {
        n: producer.enqueue(task, args=[n, 4.0], strict=False)
        for n, task in enumerate(["hold", "spin", "ahold"])
    }
    results = {n: job.result(timeout=60) for n, job in jobs.items()}
    for p in procs:
        assert p.stop() == 0, p.text()

    starts = read_log(workers.log, "start")
    for n, job in jobs.items():
        info = job.info()
        assert info.status is JobStatus.SUCCEEDED
        assert info.attempts == 1, f"job {n} was claimed again: {info}"
        assert info.errors == []
        assert [r.pid for r in starts[str(n)]] == [results[n]], "ran once, where it started"
        assert info.finished_at is not None and info.started_at is not None
        assert (info.finished_at - info.started_at).total_seconds() >= 4.0
    # (Rescue is global: a worker may re-queue other tests' orphans; these jobs' own
    # records above show none of them was taken over.)
    assert not any("outcomes not written" in p.text() for p in procs), "no outcome was lost"


def test_late_ack_of_a_worker_that_lost_its_lease_is_ignored(workers: Workers) -> None:
    producer = workers.producer()
    procs = {p.pid: p for p in (workers.start(), workers.start())}
    # The handler sleeps longer than the freezes below may take, so the frozen attempt
    # can only finish after the takeover.
    job = producer.enqueue("hold", args=[7, 8.0], strict=False)
    wait_for(lambda: len(read_log(workers.log, "start")["7"]) == 1, what="the job to start")
    # Its start is on record (within 20 ms), so the takeover counts the frozen attempt.
    wait_for(lambda: job.info().started_at is not None, what="the start to be recorded")
    stale = procs[read_log(workers.log, "start")["7"][0].pid]

    def taken_over() -> bool:
        return len(read_log(workers.log, "start")["7"]) == 2

    # Freeze the worker running the job: it stops heartbeating but stays alive. A SQLite
    # process frozen inside a write (a heartbeat) keeps the file's write lock and blocks
    # every other writer, as any lock holder would; then thaw it briefly and freeze again.
    try:
        for _ in range(3):
            os.kill(stale.pid, signal.SIGSTOP)
            deadline = time.monotonic() + 2.5
            while not taken_over() and time.monotonic() < deadline:
                time.sleep(0.05)
            if taken_over():
                break
            os.kill(stale.pid, signal.SIGCONT)
            time.sleep(0.02)
        wait_for(taken_over, timeout=5, what="the other worker to take the job over")
        time.sleep(0.3)
    finally:
        os.kill(stale.pid, signal.SIGCONT)
    # The frozen handler's sleep is over: it finishes at once and reports attempt 1
    # while the other worker still runs attempt 2.
    result = job.result(timeout=30)
    for p in procs.values():
        assert p.stop() == 0, p.text()

    starts = read_log(workers.log, "start")["7"]
    finishes = read_log(workers.log, "finish")["7"]
    fresh_pid = starts[1].pid
    assert fresh_pid != stale.pid
    assert [r.pid for r in finishes] == [stale.pid, fresh_pid], (
        "the stale attempt finished first, while the new one was still running"
    )
    info = job.info()
    assert result == fresh_pid, "the outcome is the new attempt's, not the late one's"
    assert info.status is JobStatus.SUCCEEDED
    assert info.attempts == 2
    assert len(info.errors) == 1 and info.errors[0].error.startswith("WorkerLost")
    assert info.errors[0].attempt == 1
    assert "no longer held those jobs' leases" in stale.text(), stale.text()
