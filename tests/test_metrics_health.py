"""``/metrics``, ``/healthz`` and ``/readyz``: on a worker's metrics port (real HTTP), in
``spikard-tasks serve`` next to the enqueue routes, and ``/readyz`` answering 503 while a
(disposable) backend server is down and 200 after."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from spikard_tasks import Cancel, JobCancelled, JobFailed, TaskQueue
from spikard_tasks.metrics import serve_metrics

from . import services
from .server_process import free_port

pytestmark = pytest.mark.timeout(120)
parser = pytest.importorskip("prometheus_client.parser")


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in parser.text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_the_metrics_port_counts_known_outcomes(backend_url: str) -> None:
    queue = TaskQueue(backend_url, queue=f"m-{uuid.uuid4().hex[:8]}", poll_interval=0.01)
    tag = uuid.uuid4().hex[:6]

    @queue.task(name=f"ok-{tag}")
    def ok(n: int) -> int:
        return n

    @queue.task(name=f"bad-{tag}", max_attempts=1)
    def bad() -> None:
        raise RuntimeError("no")

    @queue.task(name=f"stop-{tag}")
    def stop() -> None:
        raise Cancel("enough")

    server = serve_metrics(queue, 0)
    base = f"http://127.0.0.1:{server.port}"
    try:
        jobs: list[Any] = [ok.delay(i) for i in range(5)]
        failing = [bad.delay() for _ in range(2)]
        cancelled = stop.delay()
        with queue.worker(concurrency=4):
            assert [j.result(timeout=20) for j in jobs] == list(range(5))
            for job in failing:
                with pytest.raises(JobFailed):
                    job.result(timeout=20)
            with pytest.raises(JobCancelled):
                cancelled.result(timeout=20)
            status, text = _get(f"{base}/metrics")
            assert status == 200
            live = _samples(text)
            assert live[("spikard_tasks_workers_alive", ())] == 1
        status, text = _get(f"{base}/metrics")
        samples = _samples(text)

        def value(name: str, task: str) -> float:
            return samples.get((name, (("queue", queue.name), ("task", task))), 0.0)

        assert value("spikard_tasks_jobs_enqueued_total", f"ok-{tag}") == 5
        assert value("spikard_tasks_jobs_succeeded_total", f"ok-{tag}") == 5
        assert value("spikard_tasks_jobs_failed_total", f"bad-{tag}") == 2
        assert value("spikard_tasks_jobs_cancelled_total", f"stop-{tag}") == 1
        assert value("spikard_tasks_job_duration_seconds_count", f"ok-{tag}") == 5
        assert samples[("spikard_tasks_backend_up", ())] == 1
        assert samples[("spikard_tasks_workers_alive", ())] == 0
        depth = {
            dict(labels)["state"]: v
            for (name, labels), v in samples.items()
            if name == "spikard_tasks_queue_jobs" and dict(labels)["queue"] == queue.name
        }
        assert depth.get("succeeded") == 5 or depth.get("pending", 0) == 0  # cached ≤ 5 s
        assert _get(f"{base}/healthz") == (200, '{"status": "ok"}')
        status, body = _get(f"{base}/readyz")
        assert status == 200 and json.loads(body)["status"] == "ready"
        assert _get(f"{base}/nope")[0] == 404
    finally:
        server.close()
        queue.close()


@pytest.mark.slow
def test_readyz_is_503_while_the_backend_is_down(disposable_server: services.Server) -> None:
    queue = TaskQueue(disposable_server.url, queue=f"r-{uuid.uuid4().hex[:8]}")
    queue.open()
    server = serve_metrics(queue, 0)
    base = f"http://127.0.0.1:{server.port}"
    try:
        assert _get(f"{base}/readyz")[0] == 200
        with services.outage(disposable_server):
            status, body = _get(f"{base}/readyz")
            assert status == 503, body
            assert json.loads(body)["status"] == "unavailable"
            assert disposable_server.url.split("@")[0] not in body or "***" in body
            assert _get(f"{base}/healthz")[0] == 200  # the process itself is alive
        deadline_ok = False
        for _ in range(100):
            if _get(f"{base}/readyz")[0] == 200:
                deadline_ok = True
                break
            time.sleep(0.2)
        assert deadline_ok, "ready again once the server is back"
    finally:
        server.close()
        queue.close()


def test_serve_answers_metrics_and_health_next_to_the_enqueue_routes(tmp_path: Path) -> None:
    from .cli_procs import cli_env, cli_process

    port = free_port()
    env = cli_env(SPIKARD_TASKS_URL=f"sqlite:///{tmp_path / 'jobs.db'}")
    proc = cli_process("serve", "tests.apps.cli_app:queue", "--port", str(port), env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if _get(f"{base}/healthz")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.05)
        request = urllib.request.Request(
            f"{base}/tasks/report",
            data=json.dumps({"args": [1, 2]}).encode(),
            headers={"content-type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 202
        status, text = _get(f"{base}/metrics")
        assert status == 200
        samples = _samples(text)
        assert samples[("spikard_tasks_backend_up", ())] == 1
        enqueued = [
            v
            for (name, labels), v in samples.items()
            if name == "spikard_tasks_jobs_enqueued_total" and dict(labels)["task"] == "report"
        ]
        assert enqueued == [1.0]
        assert _get(f"{base}/readyz")[0] == 200
    finally:
        proc.send_signal(2)
        proc.communicate(timeout=30)
