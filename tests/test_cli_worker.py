"""``spikard-tasks worker`` as a real process: which queues it consumes, ``--url``, the
database it logs, and what a first and a second Ctrl-C do."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from spikard_tasks import JobStatus, TaskQueue

from .cli_procs import cli, cli_env, cli_process, read_until

pytestmark = pytest.mark.timeout(120)

APP = "tests.apps.cli_app:queue"


def test_worker_with_url_and_queues_consumes_exactly_those(tmp_path: Path) -> None:
    """The app names database A; ``--url`` points the worker at B (A is never created),
    ``--queues b`` consumes queue b only, and the log names B's absolute path."""
    app_db, db = tmp_path / "a.db", tmp_path / "b.db"
    env = cli_env(SPIKARD_TASKS_URL=f"sqlite:///{app_db}")
    url = "sqlite:///b.db"  # relative: the log shows where it is
    default_job = cli("enqueue", "--url", url, "report", "--args", "[1, 1]", cwd=tmp_path)
    b_job = cli("enqueue", "--url", url, "--queue", "b", "report", "--args", "[2, 2]", cwd=tmp_path)
    assert default_job.returncode == 0 and b_job.returncode == 0, b_job.stderr
    proc = cli_process(
        "worker", APP, "--url", url, "--queues", "b", "-c", "1", cwd=tmp_path, env=env
    )
    try:
        seen = read_until(proc, " started: ")
        assert f"database: SQLite file {db}" in seen, seen
        assert "queues=['b']" in seen, seen
        with TaskQueue(f"sqlite:///{db}", queue="b") as queue:
            job = queue.get_job(b_job.stdout.strip())
            assert job is not None and job.result(timeout=60) == 4
            other = queue.get_job(default_job.stdout.strip())
            assert other is not None and other.status() is JobStatus.PENDING
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1])["succeeded"] == 1
    assert not app_db.exists(), "the app's own URL was not opened"


def test_python_api_queues_means_exactly_those(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    with TaskQueue(url, poll_interval=0.01) as queue:
        queue.task(name="echo")(lambda x: x)
        # Enqueued first and run first by a worker that consumes its queue.
        default_first = queue.enqueue("echo", ["default"])
        other = queue.enqueue("echo", ["other"], queue="other")
        with queue.worker(concurrency=1, queues=["other"], scheduler=False) as worker:
            assert worker.queues == ["other"]
            assert other.result(timeout=60) == "other"
            assert default_first.status() is JobStatus.PENDING
        other_first = queue.enqueue("echo", ["other 2"], queue="other")
        mine = queue.enqueue("echo", ["default 2"])
        with queue.worker(concurrency=1, scheduler=False) as worker:
            assert worker.queues == [queue.config.queue]
            assert mine.result(timeout=60) == "default 2"
            assert other_first.status() is JobStatus.PENDING


def test_second_ctrl_c_stops_at_once_and_the_job_runs_again(tmp_path: Path) -> None:
    """First SIGINT: drain, saying how many jobs are in flight. Second SIGINT: exit 130
    at once, saying what is abandoned. The job stays running under the dead worker's
    lease; a later worker rescues it after the (short) lease and runs it again."""
    db = tmp_path / "jobs.db"
    marker = tmp_path / "marker"
    env = cli_env(
        SPIKARD_TASKS_URL=f"sqlite:///{db}",
        SPIKARD_TASKS_LEASE="1",
        SPIKARD_TASKS_HEARTBEAT="0.2",
    )
    enq = cli("enqueue", "--app", APP, "nap", "--args", json.dumps([str(marker), 300]), env=env)
    assert enq.returncode == 0, enq.stderr
    job_id = enq.stdout.strip()
    first = cli_process("worker", APP, "-c", "2", env=env)
    try:
        read_until(first, " started: ")
        with TaskQueue(f"sqlite:///{db}") as queue:
            job = queue.get_job(job_id)
            assert job is not None
            while not marker.exists() and first.poll() is None:
                queue.native.wait(job_id, 0.05)
        first.send_signal(signal.SIGINT)
        said = read_until(first, "press Ctrl-C again")
        assert "stopping: 1 job in flight, waiting up to 30 s" in said, said
        first.send_signal(signal.SIGINT)
        out, err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    assert first.returncode == 130, err
    assert "abandoning 1 job; they return to the queue when their lease expires" in err
    assert json.loads(out.strip().splitlines()[-1]) == {"worker": "abandoned", "in_flight": 1}
    with TaskQueue(f"sqlite:///{db}") as queue:
        job = queue.get_job(job_id)
        assert job is not None and job.status() is JobStatus.RUNNING, "not lost, not done"
        second = cli_process("worker", APP, env=env)
        try:
            assert job.result(timeout=90) == "rested"
            info = job.info()
            assert info.attempts == 2
            assert "WorkerLost" in info.errors[0].error
        finally:
            second.send_signal(signal.SIGTERM)
            second.communicate(timeout=60)
    assert second.returncode == 0
