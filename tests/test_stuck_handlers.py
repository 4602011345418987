"""Sync handlers that hang past their timeout: their threads cannot be interrupted, so
the worker bounds how many it leaves running and stops claiming until one returns."""

from __future__ import annotations

import logging
import threading
import time
import uuid

import pytest

from spikard_tasks import JobStatus, TaskQueue
from spikard_tasks.exceptions import JobFailed

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

#: Abandoned threads a worker of concurrency 2 leaves running before it stops claiming.
STUCK_CAP = 16


def test_stuck_sync_handlers_are_bounded_and_the_worker_waits_for_them(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="spikard_tasks.engine")
    queue = TaskQueue(sqlite_url, queue=f"stuck-{uuid.uuid4().hex[:8]}", poll_interval=0.01)
    lock = threading.Lock()
    running = 0
    peak = 0
    release = threading.Event()

    @queue.task(name="hang", timeout=0.2, max_attempts=1)
    def hang(n: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        try:
            release.wait(10)  # ignores its timeout, as blocking calls do
            return n
        finally:
            with lock:
                running -= 1

    # At least 16 abandoned threads are allowed (more with a larger concurrency); two
    # slots that time out every 0.2 s reach that in under 2 s, then no new job starts
    # while they hang, however long.
    jobs = [hang.delay(i) for i in range(30)]
    with queue.worker(concurrency=2):
        time.sleep(4.0)
        started = [j for j in jobs if j.status() is not JobStatus.PENDING]
        # Jobs already held when the cap is reached (up to twice the concurrency: running
        # and claimed ahead) still start.
        assert peak <= STUCK_CAP + 4, f"{peak} handlers ran at once"
        assert STUCK_CAP <= len(started) <= STUCK_CAP + 4, len(started)
        release.set()
        outcomes: list[object] = []
        for job in jobs:
            try:
                outcomes.append(job.result(timeout=30))
            except JobFailed as failed:
                assert "TimeoutError" in failed.error
                outcomes.append("timeout")
    # Every job ran to an outcome once the stuck handlers returned.
    assert outcomes.count("timeout") >= STUCK_CAP, outcomes
    # The engine says why it stopped claiming, and when it claims again (through logging).
    deadline = time.monotonic() + 5
    while "claiming new jobs again" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.05)
    err = caplog.text
    assert "not claiming new jobs" in err and "past their timeouts" in err, err
    assert "claiming new jobs again" in err, err
