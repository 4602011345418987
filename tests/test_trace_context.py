"""The W3C trace context a job is enqueued with (``trace_context``, set by the library
when OpenTelemetry is active): stored with the job on every durable backend, seen by
the handler through ``current_job().trace_context`` (sync and ``async def``, on every
attempt) and by ``job.info().trace_context``; a malformed one is refused at the call
and nothing is written."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from spikard_tasks import ConfigError, JobStatus, TaskQueue, current_job
from spikard_tasks.context import JobContext

pytestmark = pytest.mark.timeout(60)

#: A ``traceparent`` followed by its ``tracestate``, as the library builds them.
TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01;congo=t61rcWkgMzE,rojo=00f0"
#: A ``traceparent`` alone.
PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
#: The longest trace context a job takes.
LONGEST = PARENT + ";" + "k" * (512 - len(PARENT) - 1)


def _total(queue: TaskQueue) -> int:
    return sum(queue.counts().values())


def test_the_handler_and_the_job_info_see_the_trace_context(queue: TaskQueue) -> None:
    seen: list[tuple[str, int, str | None]] = []

    @queue.task(name="traced-sync", max_attempts=2)
    def traced_sync(label: str) -> str | None:
        job = current_job()
        seen.append((label, job.attempt, job.trace_context))
        if label == "retried" and job.attempt == 1:
            raise RuntimeError("the first attempt fails")
        return job.trace_context

    @queue.task(name="traced-async")
    async def traced_async() -> str | None:
        return current_job().trace_context

    jobs = {
        "with tracestate": traced_sync.enqueue(["with tracestate"], trace_context=TRACE),
        "parent only": queue.enqueue("traced-sync", ["parent only"], trace_context=PARENT),
        "longest": traced_sync.enqueue(["longest"], trace_context=LONGEST),
        "none": traced_sync.delay("none"),
        "retried": traced_sync.enqueue(["retried"], trace_context=TRACE),
        "async": traced_async.enqueue(trace_context=TRACE),
    }
    many = queue.enqueue_many(
        [
            {"task": "traced-async", "trace_context": PARENT},
            {"task": "traced-async"},
        ]
    )
    expected = {
        "with tracestate": TRACE,
        "parent only": PARENT,
        "longest": LONGEST,
        "none": None,
        "retried": TRACE,
        "async": TRACE,
    }
    assert jobs["longest"].info().trace_context == LONGEST
    assert jobs["none"].info().trace_context is None

    with queue.worker(concurrency=2):
        for label, job in jobs.items():
            assert job.result(timeout=30) == expected[label], label
        assert [job.result(timeout=30) for job in many] == [PARENT, None]

    for label, job in jobs.items():
        info = job.info()
        assert info.status is JobStatus.SUCCEEDED
        assert info.trace_context == expected[label], label
    assert [job.info().trace_context for job in many] == [PARENT, None]
    # Both attempts of the retried job ran under the context it was enqueued with.
    assert sorted(a for label, a, t in seen if label == "retried" and t == TRACE) == [1, 2]
    # The bindings' record dict carries it as the engine stores it.
    record = queue.native.get(jobs["parent only"].id)
    assert record is not None and record["trace_context"] == PARENT
    none = queue.native.get(jobs["none"].id)
    assert none is not None and none["trace_context"] is None


@pytest.mark.parametrize(
    "bad",
    [
        PARENT + ";" + "k" * (512 - len(PARENT)),
        PARENT + "\0",
        PARENT + ";vendor=café",
        PARENT + ";lone=\ud800",
        42,
    ],
    ids=["one too long", "nul", "not ascii", "surrogate", "not a string"],
)
def test_a_bad_trace_context_is_refused_and_nothing_is_written(queue: TaskQueue, bad: Any) -> None:
    @queue.task(name="traced")
    def traced() -> None:
        return None

    with pytest.raises(ConfigError, match="trace_context"):
        traced.enqueue(trace_context=bad)
    with pytest.raises(ConfigError, match="trace_context"):
        queue.enqueue_many([{"task": "traced"}, {"task": "traced", "trace_context": bad}])
    assert _total(queue) == 0


@pytest.mark.parametrize(
    "bad",
    ["a" * 513, PARENT + "\0", PARENT + ";vendor=café"],
    ids=["too long", "nul", "not ascii"],
)
def test_the_engine_refuses_a_bad_trace_context_itself(queue: TaskQueue, bad: str) -> None:
    # Past the Python checks: the engine's own, with nothing of the batch written.
    jobs = [("traced", [], {}, {}), ("traced", [], {}, {"trace_context": bad})]
    with pytest.raises(ConfigError, match="trace_context must"):
        queue.native.enqueue(jobs)
    assert _total(queue) == 0
    [(job_id, created)] = queue.native.enqueue([("traced", [], {}, {"trace_context": TRACE})])
    assert created
    record = queue.native.get(job_id)
    assert record is not None and record["trace_context"] == TRACE


def test_a_job_context_built_without_one_has_none() -> None:
    class Sink:
        def set_progress(self, job_id: str, fraction: float, message: str | None = None) -> bool:
            return False

    context = JobContext(str(uuid.uuid4()), "t", "q", 1, 1, None, None, Sink())
    assert context.trace_context is None
