"""Typed, validated tasks and the handler's own context, on every backend (the durable
ones and ``inprocess://``): arguments bound at the enqueue call, ``retry_on`` /
``dont_retry_on`` / per-task ``backoff``, ``current_job()``, worker hooks, middleware."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from spikard_tasks import (
    Backoff,
    ConfigError,
    InvalidArguments,
    JobFailed,
    JobStatus,
    NoCurrentJob,
    SpikardTasksError,
    TaskQueue,
    current_job,
)

from .conftest import BACKENDS, _url

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=[*BACKENDS, "inprocess"])
def any_queue(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TaskQueue]:
    """A fresh queue on each durable backend and on the in-process fast path."""
    url = "inprocess://" if request.param == "inprocess" else _url(request.param, tmp_path)
    q = TaskQueue(
        url,
        poll_interval=0.01,
        backoff=Backoff(initial=0.01, max=0.05, jitter=0.0),
        queue=f"q-{uuid.uuid4().hex[:8]}",
        drain_timeout=5.0,
    )
    yield q
    q.close()


def _total(queue: TaskQueue) -> int:
    return sum(queue.counts().values())


# -- arguments are bound at the enqueue call --------------------------------------------


def test_bad_arguments_raise_a_typed_error_and_write_nothing(any_queue: TaskQueue) -> None:
    queue = any_queue

    @queue.task(name="send")
    def send(to: str, subject: str = "hi", *, urgent: bool = False) -> None:
        return None

    before = _total(queue)
    calls: list[Callable[[], Any]] = [
        lambda: send.delay(),  # type: ignore[call-arg]
        lambda: send.delay("a", "b", "c"),  # type: ignore[call-arg]
        lambda: send.delay("a", sender="x"),  # type: ignore[call-arg]
        lambda: send.enqueue(args=["a"], kwargs={"urgnet": True}),
        lambda: queue.enqueue("send", args=[], kwargs={}),
        lambda: queue.enqueue_many([("send", ["a"]), ("send", ["a", "b", "c", "d"])]),
    ]
    for call in calls:
        with pytest.raises(InvalidArguments) as raised:
            call()
        assert isinstance(raised.value, TypeError)
        assert isinstance(raised.value, SpikardTasksError)
        assert "send" in str(raised.value) and "nothing was enqueued" in str(raised.value)
    assert _total(queue) == before  # the good first job of the batch was not written either

    # Good calls pass, in every shape.
    send.delay("a")
    send.delay("a", "b", urgent=True)
    send.delay(to="a", subject="b")
    queue.enqueue("send", args=["a"], kwargs={"urgent": True})
    # strict=False checks neither the name nor the arguments.
    queue.enqueue("send", args=[1, 2, 3, 4], strict=False)
    if queue.is_durable:  # (an inprocess:// queue runs only tasks registered here)
        queue.enqueue("elsewhere.task", args=[1], strict=False)
    assert _total(queue) == before + (6 if queue.is_durable else 5)


def test_handlers_taking_anything_accept_anything(any_queue: TaskQueue) -> None:
    queue = any_queue

    @queue.task(name="loose")
    def loose(*args: Any, **kwargs: Any) -> int:
        return len(args) + len(kwargs)

    with queue.worker():
        assert loose.delay(1, 2, three=3).result(timeout=10) == 3


# -- retry_on / dont_retry_on / backoff -------------------------------------------------


def test_dont_retry_on_and_retry_on_decide_per_exception(any_queue: TaskQueue) -> None:
    queue = any_queue
    seen: dict[str, int] = {}

    def count(key: str) -> None:
        seen[key] = seen.get(key, 0) + 1

    @queue.task(name="bad-input", max_attempts=4, dont_retry_on=ValueError)
    def bad_input(kind: str) -> None:
        count(f"bad-input:{kind}")
        raise ValueError("no") if kind == "value" else OSError("flaky")

    @queue.task(name="io-only", max_attempts=3, retry_on=(OSError,))
    async def io_only(kind: str) -> None:
        count(f"io-only:{kind}")
        raise KeyError("k") if kind == "key" else ConnectionError("down")

    jobs = {
        "bad-input:value": bad_input.delay("value"),
        "bad-input:os": bad_input.delay("os"),
        "io-only:key": io_only.delay("key"),
        "io-only:conn": io_only.delay("conn"),
    }
    with queue.worker(concurrency=4):
        for job in jobs.values():
            with pytest.raises(JobFailed):
                job.result(timeout=20)
    attempts = {key: job.info().attempts for key, job in jobs.items()}
    assert attempts == {
        "bad-input:value": 1,  # dont_retry_on: failed at once
        "bad-input:os": 4,  # anything else: every attempt
        "io-only:key": 1,  # not in retry_on: failed at once
        "io-only:conn": 3,  # a subclass of OSError: retried
    }
    assert seen == attempts
    last = jobs["bad-input:value"].info().errors[-1]
    assert (
        last.error == "ValueError: no"
        and last.traceback
        and "raise ValueError" in str(last.traceback)
    )


def test_a_task_backoff_replaces_the_queue_backoff(any_queue: TaskQueue) -> None:
    queue = any_queue
    # The queue waits 10 minutes between attempts; this task does not wait at all.
    slow = TaskQueue(queue.config.replace(backoff=Backoff(initial=600.0, max=600.0, jitter=0.0)))

    @slow.task(name="quick-retry", max_attempts=3, backoff=Backoff(0.0, 0.0, 2.0, 0.0))
    def quick_retry() -> None:
        raise RuntimeError("again")

    @slow.task(name="slow-retry", max_attempts=3)
    def slow_retry() -> None:
        raise RuntimeError("again")

    quick, slow_job = quick_retry.delay(), slow_retry.delay()
    try:
        with slow.worker():
            with pytest.raises(JobFailed):
                quick.result(timeout=20)
            assert quick.info().attempts == 3
            assert slow_job.info().attempts == 1
            assert slow_job.status() is JobStatus.RETRYING
    finally:
        slow.close()


def test_bad_retry_options_are_refused() -> None:
    queue = TaskQueue("memory://")
    with pytest.raises(ConfigError, match="retry_on"):
        queue.task(retry_on="ValueError")(lambda: None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="dont_retry_on"):
        queue.task(dont_retry_on=(ValueError, 3))(lambda: None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        queue.task(backoff=Backoff(initial=-1.0))(lambda: None)
    with pytest.raises(ConfigError):
        queue.task(backoff={"initial": float("nan")})(lambda: None)
    queue.close()


# -- current_job() ----------------------------------------------------------------------


def test_current_job_in_sync_and_async_handlers(any_queue: TaskQueue) -> None:
    queue = any_queue

    @queue.task(name="who-sync", max_attempts=3, timeout=20.0)
    def who_sync() -> dict[str, Any]:
        job = current_job()
        if job.attempt == 1:
            raise RuntimeError("first attempt fails")
        return {
            "id": job.id,
            "task": job.task,
            "queue": job.queue,
            "attempt": job.attempt,
            "max": job.max_attempts,
            "last": job.is_last_attempt,
            "timeout": job.timeout,
        }

    async def helper() -> str:
        await asyncio.sleep(0)
        return current_job().id  # code the handler calls sees the same job

    @queue.task(name="who-async", max_attempts=2)
    async def who_async() -> dict[str, Any]:
        job = current_job()
        return {"id": job.id, "helper": await helper(), "attempt": job.attempt}

    sync_job, async_job = who_sync.delay(), who_async.delay()
    with queue.worker(concurrency=2):
        got = sync_job.result(timeout=20)
        got_async = async_job.result(timeout=20)
    assert got == {
        "id": sync_job.id,
        "task": "who-sync",
        "queue": queue.name,
        "attempt": 2,
        "max": 3,
        "last": False,
        "timeout": 20.0,
    }
    assert got_async == {"id": async_job.id, "helper": async_job.id, "attempt": 1}
    with pytest.raises(NoCurrentJob):
        current_job()


def test_current_job_outside_a_job_is_a_typed_error() -> None:
    with pytest.raises(NoCurrentJob) as raised:
        current_job()
    assert isinstance(raised.value, LookupError)


# -- worker hooks -----------------------------------------------------------------------


def test_worker_hooks_run_once_per_worker_around_the_jobs(any_queue: TaskQueue) -> None:
    queue = any_queue
    events: list[str] = []
    state: dict[str, Any] = {}

    @queue.on_worker_start
    def open_client() -> None:
        events.append("start-sync")
        state["client"] = "client"

    @queue.on_worker_start
    async def open_async_client() -> None:
        events.append("start-async")
        state["loop"] = asyncio.get_running_loop()

    @queue.on_worker_stop
    async def close_clients() -> None:
        events.append("stop-async")

    @queue.on_worker_stop
    def broken_stop() -> None:
        raise RuntimeError("stop hooks that raise are logged; the others still run")

    @queue.on_worker_stop
    def close_client() -> None:
        events.append("stop-sync")

    @queue.task(name="uses-client")
    async def uses_client() -> list[Any]:
        events.append("job")
        same_loop = asyncio.get_running_loop() is state["loop"]
        return [state["client"], same_loop if queue.is_durable else True]

    with queue.worker():  # (an inprocess:// job starts at its enqueue: enqueue here)
        assert uses_client.delay().result(timeout=10) == ["client", True]
    assert events == ["start-sync", "start-async", "job", "stop-async", "stop-sync"]


def test_a_failing_start_hook_keeps_the_worker_from_starting(any_queue: TaskQueue) -> None:
    queue = any_queue
    ran: list[int] = []

    @queue.on_worker_start
    def no_database() -> None:
        raise ConnectionError("cannot open the client")

    @queue.task(name="never")
    def never() -> None:
        ran.append(1)

    job = never.delay()
    if queue.is_durable:
        with pytest.raises(ConnectionError):
            queue.worker().start()
        assert job.status() is JobStatus.PENDING
        assert ran == []
    else:  # in-process jobs start on enqueue: the hook only guards the worker's start
        with pytest.raises(ConnectionError):
            queue.worker().start()


def test_hooks_must_take_no_arguments() -> None:
    queue = TaskQueue("memory://")
    with pytest.raises(ConfigError, match="no arguments"):
        queue.on_worker_start(lambda ctx: None)
    with pytest.raises(ConfigError):
        queue.on_worker_stop("not callable")  # type: ignore[type-var]
    queue.close()


# -- middleware -------------------------------------------------------------------------


def test_middleware_wraps_every_attempt_of_sync_and_async_handlers(any_queue: TaskQueue) -> None:
    queue = any_queue
    log: list[tuple[str, ...]] = []
    lock = threading.Lock()

    def note(*entry: str) -> None:
        with lock:
            log.append(entry)

    @queue.middleware
    def outer(job: Any) -> Iterator[None]:
        note("outer-in", job.task, str(job.attempt))
        try:
            yield
        except Exception as exc:
            note("outer-error", job.task, type(exc).__name__)
            raise
        finally:
            note("outer-out", job.task)

    @queue.middleware
    async def inner(job: Any) -> Any:
        note("inner-in", job.task)
        yield
        note("inner-out", job.task)

    @queue.middleware
    def swallow_lookup_errors(job: Any) -> Iterator[None]:
        try:
            yield
        except LookupError:
            note("swallowed", job.task)

    @queue.task(name="sync-ok")
    def sync_ok() -> int:
        note("handler", current_job().task)
        return 1

    @queue.task(name="async-fails", max_attempts=1)
    async def async_fails() -> None:
        raise ValueError("boom")

    @queue.task(name="swallowed")
    def swallowed() -> int:
        raise KeyError("missing")

    with queue.worker(concurrency=1):
        assert sync_ok.delay().result(timeout=10) == 1
        with pytest.raises(JobFailed, match="ValueError: boom"):
            async_fails.delay().result(timeout=10)
        assert swallowed.delay().result(timeout=10) is None
    assert log == [
        ("outer-in", "sync-ok", "1"),
        ("inner-in", "sync-ok"),
        ("handler", "sync-ok"),
        ("inner-out", "sync-ok"),
        ("outer-out", "sync-ok"),
        ("outer-in", "async-fails", "1"),
        ("inner-in", "async-fails"),
        ("outer-error", "async-fails", "ValueError"),
        ("outer-out", "async-fails"),
        ("outer-in", "swallowed", "1"),
        ("inner-in", "swallowed"),
        ("swallowed", "swallowed"),
        ("inner-out", "swallowed"),
        ("outer-out", "swallowed"),
    ]


def test_a_middleware_must_be_a_generator_function() -> None:
    queue = TaskQueue("memory://")
    with pytest.raises(ConfigError, match="generator"):
        queue.middleware(lambda job: None)
    queue.close()


# -- the environment wins over the code -------------------------------------------------


def test_environment_overrides_the_code(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    code_url = f"sqlite:///{tmp_path / 'real.db'}"
    monkeypatch.setenv("SPIKARD_TASKS_URL", "memory://")
    monkeypatch.setenv("SPIKARD_TASKS_CONCURRENCY", "3")
    q = TaskQueue(code_url, concurrency=8)
    assert (q.config.url, q.config.concurrency) == ("memory://", 3)
    q.enqueue("x", strict=False)
    q.close()
    assert not (tmp_path / "real.db").exists()  # the test job never reached the real file
    kept = TaskQueue(code_url, concurrency=8, environment=False)
    assert (kept.config.url, kept.config.concurrency) == (code_url, 8)
    kept.close()
    monkeypatch.setenv("SPIKARD_TASKS_CONCURRENCY", "lots")
    with pytest.raises(ConfigError, match="CONCURRENCY"):
        TaskQueue(code_url)


def test_a_cli_flag_wins_over_the_environment(tmp_path: Path) -> None:
    from .cli_procs import cli, cli_env

    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    q = TaskQueue(url, environment=False)
    job = q.enqueue("report", args=[1], strict=False)
    q.close()
    env = cli_env(SPIKARD_TASKS_URL=f"sqlite:///{tmp_path / 'other.db'}")
    shown = cli("status", "--json", "--url", url, job.id, env=env)
    assert shown.returncode == 0, shown.stderr
    assert job.id in shown.stdout
    assert not (tmp_path / "other.db").exists()


def test_eager_retries_immediately_unless_asked_to_wait() -> None:
    from spikard_tasks.testing import eager

    # A queue that waits 10 minutes between attempts, and a task with its own 10 minutes.
    q = TaskQueue("memory://", backoff=Backoff(initial=600.0, max=600.0, jitter=0.0))

    @q.task(name="always-fails", max_attempts=3)
    def always_fails() -> None:
        raise RuntimeError("no")

    @q.task(name="own-backoff", max_attempts=2, backoff=Backoff(600.0, 600.0, 2.0, 0.0))
    def own_backoff() -> None:
        raise RuntimeError("no")

    with eager(q):  # retries="immediate"
        for task in (always_fails, own_backoff):
            job = task.delay()
            with pytest.raises(JobFailed):
                job.result(timeout=0)
            assert job.info().attempts == task.defaults["max_attempts"]
    with eager(q, retries="backoff", timeout=0.5), pytest.raises(TimeoutError):
        always_fails.delay()  # its second attempt waits 10 minutes, as on a worker
    with pytest.raises(ConfigError, match="retries"), eager(q, retries="never"):  # type: ignore[arg-type]
        pass
    q.close()


def test_progress_reported_by_the_handler_is_stored_with_the_job(any_queue: TaskQueue) -> None:
    queue = any_queue
    seen: dict[str, Any] = {}

    @queue.task(name="steps")
    def steps(n: int) -> str:
        job = current_job()
        seen["enqueued_at"] = job.enqueued_at
        for i in range(n):
            assert job.progress((i + 1) / n, f"step {i + 1} of {n}") is True
        with pytest.raises(ConfigError):
            job.progress(1.5)
        with pytest.raises(ConfigError):
            job.progress(float("nan"))
        with pytest.raises(ConfigError):
            job.progress(0.5, "x" * 1001)
        return "done"

    @queue.task(name="async-steps")
    async def async_steps() -> str:
        assert await current_job().aprogress(0.25) is True
        return "done"

    job, other = steps.delay(4), async_steps.delay()
    if queue.is_durable:  # (an inprocess:// job starts at its enqueue)
        assert job.info().progress is None
    with queue.worker():
        assert job.result(timeout=10) == "done"
        assert other.result(timeout=10) == "done"
    info = job.info()
    assert info.progress is not None
    assert (info.progress.fraction, info.progress.message) == (1.0, "step 4 of 4")
    assert info.progress.at is not None and info.enqueued_at is not None
    assert info.progress.at >= info.enqueued_at
    assert seen["enqueued_at"] is not None
    assert abs((seen["enqueued_at"] - info.enqueued_at).total_seconds()) < 0.002
    other_progress = other.info().progress
    assert other_progress is not None and other_progress.fraction == 0.25
    assert other_progress.message is None
    from spikard_tasks.asgi import job_view  # what GET /tasks/jobs/{id} answers

    shown = job_view(info)["progress"]
    assert shown == {
        "fraction": 1.0,
        "message": "step 4 of 4",
        "at": info.progress.at.isoformat(),
    }
