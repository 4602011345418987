"""Huge, infinite and NaN numbers at every entry point: each is refused at the call with
a typed error naming the limit (HTTP 422), nothing is written, nothing panics, wraps or
hangs a job; and a stored job whose numbers are out of range still reads back."""

from __future__ import annotations

import datetime as dt
import math
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spikard_tasks import ConfigError, JobStatus, Retry, TaskQueue
from spikard_tasks.exceptions import JobFailed, SpikardTasksError

from .procs import REPO
from .test_asgi import Server, start_server

pytestmark = pytest.mark.timeout(120)

BIG_SECONDS = [1e16, 1e300, math.inf, -math.inf, math.nan, -1.0, 3.2e9]
NOT_POSITIVE = [0.0, -0.0]
AWARE_MAX = dt.datetime.max.replace(tzinfo=dt.timezone.utc)


def _nothing_written(queue: TaskQueue) -> None:
    assert sum(queue.counts().values()) == 0, queue.counts()


@pytest.mark.parametrize("value", [*BIG_SECONDS, dt.timedelta.max, dt.timedelta(days=-1)])
def test_delay_out_of_range_is_refused(queue: TaskQueue, value: Any) -> None:
    @queue.task(name="noop")
    def noop() -> None: ...

    with pytest.raises(ConfigError, match="delay"):
        noop.enqueue(delay=value)
    with pytest.raises(ConfigError, match="delay"):
        queue.enqueue("noop", delay=value)
    with pytest.raises(ConfigError, match="delay"):
        queue.enqueue_many([{"task": "noop", "delay": value}])
    _nothing_written(queue)


def test_delay_limit_is_one_hundred_years(queue: TaskQueue) -> None:
    @queue.task(name="noop")
    def noop() -> None: ...

    with pytest.raises(ConfigError, match="100 years"):
        noop.enqueue(delay=1e16)
    job = noop.enqueue(delay=99 * 365 * 86_400.0)
    info = job.info()
    assert info.status is JobStatus.SCHEDULED
    assert info.run_at is not None and info.run_at.year >= dt.datetime.now().year + 98
    assert queue.cancel(job.id)


@pytest.mark.parametrize("value", [*BIG_SECONDS, *NOT_POSITIVE])
def test_timeout_out_of_range_is_refused(queue: TaskQueue, value: float) -> None:
    @queue.task(name="noop")
    def noop() -> None: ...

    with pytest.raises(ConfigError, match="timeout"):
        noop.enqueue(timeout=value)
    _nothing_written(queue)


@pytest.mark.parametrize("value", [0, -1, 2**31, 2**32 - 1, 2**63])
def test_max_attempts_out_of_range_is_refused(queue: TaskQueue, value: int) -> None:
    @queue.task(name="noop")
    def noop() -> None: ...

    with pytest.raises(ConfigError, match="max_attempts"):
        noop.enqueue(max_attempts=value)
    _nothing_written(queue)


def test_largest_max_attempts_is_stored_exactly(queue: TaskQueue) -> None:
    @queue.task(name="noop")
    def noop() -> None: ...

    job = noop.enqueue(max_attempts=2**31 - 1, delay=3600)
    assert job.info().max_attempts == 2**31 - 1
    assert queue.cancel(job.id)


EDGES = [
    AWARE_MAX,
    dt.datetime.min.replace(tzinfo=dt.timezone.utc),
    dt.datetime(9000, 1, 1, tzinfo=dt.timezone.utc),
]


@pytest.mark.parametrize("run_at", EDGES)
def test_run_at_at_the_ends_of_the_calendar_reads_back(
    queue: TaskQueue, run_at: dt.datetime
) -> None:
    @queue.task(name="noop")
    def noop() -> None: ...

    job = noop.enqueue(run_at=run_at)
    info = job.info()
    assert job.status() in (JobStatus.PENDING, JobStatus.SCHEDULED)
    assert info.run_at is not None and abs((info.run_at - run_at).total_seconds()) < 0.002
    assert queue.cancel(job.id)


@pytest.mark.parametrize("value", [1e20, math.inf, math.nan, -1.0])
def test_result_timeout_out_of_range_is_refused(queue: TaskQueue, value: float) -> None:
    @queue.task(name="noop")
    def noop() -> None: ...

    job = noop.enqueue(delay=3600)
    with pytest.raises(ConfigError, match="timeout"):
        job.result(timeout=value)
    assert queue.cancel(job.id)


async def test_wait_timeout_out_of_range_is_refused(queue: TaskQueue) -> None:
    @queue.task(name="noop")
    def noop() -> None: ...

    job = noop.enqueue(delay=3600)
    with pytest.raises(ConfigError, match="timeout"):
        await job.wait(timeout=1e20)
    assert queue.cancel(job.id)


@pytest.mark.parametrize(
    "option", ["lease", "heartbeat", "poll_interval", "drain_timeout", "result_ttl"]
)
@pytest.mark.parametrize("value", [1e20, math.inf, math.nan])
def test_queue_durations_out_of_range_are_refused(option: str, value: float) -> None:
    with pytest.raises(ConfigError, match=option):
        TaskQueue("memory://", **{option: value}).native  # noqa: B018


def test_backoff_out_of_range_is_refused() -> None:
    with pytest.raises(ConfigError, match="backoff"):
        TaskQueue("memory://", backoff={"initial": 1e300}).native  # noqa: B018


@pytest.mark.parametrize("after", [math.inf, 1e300, math.nan, -1.0, "soon"])
def test_retry_after_out_of_range_is_refused(after: Any) -> None:
    with pytest.raises(ConfigError, match=r"Retry\(after"):
        Retry(after=after)


class _Unchecked(Retry):
    """A Retry whose ``after`` was changed after it was checked."""

    def __init__(self) -> None:
        super().__init__(after=1.0)
        self.after = math.inf


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("raise_it", ["constructed", "changed"])
def test_retry_with_an_endless_delay_fails_the_attempt(
    queue: TaskQueue, kind: str, raise_it: str
) -> None:
    def make() -> Retry:
        return Retry(after=math.inf) if raise_it == "constructed" else _Unchecked()

    if kind == "sync":

        @queue.task(name="again", max_attempts=1)
        def again() -> None:
            raise make()

    else:

        @queue.task(name="again", max_attempts=1)
        async def again() -> None:
            raise make()

    job = queue.enqueue("again")
    with queue.worker(concurrency=2):
        with pytest.raises(JobFailed) as failed:
            job.result(timeout=30)
    assert "ConfigError" in failed.value.error and "Retry(after" in failed.value.error
    assert job.status() is JobStatus.FAILED


def test_worker_durations_out_of_range_are_refused(queue: TaskQueue) -> None:
    with pytest.raises(ConfigError, match="drain_timeout"):
        with queue.worker(drain_timeout=1e20):
            pass


def test_inprocess_applies_the_same_limits() -> None:
    queue = TaskQueue("inprocess://")

    @queue.task(name="noop")
    def noop() -> None: ...

    for options in ({"delay": 1e16}, {"timeout": math.inf}, {"max_attempts": 2**31}):
        with pytest.raises(ConfigError):
            noop.enqueue(**options)
    job = noop.delay()
    with pytest.raises(ConfigError, match="timeout"):
        job.result(timeout=1e20)
    assert job.result(timeout=10) is None


# -- numbers already stored out of range ----------------------------------------------


def test_stored_out_of_range_instants_read_back(tmp_path: Path) -> None:
    """Rows written by hand (or an older release) with instants past the year 9999:
    status(), info() and result() never raise."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    queue = TaskQueue(url)

    @queue.task(name="noop")
    def noop() -> int:
        return 1

    pending = noop.enqueue(delay=3600)
    done = noop.enqueue(delay=3600)
    with sqlite3.connect(tmp_path / "jobs.db") as db:
        db.execute(
            "UPDATE spikard_jobs SET run_at = ?, enqueued_at = ? WHERE id = ?",
            (2**62, -(2**62), pending.id),
        )
        db.execute(
            "UPDATE spikard_jobs SET status = 'succeeded', result = '1', finished_at = ?, "
            "started_at = ? WHERE id = ?",
            (2**63 - 1, -(2**63), done.id),
        )
    assert pending.status() is JobStatus.SCHEDULED
    info = pending.info()
    assert info.run_at is not None and info.run_at.year == 9999
    assert info.enqueued_at is not None and info.enqueued_at.year == 1
    assert done.status() is JobStatus.SUCCEEDED and done.result(timeout=5) == 1
    assert done.info().finished_at is not None


# -- HTTP and CLI ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("limits")
    srv = start_server(f"sqlite:///{tmp / 'http.db'}", tmp / "server.log")
    try:
        yield srv
    finally:
        srv.proc.terminate()
        srv.proc.wait(timeout=30)


@pytest.mark.parametrize(
    "options",
    [
        {"delay": 1e16},
        {"delay": 1e300},
        {"timeout": 1e20},
        {"max_attempts": 2**31},
        {"run_at": "10000-01-01T00:00:00+00:00"},
    ],
)
def test_http_refuses_out_of_range_options(http: Server, options: dict[str, Any]) -> None:
    before = http.total()
    single = http.request("POST", "/tasks/add", {"args": [1, 2], "options": options})
    assert single.status == 422, single.raw
    batch = http.request(
        "POST", "/tasks/batch", {"tasks": [{"task": "add", "args": [1, 2], "options": options}]}
    )
    assert batch.status == 422, batch.raw
    assert http.total() == before, "nothing was enqueued"


def test_http_refuses_a_json_infinity(http: Server) -> None:
    before = http.total()
    reply = http.request("POST", "/tasks/add", raw=b'{"args": [1, 2], "options": {"delay": 1e400}}')
    assert reply.status == 422, reply.raw
    assert http.total() == before


@pytest.mark.parametrize(
    "args",
    [["--delay", "1e16"], ["--timeout", "inf"], ["--max-attempts", str(2**31)]],
)
def test_cli_enqueue_refuses_out_of_range_numbers(tmp_path: Path, args: list[str]) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    cli = subprocess.run(
        [sys.executable, "-m", "spikard_tasks.cli", "enqueue", "--url", url, "noop", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert cli.returncode != 0, cli.stdout + cli.stderr
    assert "Traceback" not in cli.stderr and "panicked" not in cli.stderr, cli.stderr
    assert sum(TaskQueue(url).counts().values()) == 0


def test_errors_are_typed() -> None:
    """Every refusal above is a SpikardTasksError (and a ValueError, as ConfigError is)."""
    assert issubclass(ConfigError, SpikardTasksError) and issubclass(ConfigError, ValueError)
