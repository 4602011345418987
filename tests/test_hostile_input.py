"""The bad-input catalogue of issue #7, for the items that ``test_bad_input.py`` and
``test_servers.py`` do not cover already: huge payloads, corrupted rows written behind
the queue's back, handlers that never return or raise ``BaseException``s, a Rust panic
in the bridge, malformed server URLs, wrong Redis credentials, and secrets in logs.

Already covered elsewhere (not repeated here): unknown task at enqueue and at execution,
non-JSON arguments and results, malformed URLs in general and wrong PostgreSQL/MySQL
credentials, ``SystemExit`` and ``RecursionError`` in sync handlers.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spikard_tasks import (
    BackendError,
    Backoff,
    ConfigError,
    JobFailed,
    JobStatus,
    TaskQueue,
    _native,
)

from . import services
from .conftest import server_url
from .fault_procs import Workers, backend_of, read_log, unique_queue
from .procs import REPO, wait_for

pytestmark = pytest.mark.timeout(120)

SECRET = "hunter2-Secret-pw"


def _fast_queue(url: str, **options: Any) -> TaskQueue:
    settings: dict[str, Any] = {
        "queue": unique_queue("hostile"),
        "poll_interval": 0.01,
        "backoff": Backoff(initial=0.01, max=0.05, jitter=0.0),
        "drain_timeout": 5.0,
    }
    settings.update(options)
    return TaskQueue(url, **settings)


# -- a 10 MB payload on every backend --------------------------------------------------

TEN_MB = 10 * 1024 * 1024


def _big_payload() -> dict[str, Any]:
    # Quotes, backslashes, control characters and non-ASCII text, so that escaping and
    # UTF-8 handling are exercised at this size, not only the byte count.
    unit = 'snow ☃ "quoted" \\ back\tslash\n line ünïcödé 𝄞 '
    text = unit * (TEN_MB // len(unit.encode()) + 1)
    return {"text": text, "numbers": list(range(1000)), "nested": [{"k": [1.5, None, True]}]}


def test_ten_megabyte_arguments_round_trip(backend_url: str) -> None:
    queue = _fast_queue(backend_url)

    @queue.task(name="echo")
    def echo(payload: dict[str, Any]) -> dict[str, Any]:
        return payload

    payload = _big_payload()
    size = len(json.dumps(payload, ensure_ascii=False).encode())
    assert size >= TEN_MB
    job = echo.delay(payload)
    with queue.worker(concurrency=1):
        result = job.result(timeout=90)
    assert result == payload, "the result (also 10 MB) came back intact"
    info = job.info()
    assert info.args == [payload], "the stored arguments are intact"
    assert info.status is JobStatus.SUCCEEDED and info.attempts == 1


# -- corrupted rows --------------------------------------------------------------------


def _corrupt(url: str, job_id: str, column: str, text: str) -> None:
    """Overwrites one stored column of a job directly in the backend (no spikard code)."""
    backend = backend_of(url)
    assert "'" not in text and "'" not in job_id
    if backend == "sqlite":
        path = urllib.parse.urlsplit(url).path
        with sqlite3.connect(path[1:] if path.startswith("//") else path) as conn:
            conn.execute(f"UPDATE spikard_jobs SET {column} = ? WHERE id = ?", (text, job_id))
    elif backend == "postgres":
        services.sql(
            url, f"UPDATE spikard_tasks.jobs SET {column} = '{text}' WHERE id = '{job_id}'"
        )
    elif backend == "mysql":
        services.sql(url, f"UPDATE spikard_jobs SET {column} = '{text}' WHERE id = '{job_id}'")
    else:
        services.redis_cli(url, "HSET", f"spikard:job:{job_id}", column, text)


def _stored_errors(url: str, job_id: str) -> tuple[str, str]:
    """``(status, errors JSON text)`` of a job, read directly from the backend."""
    backend = backend_of(url)
    if backend == "sqlite":
        path = urllib.parse.urlsplit(url).path
        with sqlite3.connect(path[1:] if path.startswith("//") else path) as conn:
            row = conn.execute(
                "SELECT status, errors FROM spikard_jobs WHERE id = ?", (job_id,)
            ).fetchone()
        return str(row[0]), str(row[1])
    if backend == "postgres":
        out = services.sql(
            url, f"SELECT status, errors::text FROM spikard_tasks.jobs WHERE id = '{job_id}'"
        )
    elif backend == "mysql":
        out = services.sql(url, f"SELECT status, errors FROM spikard_jobs WHERE id = '{job_id}'")
    else:
        out = services.redis_cli(url, "HMGET", f"spikard:job:{job_id}", "status", "errors")
        status, errors = out.rstrip("\n").split("\n", 1)
        return status, errors
    status, errors = out.rstrip("\n").split("\t", 1)
    return status, errors


def test_corrupted_row_fails_that_job_alone(shared_url: str) -> None:
    queue = _fast_queue(shared_url)

    @queue.task(name="add")
    def add(a: int, b: int = 0) -> int:
        return a + b

    # The corrupted jobs have the highest priority: the first claim meets them.
    garbage = add.enqueue(args=[1, 2], priority=10)
    wrong_shape = add.enqueue(args=[3, 4], priority=10, max_attempts=1)
    good = [add.delay(i, i) for i in range(20)]
    _corrupt(shared_url, garbage.id, "args", "{not json at all")
    _corrupt(shared_url, wrong_shape.id, "kwargs", "[1, 2, 3]")

    with queue.worker(concurrency=2):
        assert [j.result(timeout=30) for j in good] == [2 * i for i in range(20)]
        with pytest.raises(JobFailed, match="SerializationError") as caught:
            wrong_shape.result(timeout=30)
        wait_for(
            lambda: _stored_errors(shared_url, garbage.id)[0] == "failed",
            timeout=30,
            what="the corrupt job to be failed",
        )
    assert "kwargs" in str(caught.value)
    status, errors = _stored_errors(shared_url, garbage.id)
    assert status == "failed"
    entries = json.loads(errors)
    assert len(entries) == 1 and "args is not JSON" in entries[0]["error"], entries
    # Reading the corrupt job reports the corruption with the typed error.
    with pytest.raises(BackendError, match="corrupt job row"):
        garbage.info()
    counts = queue.counts()
    assert counts["succeeded"] == 20 and counts["failed"] == 2, counts
    assert counts["running"] == 0


# -- handlers that never return --------------------------------------------------------


def test_handlers_blocking_forever_time_out_and_free_their_slot(
    sqlite_url: str, tmp_path: Path
) -> None:
    workers = Workers(
        url=sqlite_url,
        log=tmp_path / "events.log",
        directory=tmp_path,
        env={"SPIKARD_TASKS_QUEUE": unique_queue("forever"), "SPIKARD_TEST_DRAIN": "2"},
    )
    try:
        producer = TaskQueue(sqlite_url, queue=workers.env["SPIKARD_TASKS_QUEUE"])
        # One slot: each job after a stuck one runs only if the timeout freed the slot.
        worker = workers.start("--concurrency", "1")
        # By name from a producer without the handlers: the task's declared timeout is
        # not known here, so the job carries its own.
        limits: dict[str, Any] = {"strict": False, "timeout": 0.5, "max_attempts": 1}
        stuck_sync = producer.enqueue("forever", priority=3, **limits)
        stuck_async = producer.enqueue("aforever", priority=2, **limits)
        after = producer.enqueue("work", args=[1, 0.0], strict=False, priority=1)
        for job in (stuck_sync, stuck_async):
            with pytest.raises(JobFailed, match="TimeoutError"):
                job.result(timeout=30)
            info = job.info()
            assert info.status is JobStatus.FAILED and info.attempts == 1
        assert after.result(timeout=30) == 1
        again = [producer.enqueue("work", args=[n, 0.0], strict=False) for n in range(2, 6)]
        assert [j.result(timeout=30) for j in again] == [2, 3, 4, 5]
        assert set(read_log(workers.log, "start")) == {"forever", "aforever"}
        # The thread stuck in the sync handler does not keep the process alive.
        t0 = time.monotonic()
        assert worker.stop(signal.SIGTERM, timeout=30) == 0, worker.text()
        assert time.monotonic() - t0 < 15
    finally:
        workers.cleanup()


def test_retries_stuck_in_the_same_handler_keep_the_pool_alive(memory_queue: TaskQueue) -> None:
    queue = memory_queue
    release = threading.Event()

    @queue.task(name="stuck", timeout=0.3, max_attempts=3)
    def stuck() -> None:
        release.wait(60)

    @queue.task(name="quick")
    def quick(n: int) -> int:
        return n

    @queue.task(name="aquick")
    async def aquick(n: int) -> int:
        return n

    try:
        # One slot: three attempts of one job each leave a thread stuck in the handler
        # (attempt 2 and 3 start while the earlier ones still block); every one of them
        # must be replaced, or the jobs after it would never run.
        job = stuck.delay()
        with queue.worker(concurrency=1):
            with pytest.raises(JobFailed, match="TimeoutError"):
                job.result(timeout=30)
            assert [e.attempt for e in job.info().errors] == [1, 2, 3]
            assert aquick.delay(1).result(timeout=10) == 1
            assert [quick.delay(n).result(timeout=10) for n in range(3)] == [0, 1, 2]
            release.set()
            # The stuck threads return and retire; the pool keeps serving.
            time.sleep(0.2)
            assert [quick.delay(n).result(timeout=10) for n in range(3)] == [0, 1, 2]
    finally:
        release.set()


# -- BaseException, recursion, panics --------------------------------------------------


class Unusual(BaseException):
    """Not an Exception: like KeyboardInterrupt or GeneratorExit."""


def _recurse(n: int) -> int:
    return _recurse(n + 1)


def _panic_exception_type() -> type[BaseException]:
    """PyO3's ``pyo3_runtime.PanicException`` (created by the extension on first use).

    When Rust code fetches this exception from Python, PyO3 resumes it as a Rust panic:
    raising it from a handler is how Python code makes the bridge itself panic.
    """
    todo: list[type[BaseException]] = [BaseException]
    while todo:
        cls = todo.pop()
        if cls.__name__ == "PanicException" and cls.__module__ == "pyo3_runtime":
            return cls
        todo.extend(cls.__subclasses__())
    raise AssertionError("pyo3_runtime.PanicException not found")


@pytest.fixture
def memory_queue() -> Iterator[TaskQueue]:
    yield _fast_queue("memory://")


def test_base_exceptions_fail_the_job_not_the_worker(memory_queue: TaskQueue) -> None:
    queue = memory_queue
    raised: dict[str, BaseException] = {
        "keyboard": KeyboardInterrupt(),
        "unusual": Unusual("not an Exception"),
        "generator_exit": GeneratorExit(),
        "system_exit": SystemExit(2),
    }

    @queue.task(name="raise_sync", max_attempts=1)
    def raise_sync(kind: str) -> None:
        raise raised[kind]

    @queue.task(name="raise_async", max_attempts=1)
    async def raise_async(kind: str) -> None:
        await asyncio.sleep(0)
        raise raised[kind]

    @queue.task(name="arecurse", max_attempts=1)
    async def arecurse() -> int:
        return _recurse(0)

    @queue.task(name="fine")
    def fine() -> str:
        return "fine"

    @queue.task(name="afine")
    async def afine() -> str:
        return "afine"

    names = {
        "keyboard": "KeyboardInterrupt",
        "unusual": "Unusual",
        "generator_exit": "GeneratorExit",
        "system_exit": "SystemExit",
    }
    with queue.worker(concurrency=2) as worker:
        for task in (raise_sync, raise_async):
            for kind, name in names.items():
                job = task.delay(kind)
                with pytest.raises(JobFailed, match=name) as caught:
                    job.result(timeout=10)
                assert caught.value.traceback, "the traceback is stored"
        with pytest.raises(JobFailed, match="RecursionError"):
            arecurse.delay().result(timeout=10)
        # Both kinds of handler still run: the threads and the event loop survived.
        assert fine.delay().result(timeout=10) == "fine"
        assert afine.delay().result(timeout=10) == "afine"
        assert worker.running
    assert worker.stats()["failed"] == 9


def test_rust_panic_in_the_bridge_fails_the_attempt(memory_queue: TaskQueue) -> None:
    queue = memory_queue

    @queue.task(name="plain_failure", max_attempts=1)
    def plain_failure() -> None:
        raise ValueError("fetching this creates PyO3's PanicException type")

    @queue.task(name="panics", max_attempts=2)
    def panics() -> None:
        raise _panic_exception_type()("boom in the bridge")

    @queue.task(name="apanics", max_attempts=2)
    async def apanics() -> None:
        raise _panic_exception_type()("async boom")

    @queue.task(name="fine")
    def fine(n: int) -> int:
        return n

    with queue.worker(concurrency=1):
        with pytest.raises(JobFailed):
            plain_failure.delay().result(timeout=10)
        sync_job, async_job = panics.delay(), apanics.delay()
        with pytest.raises(JobFailed, match="PanicException"):
            sync_job.result(timeout=10)
        with pytest.raises(JobFailed, match="PanicException"):
            async_job.result(timeout=10)
        # One thread, which just panicked twice, still serves.
        assert [fine.delay(n).result(timeout=10) for n in range(3)] == [0, 1, 2]
    sync_errors = [e.error for e in sync_job.info().errors]
    assert len(sync_errors) == 2, "retried per policy like any failure"
    assert all("boom in the bridge" in e for e in sync_errors), sync_errors
    assert all("async boom" in e.error for e in async_job.info().errors)


# -- URLs and credentials --------------------------------------------------------------


@pytest.mark.parametrize(
    ("backend", "url"),
    [
        ("postgres", f"postgres://app:{SECRET}@127.0.0.1:notaport/db"),
        ("postgres", f"postgres://postgres:{SECRET}@127.0.0.1:5432/test?sslmode=bogus"),
        ("mysql", f"mysql://app:{SECRET}@127.0.0.1:99999/db"),
        ("mysql", f"mysql://root:{SECRET}@127.0.0.1:3306/test?ssl-mode=bogus"),
        ("redis", f"redis://:{SECRET}@127.0.0.1:6379/notadb"),
        ("redis", f"redis://:{SECRET}@[::1/0"),
        ("redis", f"redis://:{SECRET}@127.0.0.1:6379/0?protocol=bogus"),
    ],
)
def test_malformed_server_urls(backend: str, url: str) -> None:
    if backend not in _native.FEATURES:
        pytest.skip(f"{backend} backend not compiled into this build")
    with pytest.raises(ConfigError) as caught:
        TaskQueue(url).native  # noqa: B018
    assert SECRET not in str(caught.value) and SECRET not in repr(caught.value)


@pytest.mark.parametrize("user", ["", "spikard_no_such_user"])
def test_wrong_redis_credentials(user: str) -> None:
    base = urllib.parse.urlsplit(server_url("redis"))
    url = f"redis://{user}:{SECRET}@{base.hostname}:{base.port}{base.path}"
    t0 = time.monotonic()
    with pytest.raises(BackendError) as caught:
        TaskQueue(url).native  # noqa: B018
    assert time.monotonic() - t0 < 10
    assert "authentication" in str(caught.value).lower()
    assert SECRET not in str(caught.value)


# -- secrets never in errors or logs ---------------------------------------------------


SECRET_USER = "spikard_secret_test"


def _create_secret_user(server: services.Server) -> None:
    """Creates (idempotently) a user whose password is SECRET on the test's own server
    (on PostgreSQL that password is checked: only ``postgres`` is trusted there)."""
    services.create_user(server, SECRET_USER, SECRET)


@pytest.fixture
def secret_url(disposable_server: services.Server) -> str:
    """The URL of a user whose password is SECRET on the test's disposable server (the
    test creates users and stops that server: never the shared one)."""
    _create_secret_user(disposable_server)
    base = urllib.parse.urlsplit(disposable_server.url)
    return f"{base.scheme}://{SECRET_USER}:{SECRET}@{base.hostname}:{base.port}{base.path}"


@pytest.mark.slow
def test_secrets_never_in_errors_or_logs(
    secret_url: str, disposable_server: services.Server, tmp_path: Path
) -> None:
    queue_name = unique_queue("secrets")
    workers = Workers(
        url=secret_url,
        log=tmp_path / "events.log",
        directory=tmp_path,
        # The most verbose engine logs, and the shortest lease: rescues get logged too.
        env={
            "SPIKARD_TASKS_QUEUE": queue_name,
            "SPIKARD_TASKS_LOG": "debug",
            "SPIKARD_TASKS_LEASE": "1",
            "SPIKARD_TASKS_HEARTBEAT": "0.2",
        },
    )
    texts: list[str] = []
    try:
        producer = TaskQueue(secret_url, queue=queue_name)
        texts.append(repr(producer))
        worker = workers.start("--concurrency", "2")
        failing = producer.enqueue("always_fails", strict=False)
        with pytest.raises(JobFailed) as failed:
            failing.result(timeout=30)
        texts += [str(failed.value), repr(failed.value), str(failing.info())]
        slow = [producer.enqueue("hold", args=[n, 0.5], strict=False) for n in range(4)]
        # Connection errors, reconnects, refused enqueues: all while the server is down.
        with services.outage(disposable_server):
            with pytest.raises(BackendError) as refused:
                producer.enqueue("work", args=[0, 0.0], strict=False)
            texts += [str(refused.value), repr(refused.value)]
            time.sleep(1.5)
        _create_secret_user(disposable_server)
        for job in slow:
            assert job.result(timeout=60) == worker.pid
        # The CLI with a wrong password in its URL.
        wrong = secret_url.replace(SECRET, SECRET + "-wrong")
        cli = subprocess.run(
            [sys.executable, "-m", "spikard_tasks.cli", "status", "--url", wrong, failing.id],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        texts.append(cli.stdout + cli.stderr)
        assert cli.returncode != 0, cli.stdout + cli.stderr
        assert worker.stop() == 0
        log = worker.text()
        texts.append(log)
        assert "DEBUG" in log, "debug logging was on"
        assert "WARN" in log, "the outage was logged"
    finally:
        workers.cleanup()
    for text in texts:
        assert SECRET not in text, text
