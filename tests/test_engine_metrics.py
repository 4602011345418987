"""The engine's job metrics (``_native.metrics_text()``), counted by a real worker on
every backend and read with the Prometheus client's own parser."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families

from spikard_tasks import Cancel, JobCancelled, JobFailed, TaskQueue, _native

pytestmark = pytest.mark.timeout(60)

#: (sample name, labels) -> value, for every sample of the process' metrics.
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape() -> tuple[dict[str, str], Samples]:
    """The metric families' types by name, and every sample, as parsed by
    ``prometheus_client`` (which refuses malformed text)."""
    types: dict[str, str] = {}
    samples: Samples = {}
    for family in text_string_to_metric_families(_native.metrics_text()):
        types[family.name] = family.type
        for s in family.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in samples, f"duplicate sample {key}"
            samples[key] = s.value
    return types, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def buckets(samples: Samples, name: str, **labels: str) -> list[tuple[float, float]]:
    """(upper bound, count) of a histogram's buckets, by bound."""
    found = [
        (float(dict(key)["le"]), v)
        for (sample, key), v in samples.items()
        if sample == f"{name}_bucket" and {k: lv for k, lv in key if k != "le"} == labels
    ]
    return sorted(found)


def test_a_worker_counts_each_outcome_of_each_task(
    make_queue: Callable[..., TaskQueue],
) -> None:
    queue = make_queue()
    tag = uuid.uuid4().hex[:10]
    ok_name, bad_name, cancel_name = f"ok-{tag}", f"bad-{tag}", f"cancel-{tag}"
    n_ok, n_bad, n_cancel, bad_attempts = 4, 2, 3, 3

    @queue.task(name=ok_name)
    def ok(x: int) -> int:
        return x

    @queue.task(name=bad_name, max_attempts=bad_attempts)
    def bad() -> None:
        raise ValueError("always")

    @queue.task(name=cancel_name, max_attempts=5)
    def refuse() -> None:
        raise Cancel("not worth it")

    jobs = [ok.delay(i) for i in range(n_ok - 1)]
    # One more, delayed and with a unique key: the second enqueue is a unique-key hit
    # and creates nothing, so it is not counted.
    keyed = ok.enqueue(args=[99], unique_key=f"k-{tag}", delay=0.05)
    assert ok.enqueue(args=[99], unique_key=f"k-{tag}").id == keyed.id
    jobs.append(keyed)
    failing = [bad.delay() for _ in range(n_bad)]
    cancelled = [refuse.delay() for _ in range(n_cancel)]

    with queue.worker(concurrency=3):
        assert sorted(j.result(timeout=30) for j in jobs) == [0, 1, 2, 99]
        for j in failing:
            with pytest.raises(JobFailed):
                j.result(timeout=30)
        for j in cancelled:
            with pytest.raises(JobCancelled):
                j.result(timeout=30)

    types, samples = scrape()
    assert types["spikard_tasks_jobs_enqueued"] == "counter"
    assert types["spikard_tasks_job_duration_seconds"] == "histogram"
    assert types["spikard_tasks_job_start_latency_seconds"] == "histogram"
    q = queue.config.queue
    expected = {
        # task: (enqueued, started, succeeded, retried, failed, cancelled)
        ok_name: (n_ok, n_ok, n_ok, 0, 0, 0),
        bad_name: (n_bad, n_bad * bad_attempts, 0, n_bad * (bad_attempts - 1), n_bad, 0),
        cancel_name: (n_cancel, n_cancel, 0, 0, 0, n_cancel),
    }
    kinds = ("enqueued", "started", "succeeded", "retried", "failed", "cancelled")
    for task, counts in expected.items():
        got = tuple(
            value(samples, f"spikard_tasks_jobs_{kind}_total", task=task, queue=q) for kind in kinds
        )
        assert got == counts, task

        # One duration per attempt; buckets cumulative, +Inf the count.
        name = "spikard_tasks_job_duration_seconds"
        attempts = counts[1]
        assert value(samples, f"{name}_count", task=task, queue=q) == attempts
        assert value(samples, f"{name}_sum", task=task, queue=q) >= 0
        found = buckets(samples, name, task=task, queue=q)
        assert len(found) == 17
        counts_by_bound = [c for _, c in found]
        assert counts_by_bound == sorted(counts_by_bound), "cumulative"
        assert found[-1] == (float("inf"), attempts)

    # Every attempt of the queue has a start latency (its due time is known on every
    # backend, retries included).
    all_attempts = sum(c[1] for c in expected.values())
    latency = "spikard_tasks_job_start_latency_seconds"
    assert value(samples, f"{latency}_count", queue=q) == all_attempts
    found = buckets(samples, latency, queue=q)
    assert [c for _, c in found] == sorted(c for _, c in found)
    assert found[-1] == (float("inf"), all_attempts)


def test_a_task_name_with_quotes_and_newlines_reads_back_unchanged(
    make_queue: Callable[..., TaskQueue],
) -> None:
    queue = make_queue()
    name = f'odd "name" \\ with\nnewline {uuid.uuid4().hex[:8]}'

    @queue.task(name=name)
    def odd() -> str:
        return "done"

    job = odd.delay()
    with queue.worker(concurrency=1):
        assert job.result(timeout=30) == "done"
    _, samples = scrape()
    q = queue.config.queue
    assert value(samples, "spikard_tasks_jobs_succeeded_total", task=name, queue=q) == 1
    assert value(samples, "spikard_tasks_jobs_enqueued_total", task=name, queue=q) == 1
