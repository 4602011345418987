"""The engine's log events reach Python's ``logging`` (``spikard_tasks.engine.*``), with
their fields as record attributes: a line per job (retry WARNING, final-failure ERROR with
the traceback), the worker's start line; nothing is printed behind logging's back."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from spikard_tasks import Backoff, JobFailed, TaskQueue

from .procs import REPO

pytestmark = pytest.mark.timeout(90)


class Collect(logging.Handler):
    """Keeps every record it is handed."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock:
            self.records.append(record)

    def wait_for(
        self, test: Callable[[logging.LogRecord], bool], timeout: float = 10.0
    ) -> logging.LogRecord:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                for record in self.records:
                    if test(record):
                        return record
            time.sleep(0.02)
        with self._lock:
            seen = [(r.name, r.levelname, r.getMessage()) for r in self.records]
        raise AssertionError(f"no such record; seen: {seen}")


@pytest.fixture
def collected() -> Iterator[Collect]:
    handler = Collect()
    logger = logging.getLogger("spikard_tasks")
    old = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)


def test_a_job_is_logged_at_each_step_with_its_fields(backend_url: str, collected: Collect) -> None:
    queue = TaskQueue(
        backend_url,
        queue=f"log-{uuid.uuid4().hex[:8]}",
        poll_interval=0.01,
        backoff=Backoff(initial=0.01, max=0.01, jitter=0.0),
    )
    name = f"flaky-{uuid.uuid4().hex[:6]}"

    @queue.task(name=name, max_attempts=2)
    def flaky() -> None:
        raise ValueError("the input is bad")

    @queue.task(name=f"{name}-ok")
    def fine() -> int:
        return 1

    bad, good = flaky.delay(), fine.delay()
    with queue.worker():
        with pytest.raises(JobFailed):
            bad.result(timeout=20)
        assert good.result(timeout=20) == 1

    def mine(record: logging.LogRecord) -> bool:
        return getattr(record, "job_id", None) == bad.id

    retry = collected.wait_for(lambda r: mine(r) and r.levelno == logging.WARNING)
    assert retry.name.startswith("spikard_tasks.engine")
    assert (retry.task, retry.queue, retry.attempt) == (name, queue.name, 1)  # type: ignore[attr-defined]
    assert "ValueError: the input is bad" in retry.getMessage()
    final = collected.wait_for(lambda r: mine(r) and r.levelno == logging.ERROR)
    assert final.attempt == 2  # type: ignore[attr-defined]
    assert final.exc_text and 'raise ValueError("the input is bad")' in final.exc_text
    assert isinstance(final.duration, float)  # type: ignore[attr-defined]
    formatted = logging.Formatter("%(message)s").format(final)
    assert "Traceback (most recent call last)" in formatted
    ok = collected.wait_for(
        lambda r: getattr(r, "job_id", None) == good.id and "succeeded" in r.getMessage()
    )
    assert ok.levelno == logging.DEBUG
    started = collected.wait_for(
        lambda r: (
            r.name.startswith("spikard_tasks")
            and "started" in r.getMessage()
            and getattr(r, "concurrency", None) is not None
        )
    )
    text = started.getMessage()
    assert f"url={backend_url.split(':')[0]}" in text and "concurrency=" in text
    queue.close()


def test_disabled_levels_are_not_sent(sqlite_url: str, collected: Collect) -> None:
    logging.getLogger("spikard_tasks").setLevel(logging.WARNING)
    queue = TaskQueue(sqlite_url, poll_interval=0.01)

    @queue.task(name="quiet")
    def quiet() -> int:
        return 1

    with queue.worker():
        assert quiet.delay().result(timeout=10) == 1
    time.sleep(0.6)  # the forwarding thread's tick
    assert [r for r in collected.records if r.levelno < logging.WARNING] == []
    queue.close()


SCRIPT = textwrap.dedent(
    """
    import logging, sys
    from spikard_tasks import Backoff, JobFailed, TaskQueue

    logging.lastResort = None                  # nothing may print without a handler
    logging.getLogger().addHandler(logging.FileHandler(sys.argv[2]))
    logging.getLogger().setLevel(logging.DEBUG)
    queue = TaskQueue(sys.argv[1], backoff=Backoff(initial=0.01, max=0.01, jitter=0.0))

    @queue.task(name="fails", max_attempts=2)
    def fails():
        raise RuntimeError("boom")

    job = fails.delay()
    with queue.worker():
        try:
            job.result(timeout=20)
        except JobFailed:
            pass
    print("DONE")
    """
)


def test_nothing_reaches_stderr_behind_loggings_back(tmp_path: Path) -> None:
    log = tmp_path / "all.log"
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, f"sqlite:///{tmp_path / 'jobs.db'}", str(log)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
    )
    assert out.returncode == 0 and out.stdout.strip() == "DONE", out.stderr
    assert out.stderr == ""
    text = log.read_text()
    assert "boom" in text and "Traceback" in text and "RuntimeError: boom" in text


def test_the_worker_cli_logs_json_lines(tmp_path: Path) -> None:
    from .cli_procs import cli_env, cli_process

    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    env = cli_env(SPIKARD_TASKS_URL=url)
    producer = TaskQueue(url, environment=False)
    failed = producer.enqueue("boom", strict=False)  # tests.apps.cli_app's task that raises
    proc = cli_process(
        "worker",
        "tests.apps.cli_app:queue",
        "--log-format",
        "json",
        "--log-level",
        "DEBUG",
        env=env,
    )
    try:
        with pytest.raises(JobFailed):
            failed.result(timeout=30)
    finally:
        proc.send_signal(2)
        _out, err = proc.communicate(timeout=30)
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert lines, err
    assert all({"ts", "level", "logger", "message"} <= set(line) for line in lines)
    final = [line for line in lines if line.get("job_id") == failed.id and line["level"] == "ERROR"]
    assert final and "Traceback" in final[-1]["exception"]
    assert final[-1]["task"] == "boom"
    producer.close()


def test_spikard_tasks_log_sets_the_level_and_prints_without_a_handler(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys
        from spikard_tasks import TaskQueue
        queue = TaskQueue(sys.argv[1])

        @queue.task(name="fine")
        def fine():
            return 1

        job = fine.delay()
        with queue.worker():
            assert job.result(timeout=20) == 1
        """
    )
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "SPIKARD_TASKS_LOG": "debug"}
    out = subprocess.run(
        [sys.executable, "-c", script, url],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    assert "DEBUG spikard_tasks.engine.job: job succeeded" in out.stderr, out.stderr
    assert "db.statement" not in out.stderr  # sqlx's statements are TRACE
    quiet = subprocess.run(
        [sys.executable, "-c", script, url],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in env.items() if k != "SPIKARD_TASKS_LOG"},
    )
    assert quiet.returncode == 0 and "job succeeded" not in quiet.stderr, quiet.stderr
