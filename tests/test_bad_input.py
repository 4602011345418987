"""Bad input gets a clear, typed error at the call site and writes nothing."""

from __future__ import annotations

import datetime as dt

import pytest

from spikard_tasks import (
    ConfigError,
    JobFailed,
    SerializationError,
    SpikardTasksError,
    TaskQueue,
    TaskQueueConfig,
    UnknownTask,
    exceptions,
)

pytestmark = pytest.mark.timeout(60)


def _total(queue: TaskQueue) -> int:
    return sum(queue.counts().values())


def test_unknown_task_name_is_refused(queue: TaskQueue) -> None:
    with pytest.raises(UnknownTask, match="nope"):
        queue.enqueue("nope")
    with pytest.raises(UnknownTask):
        queue.enqueue_many([{"task": "nope"}])
    assert _total(queue) == 0


class Opaque:
    pass


@pytest.mark.parametrize(
    ("args", "kwargs", "fragment"),
    [
        ([{1, 2}], {}, "set"),
        ([Opaque()], {}, "Opaque"),
        ([], {"when": dt.datetime(2026, 1, 1)}, "datetime"),
        ([b"bytes"], {}, "bytes"),
        ([float("nan")], {}, "NaN"),
        ([{1: "int key"}], {}, "keys must be str"),
        ([2**70], {}, "64-bit"),
    ],
)
def test_non_json_arguments_are_refused(
    queue: TaskQueue, args: list[object], kwargs: dict[str, object], fragment: str
) -> None:
    @queue.task(name="t")
    def t(*a: object, **k: object) -> None:
        return None

    with pytest.raises(SerializationError, match=fragment):
        t.delay(*args, **kwargs)
    with pytest.raises(SerializationError):
        queue.enqueue_many(
            [{"task": "t", "args": [1]}, {"task": "t", "args": args, "kwargs": kwargs}]
        )
    assert _total(queue) == 0, "nothing written, not even the valid job of the batch"


def test_bad_options_are_refused(queue: TaskQueue) -> None:
    @queue.task(name="t")
    def t() -> None:
        return None

    naive = dt.datetime(2030, 1, 1)
    with pytest.raises(ConfigError, match="timezone-aware"):
        t.enqueue(run_at=naive)
    with pytest.raises(ConfigError, match="unknown enqueue options"):
        t.enqueue(priorty=3)
    with pytest.raises(ConfigError, match="max_attempts"):
        t.enqueue(max_attempts=0)
    with pytest.raises(ConfigError):
        t.enqueue(delay=-1)
    with pytest.raises(ConfigError):
        t.enqueue(delay=1, run_at=dt.datetime.now(dt.timezone.utc))
    assert _total(queue) == 0


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:/relative.db",
        "sqlite:///",
        "nonsense",
        "ftp://user:hunter2@host/x",
        "postgres://user:hunter2@/db",
        "sqlite:///x.db?bogus=1",
    ],
)
def test_malformed_urls(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        TaskQueue(url)
    assert "hunter2" not in str(caught.value)
    assert "hunter2" not in repr(caught.value)


def test_backend_not_compiled_in_names_the_feature() -> None:
    from spikard_tasks import _native

    if "postgres" in _native.FEATURES:
        pytest.skip("this build includes postgres")
    with pytest.raises(ConfigError, match="`postgres` feature") as caught:
        TaskQueue("postgres://app:s3cret@localhost/db")
    assert "s3cret" not in str(caught.value)


def test_password_never_in_repr() -> None:
    q = TaskQueue("sqlite:///ok.db")
    assert "ok.db" in repr(q)
    from spikard_tasks import _native

    assert _native.redact_url("redis://:pw@host:6379/0") == "redis://:***@host:6379/0"


def test_bad_config_values() -> None:
    with pytest.raises(ConfigError):
        TaskQueue("sqlite::memory:", concurrency=0).native  # noqa: B018
    with pytest.raises(ConfigError, match="unknown configuration keys"):
        TaskQueue("sqlite::memory:", concurency=4)
    with pytest.raises(ConfigError):
        TaskQueueConfig(backoff="fast")  # type: ignore[arg-type]


def test_missing_sqlite_directory(tmp_path: object) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        TaskQueue(f"sqlite:///{tmp_path}/no/such/dir/x.db").native  # noqa: B018


def test_result_that_is_not_json_fails_the_job(queue: TaskQueue) -> None:
    @queue.task(max_attempts=3)
    def returns_set() -> object:
        return {1, 2}

    job = returns_set.delay()
    with queue.worker(concurrency=1):
        with pytest.raises(JobFailed, match="SerializationError"):
            job.result(timeout=10)
    assert job.info().attempts == 1, "not retried: a retry cannot fix it"


def test_worker_without_the_handler_stores_unknown_task(queue: TaskQueue) -> None:
    job = queue.enqueue("only.elsewhere", strict=False)
    with queue.worker(concurrency=1):
        with pytest.raises(JobFailed) as caught:
            job.result(timeout=10)
    assert caught.value.error.startswith("UnknownTask")
    assert job.info().attempts == 1


def test_handler_raising_base_exceptions_is_contained(queue: TaskQueue) -> None:
    @queue.task(max_attempts=1)
    def exits() -> None:
        raise SystemExit(3)

    @queue.task(max_attempts=1)
    def recurses(n: int = 0) -> int:
        return recurses.fn(n + 1)  # type: ignore[no-any-return]

    @queue.task
    def fine() -> str:
        return "still alive"

    a, b, c = exits.delay(), recurses.delay(), fine.delay()
    with queue.worker(concurrency=2):
        with pytest.raises(JobFailed, match="SystemExit"):
            a.result(timeout=10)
        with pytest.raises(JobFailed, match="RecursionError"):
            b.result(timeout=10)
        assert c.result(timeout=10) == "still alive"


def test_one_hierarchy() -> None:
    for name in exceptions.__all__:
        assert issubclass(getattr(exceptions, name), SpikardTasksError)
