"""``spikard-tasks worker --processes N`` and ``run_worker(processes=N)``: a supervisor of
real worker processes on a SQLite file (and on Redis once): the children register as
workers, a killed child is restarted and its jobs recovered by the lease, SIGTERM drains
them all, recycling replaces children, and bad values are refused."""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from spikard_tasks import ConfigError, JobStatus, TaskQueue
from spikard_tasks.pool.launch import find_target
from spikard_tasks.pool.supervisor import BACKOFF_FIRST, BACKOFF_MAX, next_delay

from .cli_procs import cli
from .conftest import server_url
from .pool_procs import Running, handler_lines, pool, pool_env, wait_until

pytestmark = pytest.mark.timeout(240)

STARTED = r"worker \S+ started: "


def _statuses(queue: TaskQueue, ids: list[str]) -> list[JobStatus]:
    jobs = [queue.get_job(i) for i in ids]
    return [j.status() if j is not None else JobStatus.PENDING for j in jobs]


def _all_succeeded(queue: TaskQueue, ids: list[str]) -> bool:
    return all(s is JobStatus.SUCCEEDED for s in _statuses(queue, ids))


def _listed(url: str, queue_name: str) -> list[dict[str, object]]:
    listed = cli("workers", "--url", url, "--json")
    assert listed.returncode == 0, listed.stderr
    workers: list[dict[str, object]] = json.loads(listed.stdout)
    return [w for w in workers if queue_name in w["queues"]]  # type: ignore[operator]


def _stop(running: Running, signum: int = signal.SIGTERM) -> tuple[int, dict[str, int], str]:
    running.proc.send_signal(signum)
    code, out, err = running.finish()
    lines = out.strip().splitlines()
    return code, (json.loads(lines[-1]) if lines else {}), err


def test_workers_lists_every_child_and_sigterm_drains_them_all(tmp_path: Path) -> None:
    url, log, name = f"sqlite:///{tmp_path / 'jobs.db'}", tmp_path / "handlers.log", "drain"
    running = pool("--processes", "2", "-c", "2", env=pool_env(url, log, name))
    try:
        running.wait_for(STARTED, 2)
        children = {
            int(m[1]) for m in running.wait_for(r"worker child \d started \(pid (\d+)\)", 2)
        }
        listed = _listed(url, name)
        assert len(listed) == 2, listed
        pids = {w["pid"] for w in listed}
        assert len(pids) == 2 and running.proc.pid not in pids
        with TaskQueue(url, queue=name) as queue:
            ids = [queue.enqueue("record", [n, 1.0], strict=False).id for n in range(4)]
            wait_until(lambda: len(handler_lines(log)["start"]) == 4, what="4 jobs started")
            code, report, err = _stop(running)
            assert code == 0, err
            assert _all_succeeded(queue, ids), _statuses(queue, ids)
    finally:
        running.kill()
    assert "draining" in err
    assert report["succeeded"] == 4 and report["processes"] == 2, report
    seen = handler_lines(log)
    assert sorted(n for n, _ in seen["done"]) == [0, 1, 2, 3]
    assert {pid for _, pid in seen["start"]} <= pids
    assert children == pids


def test_a_killed_child_is_restarted_and_its_jobs_run_again(tmp_path: Path) -> None:
    """SIGKILL of one child mid-run: the supervisor says it restarts it; every job
    succeeds: exactly once, or (its attempt lost with the child) once more elsewhere."""
    url, log, name = f"sqlite:///{tmp_path / 'jobs.db'}", tmp_path / "handlers.log", "kill"
    env = pool_env(url, log, name, SPIKARD_TASKS_LEASE="1", SPIKARD_TASKS_HEARTBEAT="0.2")
    running = pool("--processes", "2", "-c", "2", env=env)
    try:
        running.wait_for(STARTED, 2)
        with TaskQueue(url, queue=name) as queue:
            ids = [queue.enqueue("record", [n, 0.3], strict=False).id for n in range(20)]
            wait_until(lambda: len(handler_lines(log)["start"]) >= 4, what="4 jobs started")
            seen = handler_lines(log)
            busy = [key[1] for key in seen["start"] if key not in seen["done"]]
            victim = (busy or [pid for _, pid in seen["start"]])[0]
            os.kill(victim, signal.SIGKILL)
            running.wait_for(
                rf"worker child \d \(pid {victim}\) exited with signal SIGKILL; "
                rf"restarting in {BACKOFF_FIRST:g}s"
            )
            running.wait_for(STARTED, 3)  # the replacement
            wait_until(lambda: _all_succeeded(queue, ids), what="every job succeeded")
            code, report, err = _stop(running)
    finally:
        running.kill()
    assert code == 0, err
    assert report["restarts"] == 1, report
    seen = handler_lines(log)
    for n in range(20):
        starts = {pid: c for (m, pid), c in seen["start"].items() if m == n}
        others = sum(c for pid, c in starts.items() if pid != victim)
        assert others <= 1, (n, starts)
        assert sum(c for (m, _), c in seen["done"].items() if m == n) >= 1, n
        if victim not in starts:
            assert others == 1 and seen["done"][(n, next(iter(starts)))] == 1, (n, starts)


def test_max_jobs_per_child_recycles_children(tmp_path: Path) -> None:
    url, log, name = f"sqlite:///{tmp_path / 'jobs.db'}", tmp_path / "handlers.log", "recycle"
    running = pool(
        "--processes", "2", "-c", "1", "--max-jobs-per-child", "5", env=pool_env(url, log, name)
    )
    try:
        running.wait_for(STARTED, 2)
        with TaskQueue(url, queue=name) as queue:
            ids = [queue.enqueue("record", [n, 0.05], strict=False).id for n in range(30)]
            wait_until(lambda: _all_succeeded(queue, ids), what="every job succeeded")
            code, report, err = _stop(running)
    finally:
        running.kill()
    assert code == 0, err
    seen = handler_lines(log)
    per_pid: dict[int, int] = {}
    for (_, pid), count in seen["start"].items():
        per_pid[pid] = per_pid.get(pid, 0) + count
    assert len(per_pid) >= 6, per_pid
    assert max(per_pid.values()) <= 5, per_pid
    assert sorted(n for n, _ in seen["done"]) == list(range(30))
    assert report["recycled"] >= 4 and report["restarts"] == 0, report
    assert len(running.matches(r"recycled \(5 jobs started\); replacing it")) >= 4, err


def test_processes_auto_starts_one_child_per_cpu(tmp_path: Path) -> None:
    url, log, name = f"sqlite:///{tmp_path / 'jobs.db'}", tmp_path / "handlers.log", "auto"
    cpus = os.cpu_count() or 1
    running = pool("--processes", "auto", "-c", "1", env=pool_env(url, log, name))
    try:
        running.wait_for(STARTED, cpus)
        assert running.matches(rf"starting {cpus} worker children")
        assert len(_listed(url, name)) == cpus
        code, report, err = _stop(running, signal.SIGINT)
    finally:
        running.kill()
    assert code == 0, err
    assert report["processes"] == cpus


@pytest.mark.parametrize(
    "option,value",
    [
        ("--processes", "0"),
        ("--processes", "-1"),
        ("--processes", "x"),
        ("--max-jobs-per-child", "0"),
        ("--max-memory-per-child", "-1"),
    ],
)
def test_bad_values_exit_2_naming_the_option(tmp_path: Path, option: str, value: str) -> None:
    result = cli("worker", "tests.apps.pool_app:queue", option, value, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert f"argument {option}: " in result.stderr, result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_wrong_app_stops_before_any_child(tmp_path: Path) -> None:
    result = cli("worker", "tests.apps.no_such_app:queue", "--processes", "2", cwd=tmp_path)
    assert result.returncode == 2 and "no_such_app" in result.stderr, result.stderr
    assert "worker child" not in result.stderr


def test_pool_on_redis(tmp_path: Path) -> None:
    url = server_url("redis")
    log, name = tmp_path / "handlers.log", f"pool-{uuid.uuid4().hex[:12]}"
    running = pool("--processes", "2", "-c", "2", env=pool_env(url, log, name))
    try:
        running.wait_for(STARTED, 2)
        assert len(_listed(url, name)) == 2
        with TaskQueue(url, queue=name) as queue:
            ids = [queue.enqueue("record", [n, 0.1], strict=False).id for n in range(10)]
            wait_until(lambda: _all_succeeded(queue, ids), what="every job succeeded")
            code, report, err = _stop(running)
            queue.purge(queue=name)
    finally:
        running.kill()
    assert code == 0, err
    assert report["succeeded"] == 10
    assert sorted(n for n, _ in handler_lines(log)["done"]) == list(range(10))


SCRIPT = """
    import json, logging, os
    from spikard_tasks import TaskQueue

    logging.basicConfig(level=logging.INFO)
    queue = TaskQueue(os.environ["SPIKARD_TASKS_URL"], queue="script", poll_interval=0.01)

    @queue.task(name="where")
    def where(n):
        import time
        time.sleep(0.3)
        return os.getpid()

    if __name__ == "__main__":
        print(json.dumps(queue.run_worker(1, processes=2)), flush=True)
"""


def test_run_worker_processes_from_a_script(tmp_path: Path) -> None:
    """``python script.py`` whose queue is a global of ``__main__``: each child imports
    the script as the module ``poolscript`` (its ``__main__`` block does not run)."""
    script = tmp_path / "poolscript.py"
    script.write_text(textwrap.dedent(SCRIPT))
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    env = pool_env(url, tmp_path / "unused.log", "script")
    running = Running([sys.executable, str(script)], env, cwd=tmp_path)
    try:
        running.wait_for(STARTED, 2)
        with TaskQueue(url, queue="script") as queue:
            jobs = [queue.enqueue("where", [n], strict=False) for n in range(6)]
            pids = {job.result(timeout=60) for job in jobs}
        code, report, err = _stop(running)
    finally:
        running.kill()
    assert code == 0, err
    assert report["succeeded"] == 6 and report["processes"] == 2, report
    assert len(pids) == 2 and running.proc.pid not in pids


def test_run_worker_processes_needs_an_importable_queue(tmp_path: Path) -> None:
    queue = TaskQueue(f"sqlite:///{tmp_path / 'jobs.db'}")
    try:
        assert find_target(queue) is None
        with pytest.raises(ConfigError, match="app='module:queue'"):
            queue.run_worker(processes=2)
        with pytest.raises(ConfigError, match="processes"):
            queue.run_worker(processes=0)
        with pytest.raises(ConfigError, match="cannot import"):
            queue.run_worker(processes=2, app="no_such_module_here:queue")
    finally:
        queue.close()
    with TaskQueue("inprocess://") as fast, pytest.raises(ConfigError, match="durable"):
        fast.run_worker(processes=2)


def test_find_target_names_the_module_global() -> None:
    from tests.apps import pool_app

    assert find_target(pool_app.queue) == "tests.apps.pool_app:queue"


def test_backoff_doubles_up_to_its_ceiling() -> None:
    delays = [BACKOFF_FIRST]
    while delays[-1] < BACKOFF_MAX:
        delays.append(next_delay(delays[-1]))
    assert delays == [0.5, 1, 2, 4, 8, 16, 30]
    assert next_delay(BACKOFF_MAX) == BACKOFF_MAX


def test_a_second_sigterm_stops_the_children_at_once(tmp_path: Path) -> None:
    url, log, name = f"sqlite:///{tmp_path / 'jobs.db'}", tmp_path / "handlers.log", "twice"
    running = pool("--processes", "2", "-c", "1", env=pool_env(url, log, name))
    try:
        children = [
            int(m[1]) for m in running.wait_for(r"worker child \d started \(pid (\d+)\)", 2)
        ]
        running.wait_for(STARTED, 2)
        with TaskQueue(url, queue=name) as queue:
            for n in range(2):
                queue.enqueue("record", [n, 300], strict=False)
        wait_until(lambda: len(handler_lines(log)["start"]) >= 1, what="a job started")
        running.proc.send_signal(signal.SIGTERM)
        running.wait_for("draining")
        code, _, err = _stop(running)
    finally:
        running.kill()
    assert code == 128 + signal.SIGTERM, err
    assert "stopping at once" in err
    for pid in children:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert handler_lines(log)["done"] == {}


def test_children_drain_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    url, log, name = f"sqlite:///{tmp_path / 'jobs.db'}", tmp_path / "handlers.log", "orphans"
    running = pool("--processes", "2", "-c", "1", env=pool_env(url, log, name))
    try:
        children = [
            int(m[1]) for m in running.wait_for(r"worker child \d started \(pid (\d+)\)", 2)
        ]
        running.wait_for(STARTED, 2)
        running.proc.kill()
        running.wait_for("the supervisor is gone; draining", 2)

        def gone() -> bool:
            for pid in children:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    continue
                return False
            return True

        wait_until(gone, what="every child exited")
    finally:
        running.kill()


def test_metrics_port_of_child_i_is_port_plus_i(tmp_path: Path) -> None:
    import socket
    import urllib.request

    def free_pair() -> int:
        for _ in range(50):
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = int(probe.getsockname()[1])
            with socket.socket() as a, socket.socket() as b:
                try:
                    a.bind(("127.0.0.1", port))
                    b.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port
        raise AssertionError("no two free ports in a row")

    url, log, name = f"sqlite:///{tmp_path / 'jobs.db'}", tmp_path / "handlers.log", "metrics"
    port = free_pair()
    running = pool("--processes", "2", "--metrics-port", str(port), env=pool_env(url, log, name))
    try:
        running.wait_for(STARTED, 2)
        running.wait_for(r"metrics on http://127\.0\.0\.1:\d+/metrics", 2)
        for each in (port, port + 1):
            with urllib.request.urlopen(f"http://127.0.0.1:{each}/healthz", timeout=10) as reply:
                assert reply.status == 200
        code, _, err = _stop(running)
    finally:
        running.kill()
    assert code == 0, err


def test_max_memory_per_child_recycles_a_child_above_it(tmp_path: Path) -> None:
    """Every Python process holds more than 1 MB: each child is recycled soon after it
    started, and replaced at once; a stop still drains and exits 0."""
    url, log, name = f"sqlite:///{tmp_path / 'jobs.db'}", tmp_path / "handlers.log", "memory"
    running = pool("--max-memory-per-child", "1", env=pool_env(url, log, name))
    try:
        found = running.wait_for(
            r"worker child 0 \(pid (\d+)\) recycled \(RSS \d+ MB above 1 MB\)", 2
        )
        assert found[0][1] != found[1][1]
        assert not running.matches("restarting in")
        code, report, err = _stop(running)
    finally:
        running.kill()
    assert code == 0, err
    assert report["processes"] == 1 and report["recycled"] >= 2, report
