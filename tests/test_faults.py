"""Reliability under faults (issue #7): workers killed with SIGKILL over and over, and
database servers restarted while a worker drains the queue.

Real worker processes (``tests/apps/faulty.py``) and real servers; nothing is mocked.
The restarted servers are disposable ones of the test's own, never the shared ones.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from spikard_tasks import BackendError, JobStatus

from . import services
from .fault_procs import Workers, backend_of, count_events, read_log, running_workers, unique_queue
from .procs import wait_for

pytestmark = pytest.mark.slow  # outages and process kills: run with --run-slow

#: A lease short enough that killed workers' jobs come back within seconds.
SHORT_LEASE = {"SPIKARD_TASKS_LEASE": "2", "SPIKARD_TASKS_HEARTBEAT": "0.4"}


@pytest.fixture
def workers(shared_url: str, tmp_path: Path) -> Iterator[Workers]:
    """Worker processes on ``shared_url`` (a fresh queue), killed at the end if needed."""
    env = {**SHORT_LEASE, "SPIKARD_TASKS_QUEUE": unique_queue("faults")}
    with running_workers(shared_url, tmp_path, env) as made:
        yield made


# -- SIGKILL ---------------------------------------------------------------------------

JOBS = 5000
WORKERS = 3
CONCURRENCY = 2
#: Per-job sleep: three workers of two slots run ~200 jobs/s, so the 5,000 jobs take
#: ~25 s and every kill lands while jobs are running.
JOB_SECONDS = 0.03
KILLS = 10
KILL_EVERY = 2.0


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sigkilled_workers_lose_no_job(workers: Workers) -> None:
    producer = workers.producer()
    procs = [workers.start("--concurrency", str(CONCURRENCY)) for _ in range(WORKERS)]
    killed: set[int] = set()
    jobs = producer.enqueue_many(
        [("work", [i, JOB_SECONDS], {}) for i in range(JOBS)], strict=False
    )
    started = time.monotonic()
    for k in range(KILLS):
        time.sleep(max(0.0, started + KILL_EVERY * (k + 1) - time.monotonic()))
        if k == KILLS - 1:
            left = JOBS - producer.counts().get("succeeded", 0)
            assert left > 0, "the last kill must land while jobs are still running"
        slot = k % WORKERS
        victim = procs[slot]
        victim.kill()
        killed.add(victim.pid)
        procs[slot] = workers.start("--concurrency", str(CONCURRENCY))

    def all_succeeded() -> bool:
        return producer.counts().get("succeeded", 0) >= JOBS

    wait_for(all_succeeded, timeout=120, what=f"{JOBS} jobs to succeed")
    elapsed = time.monotonic() - started
    for p in procs:
        assert p.stop() == 0, p.text()

    runs = read_log(workers.log, "run")
    assert set(runs) == {str(i) for i in range(JOBS)}, "every job ran"
    infos = {str(i): job.info() for i, job in enumerate(jobs)}
    duplicates = 0
    extra_runs = 0
    lost_attempts = 0
    given_back = 0
    for n, info in infos.items():
        assert info.status is JobStatus.SUCCEEDED, (n, info)
        assert info.result == int(n)
        lost = [e for e in info.errors if e.error.startswith("WorkerLost")]
        assert len(lost) == len(info.errors), f"job {n}: only lost workers failed it: {info}"
        # A kill counts the attempt only if the job's start was recorded; jobs the killed
        # worker held but had not started (or started in its last 20 ms) keep theirs.
        counted = [e for e in lost if "not counted" not in e.error]
        assert info.attempts == len(counted) + 1, f"job {n}: one attempt per start: {info}"
        lost_attempts += len(counted)
        given_back += len(lost) - len(counted)
        job_runs = runs[n]
        if len(job_runs) > 1:
            duplicates += 1
            extra_runs += len(job_runs) - 1
            # Every run but the last was cut short by a kill, and the lease expiry that
            # followed is on record.
            earlier = job_runs[:-1]
            assert all(r.pid in killed for r in earlier), (
                f"job {n} ran again although its earlier run's process was not killed: "
                f"{job_runs}, killed={sorted(killed)}"
            )
            assert len(lost) >= len(earlier), f"job {n}: {job_runs} but errors {info.errors}"
    # The kills orphaned jobs. Whether any of them had its start on record when its worker
    # died depends on the moment of each kill (starts are written in batches every few ms,
    # and a job runs 30 ms); a counted lost attempt is checked on its own, deterministically,
    # in test_processes.test_killed_worker_job_is_rerun_after_its_lease.
    assert lost_attempts + given_back > 0, "the kills orphaned some jobs"
    print(
        f"\n[{backend_of(workers.url)}] {JOBS} jobs, {KILLS} kills in {elapsed:.1f}s: "
        f"{duplicates} jobs ran twice or more ({extra_runs} extra runs), "
        f"{lost_attempts} attempts lost to kills, {given_back} held jobs given back unstarted"
    )


# -- server restarts -------------------------------------------------------------------

RESTART_JOBS = 2000
#: How long an enqueue may take to fail while the server is down.
FAIL_FAST = 10.0


@pytest.fixture
def server_workers(disposable_server: services.Server, tmp_path: Path) -> Iterator[Workers]:
    """Worker processes on the test's disposable server (which it restarts)."""
    made = Workers(
        url=disposable_server.url,
        log=tmp_path / "runs.log",
        directory=tmp_path,
        env={
            "SPIKARD_TASKS_LEASE": "5",
            "SPIKARD_TASKS_HEARTBEAT": "0.5",
            "SPIKARD_TASKS_QUEUE": unique_queue("restart"),
        },
    )
    try:
        yield made
    finally:
        made.cleanup()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_server_restart_mid_drain_loses_nothing(
    server_workers: Workers, disposable_server: services.Server
) -> None:
    backend = backend_of(server_workers.url)
    producer = server_workers.producer()
    worker = server_workers.start("--concurrency", "4")
    jobs = producer.enqueue_many(
        [("work", [i, 0.01], {}) for i in range(RESTART_JOBS)], strict=False
    )
    wait_for(
        lambda: count_events(server_workers.log, "run") >= 200,
        timeout=60,
        what="the worker to get going",
    )
    with services.outage(disposable_server):
        down_at = time.time()
        # The first call may meet a dead pooled connection, the second a reconnect
        # attempt: both must fail soon, with the typed error.
        refusals: list[tuple[float, BaseException]] = []
        for attempt in range(2):
            t0 = time.monotonic()
            with pytest.raises(BackendError) as caught:
                producer.enqueue("work", args=[-1 - attempt, 0.0], strict=False)
            refusals.append((time.monotonic() - t0, caught.value))
        assert worker.proc.poll() is None, "the worker survives the outage"
        time.sleep(max(0.0, 2.0 - sum(t for t, _ in refusals)))
    up_at = time.time()
    for took, error in refusals:
        print(f"\n[{backend}] enqueue during the outage: {took:.2f}s to {error!r}", end="")
        assert took < FAIL_FAST, f"enqueue took {took:.1f}s to fail: {error}"

    def all_succeeded() -> bool:
        return producer.counts().get("succeeded", 0) >= RESTART_JOBS

    wait_for(all_succeeded, timeout=120, what="every job to succeed after the restart")
    assert worker.proc.poll() is None, "the worker kept running"
    counts = producer.counts()
    assert sum(counts.values()) == RESTART_JOBS, f"the refused enqueue wrote nothing: {counts}"
    assert worker.stop() == 0, worker.text()

    runs = read_log(server_workers.log, "run")
    assert set(runs) == {str(i) for i in range(RESTART_JOBS)}, "every job ran"
    assert "-1" not in runs and "-2" not in runs
    assert all(j.status() is JobStatus.SUCCEEDED for j in jobs)
    all_runs = [r for rs in runs.values() for r in rs]
    assert any(r.at < down_at for r in all_runs) and any(r.at > up_at for r in all_runs), (
        "the restart happened mid-drain"
    )
    duplicates = sum(1 for rs in runs.values() if len(rs) > 1)
    print(f"\n[{backend}] {RESTART_JOBS} jobs, restart mid-drain: {duplicates} ran more than once")
