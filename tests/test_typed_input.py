"""Every bad input is typed: lone surrogates (text that is not Unicode), NUL characters
and an ``enqueue_many`` argument that is not a list of jobs get a ``SpikardTasksError``
at the call, the same on every backend (``inprocess://`` included) and over HTTP (422),
and nothing is written, not even the good jobs of a batch."""

from __future__ import annotations

import json
import urllib.parse
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from spikard_tasks import (
    ConfigError,
    SerializationError,
    SpikardTasksError,
    Task,
    TaskQueue,
)
from spikard_tasks.asgi import create_app

from .conftest import BACKENDS, _url
from .test_asgi import _drive

pytestmark = pytest.mark.timeout(60)

SURROGATE = "\ud800"


def _queue_on(url: str) -> TaskQueue:
    """A queue with a task ``echo``."""
    made = TaskQueue(url, queue=f"typed-{uuid.uuid4().hex[:8]}")

    @made.task(name="echo")
    def echo(*args: Any, **kwargs: Any) -> Any:
        return [args, kwargs]

    return made


@pytest.fixture(params=[*BACKENDS, "inprocess"])
def queue(request: pytest.FixtureRequest, tmp_path: Path) -> TaskQueue:
    """A queue on every backend and on ``inprocess://``."""
    return _queue_on(
        "inprocess://" if request.param == "inprocess" else _url(request.param, tmp_path)
    )


@pytest.fixture(params=BACKENDS)
def durable(request: pytest.FixtureRequest, tmp_path: Path) -> TaskQueue:
    """A queue on every durable backend (the HTTP app enqueues durable jobs)."""
    return _queue_on(_url(request.param, tmp_path))


def _total(queue: TaskQueue) -> int:
    return sum(queue.counts().values())


def _all_typed(exc: BaseException | None) -> bool:
    """No bare exception anywhere in the chain behind ``exc``."""
    while exc is not None:
        if not isinstance(exc, SpikardTasksError):
            return False
        exc = exc.__cause__ or exc.__context__
    return True


def _echo(queue: TaskQueue) -> Task[Any, Any]:
    return queue.tasks["echo"]


# Each way to enqueue one job, given (args, kwargs, options).
ENQUEUES: dict[str, Callable[[TaskQueue, list[Any], dict[str, Any], dict[str, Any]], object]] = {
    "delay": lambda q, a, k, o: _echo(q).delay(*a, **k) if not o else _echo(q).enqueue(a, k, **o),
    "enqueue": lambda q, a, k, o: q.enqueue("echo", a, k, **o),
    "by-name": lambda q, a, k, o: q.enqueue("echo", a, k, strict=False, **o),
    "batch": lambda q, a, k, o: q.enqueue_many(
        [{"task": "echo", "args": [1]}, {"task": "echo", "args": a, "kwargs": k, **o}]
    ),
}


@pytest.mark.parametrize("how", list(ENQUEUES))
@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ([SURROGATE], {}),
        ([{"deep": ["ok", f"a{SURROGATE}b"]}], {}),
        ([], {"name": SURROGATE}),
        ([], {SURROGATE: 1}),
        ([{SURROGATE: 1}], {}),
    ],
    ids=["arg", "nested-arg", "kwarg-value", "kwarg-name", "dict-key"],
)
def test_lone_surrogate_in_arguments_is_a_serialization_error(
    queue: TaskQueue, how: str, args: list[Any], kwargs: dict[str, Any]
) -> None:
    with pytest.raises(SerializationError, match="lone surrogate") as caught:
        ENQUEUES[how](queue, args, kwargs, {})
    assert _all_typed(caught.value), caught.value.__context__
    assert _total(queue) == 0, "nothing written"


NAMES = {
    "task name": lambda q, v: q.enqueue(v, strict=False),
    "task name (batch)": lambda q, v: q.enqueue_many([("echo", [1]), (v, [])], strict=False),
    "queue name": lambda q, v: q.enqueue("echo", queue=v),
    "queue name (batch)": lambda q, v: q.enqueue_many(
        [{"task": "echo"}, {"task": "echo", "queue": v}]
    ),
    "unique_key": lambda q, v: _echo(q).enqueue(unique_key=f"k{v}"),
    "unique_key (batch)": lambda q, v: q.enqueue_many(
        [{"task": "echo"}, {"task": "echo", "unique_key": v}]
    ),
}


@pytest.mark.parametrize("bad", [SURROGATE, "a\0b"], ids=["surrogate", "nul"])
@pytest.mark.parametrize("where", list(NAMES))
def test_bad_names_and_keys_are_config_errors(queue: TaskQueue, where: str, bad: str) -> None:
    with pytest.raises(ConfigError) as caught:
        NAMES[where](queue, bad)
    field = where.split(" (")[0]
    assert str(caught.value).startswith(field), caught.value
    assert _all_typed(caught.value), caught.value.__context__
    assert _total(queue) == 0, "nothing written"


@pytest.mark.parametrize("bad", [SURROGATE, "a\0b"], ids=["surrogate", "nul"])
def test_bad_names_in_config_registration_and_workers(queue: TaskQueue, bad: str) -> None:
    with pytest.raises(ConfigError, match=r"^queue name"):
        TaskQueue(queue.config.url, queue=bad)
    with pytest.raises(ConfigError, match=r"^task name"):
        queue.task(name=f"t{bad}")(lambda: None)
    with pytest.raises(ConfigError, match=r"^queue name"):
        queue.worker(queues=[bad])
    with pytest.raises(ConfigError, match=r"^url"):
        TaskQueue(f"memory://{bad}")


def test_enqueue_many_of_a_non_iterable_is_typed(queue: TaskQueue) -> None:
    with pytest.raises(ConfigError, match="iterable of jobs") as caught:
        queue.enqueue_many(5)  # type: ignore[arg-type]
    assert isinstance(caught.value, SpikardTasksError)
    with pytest.raises(ConfigError, match="not NoneType"):
        queue.enqueue_many(None)  # type: ignore[arg-type]
    assert _total(queue) == 0


async def test_aenqueue_many_of_a_non_iterable_is_typed(queue: TaskQueue) -> None:
    with pytest.raises(ConfigError, match="iterable of jobs"):
        await queue.aenqueue_many(5)  # type: ignore[arg-type]


# -- over HTTP: 422, never 500, nothing written ----------------------------------------

BODIES = {
    "arg": ("/echo", '{"args": ["\\ud800"]}'),
    "kwarg-name": ("/echo", '{"kwargs": {"\\udfff": 1}}'),
    "unique-key-nul": ("/echo", '{"options": {"unique_key": "k\\u0000"}}'),
    "unique-key-surrogate": ("/echo", '{"options": {"unique_key": "\\ud800"}}'),
    "batch-arg": ("/batch", '{"tasks": [{"task": "echo"}, {"task": "echo", "args": ["\\ud800"]}]}'),
    "batch-key-nul": (
        "/batch",
        '{"tasks": [{"task": "echo"}, {"task": "echo", "options": {"unique_key": "\\u0000"}}]}',
    ),
}


@pytest.mark.parametrize("case", list(BODIES))
def test_http_bad_text_answers_422(durable: TaskQueue, case: str) -> None:
    queue = durable
    path, body = BODIES[case]
    scope = {"type": "http", "method": "POST", "path": f"/tasks{path}", "headers": []}
    sent = _drive(create_app(queue), scope, [{"type": "http.request", "body": body.encode()}])
    assert sent[0]["status"] == 422, sent
    assert "error" in json.loads(sent[1]["body"])
    assert _total(queue) == 0, "nothing written"


@pytest.mark.parametrize(
    ("path", "body"),
    [("/echo%00", "{}"), ("/batch", '{"tasks": [{"task": "echo\\u0000"}]}')],
)
def test_http_task_names_with_nul_are_unknown(durable: TaskQueue, path: str, body: str) -> None:
    queue = durable
    scope = {"type": "http", "method": "POST", "path": f"/tasks{path}", "headers": []}
    sent = _drive(create_app(queue), scope, [{"type": "http.request", "body": body.encode()}])
    assert sent[0]["status"] == 404, sent
    assert _total(queue) == 0


@pytest.mark.parametrize("job_id", [SURROGATE, "a\0b"], ids=["surrogate", "nul"])
def test_job_ids_no_job_can_have_are_unknown(queue: TaskQueue, job_id: str) -> None:
    assert queue.get_job(job_id) is None
    assert queue.cancel(job_id) is False


@pytest.mark.parametrize("job_id", ["%ED%A0%80", "a%00b"], ids=["surrogate", "nul"])
def test_http_job_ids_no_job_can_have_answer_404(durable: TaskQueue, job_id: str) -> None:
    app = create_app(durable)
    for method in ("GET", "DELETE"):
        path = urllib.parse.unquote(f"/tasks/jobs/{job_id}", errors="surrogateescape")
        scope = {"type": "http", "method": method, "path": path, "headers": []}
        sent = _drive(app, scope, [{"type": "http.request", "body": b""}])
        assert sent[0]["status"] == 404, sent
