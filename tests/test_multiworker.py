"""Several worker processes share one backend: every job runs exactly once, spread out."""

from __future__ import annotations

import os
import uuid
from collections import Counter
from pathlib import Path

import pytest

from spikard_tasks import JobStatus, TaskQueue

from .procs import start_worker, stop, wait_for, wait_started

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

JOBS = 2000
WORKERS = 3


def test_three_workers_run_each_job_exactly_once(shared_url: str, tmp_path: Path) -> None:
    log = tmp_path / "log"
    queue_name = f"multi-{uuid.uuid4().hex[:8]}"
    env = {"SPIKARD_TASKS_QUEUE": queue_name}
    producer = TaskQueue(shared_url, queue=queue_name)
    workers = [start_worker(shared_url, log, "--concurrency", "8", env=env) for _ in range(WORKERS)]
    try:
        # Every worker polls before the jobs arrive, or a fast backend can finish all
        # of them before the last worker has started.
        for w in workers:
            wait_started(w)
        jobs = producer.enqueue_many([("add", [i, 0], {}) for i in range(JOBS)], strict=False)

        def all_done() -> bool:
            return producer.counts().get("succeeded", 0) >= JOBS

        wait_for(all_done, timeout=240, what=f"{JOBS} jobs to finish")
    finally:
        outputs = [stop(w) for w in workers]
    assert all(w.returncode == 0 for w in workers), outputs

    runs: Counter[str] = Counter()
    pids: Counter[str] = Counter()
    for line in log.read_text().splitlines():
        kind, detail, pid, _ts = line.split()
        if kind == "add":
            runs[detail] += 1
            pids[pid] += 1
    assert len(runs) == JOBS, "none lost"
    assert max(runs.values()) == 1, "no duplicates in normal operation"
    assert len(pids) == WORKERS, f"work spread over every process: {dict(pids)}"
    assert min(pids.values()) >= JOBS // (WORKERS * 10), f"reasonably spread: {dict(pids)}"
    sample = jobs[:: JOBS // 20]
    assert all(j.status() is JobStatus.SUCCEEDED for j in sample)
    assert [j.result(timeout=5) for j in sample] == [int(j.info().args[0]) for j in sample]
    assert os.path.exists(log)
