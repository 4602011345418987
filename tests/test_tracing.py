"""OpenTelemetry: the span active at enqueue is the parent of the handler's consumer
span, across a real worker process, with the messaging attributes; nothing of
OpenTelemetry is imported when it is not installed."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from spikard_tasks import JobFailed, TaskQueue

from .procs import REPO

pytestmark = pytest.mark.timeout(90)
sdk = pytest.importorskip("opentelemetry.sdk.trace")


def _spans(path: Path, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            spans = [json.loads(line) for line in path.read_text().splitlines() if line]
            if len(spans) >= count:
                return spans
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} spans in {path}")


def test_the_handler_span_is_a_child_of_the_enqueueing_span(
    shared_url: str, tmp_path: Path
) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    name = f"otel-{uuid.uuid4().hex[:8]}"
    spans_file = tmp_path / "spans.jsonl"
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.apps.traced_worker", shared_url, name, str(spans_file)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    tracer = TracerProvider().get_tracer("test")
    queue = TaskQueue(shared_url, queue=name, environment=False)
    try:
        assert worker.stdout is not None and worker.stdout.readline().strip() == "READY"
        with tracer.start_as_current_span("POST /signup") as parent:
            job = queue.enqueue("traced", args=[7], strict=False)
            failing = queue.enqueue("traced-async", strict=False, max_attempts=1)
        untraced = queue.enqueue("traced", args=[8], strict=False)  # no span active
        handler_span_id, job_id, n = job.result(timeout=30).split(":")
        assert (job_id, n) == (job.id, "7")
        with pytest.raises(JobFailed):
            failing.result(timeout=30)
        untraced.result(timeout=30)
        stored = job.info().trace_context
        spans = {s["attributes"]["messaging.message.id"]: s for s in _spans(spans_file, 3)}
    finally:
        worker.send_signal(signal.SIGINT)
        worker.communicate(timeout=30)
        queue.close()
    context = parent.get_span_context()
    span = spans[job.id]
    assert span["span_id"] == handler_span_id
    assert span["trace_id"] == f"{context.trace_id:032x}"
    assert span["parent_span_id"] == f"{context.span_id:016x}"
    assert span["kind"] == "CONSUMER" and span["name"] == "traced process"
    assert span["attributes"]["messaging.system"] == "spikard_tasks"
    assert span["attributes"]["messaging.operation"] == "process"
    assert span["attributes"]["messaging.destination.name"] == name
    assert span["attributes"]["spikard_tasks.attempt"] == 1
    assert stored is not None and stored.startswith(f"00-{context.trace_id:032x}-")
    bad = spans[failing.id]
    assert bad["parent_span_id"] == f"{context.span_id:016x}"
    assert bad["status"] == "ERROR"
    alone = spans[untraced.id]
    assert alone["parent_span_id"] is None and alone["trace_id"] != span["trace_id"]


def test_nothing_of_opentelemetry_is_imported_without_it(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["opentelemetry"] = None  # as if it were not installed
        from spikard_tasks import TaskQueue
        queue = TaskQueue("sqlite:///{tmp_path / "jobs.db"}")

        @queue.task(name="plain")
        def plain():
            return 1

        job = plain.delay()
        with queue.worker():
            assert job.result(timeout=20) == 1
        assert job.info().trace_context is None
        loaded = [m for m in sys.modules if m.startswith("opentelemetry") and sys.modules[m]]
        print("LOADED", loaded)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "LOADED []" in out.stdout
