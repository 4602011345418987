"""``BackgroundRuntime.submit_with`` options: priority, delay, timeout, retry policy, and
``RuntimeJob.cancel``. Real threads and loops, no mocks."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from spikard_tasks import BackgroundRuntime, JobCancelled, JobFailed, Retry, RuntimeStats

pytestmark = pytest.mark.timeout(30)

WAIT = 10.0


def until(predicate: Callable[[], bool], limit: float = WAIT) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition never became true")
        time.sleep(0.001)


@pytest.fixture
def one_slot() -> Iterator[BackgroundRuntime]:
    rt = BackgroundRuntime(max_queue_size=32, max_concurrent_tasks=1, drain_timeout=WAIT)
    try:
        yield rt
    finally:
        rt.shutdown()


def test_priority_then_fifo(one_slot: BackgroundRuntime) -> None:
    gate = threading.Event()
    order: list[str] = []
    blocker = one_slot.submit(gate.wait, WAIT)
    until(lambda: blocker.status() == "running")
    for name, priority in [("a", 0), ("b", 5), ("c", 0), ("d", 5), ("e", -2), ("f", 9)]:
        one_slot.submit_with(order.append, (name,), priority=priority)
    gate.set()
    until(lambda: len(order) == 6)
    assert order == ["f", "b", "d", "a", "c", "e"]


def test_delay_is_scheduled_and_never_early(one_slot: BackgroundRuntime) -> None:
    t0 = time.time()
    job = one_slot.submit_with(time.time, delay=0.3)
    assert job.status() == "scheduled"
    assert one_slot.stats.scheduled == 1
    assert job.run_at is not None and job.run_at >= t0 + 0.3
    assert job.result(WAIT) >= t0 + 0.3
    assert one_slot.stats.scheduled == 0


def test_timeouts(one_slot: BackgroundRuntime) -> None:
    async def slow() -> None:
        await asyncio.sleep(WAIT)

    async def raises_timeout() -> None:
        raise TimeoutError("my own")

    with pytest.raises(JobFailed, match=r"attempt 1 ran past its 0\.1s timeout"):
        one_slot.submit_with(slow, timeout=0.1).result(WAIT)
    with pytest.raises(JobFailed, match="my own"):
        one_slot.submit_with(raises_timeout, timeout=5).result(WAIT)
    with pytest.raises(JobFailed, match=r"ran past its 0\.05s timeout"):
        one_slot.submit_with(time.sleep, (0.2,), timeout=0.05).result(WAIT)
    assert one_slot.submit_with(lambda: 7, timeout=1).result(WAIT) == 7


def test_retry_policy(one_slot: BackgroundRuntime) -> None:
    calls: list[int] = []

    def flaky() -> int:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("one")
        if len(calls) == 2:
            raise Retry(after=0.05, reason="two")
        return len(calls)

    seen: list[tuple[str, int]] = []

    def policy(exc: BaseException, attempt: int) -> float | None:
        seen.append((type(exc).__name__, attempt))
        return exc.after if isinstance(exc, Retry) else 0.01

    job = one_slot.submit_with(flaky, retry=policy)
    assert job.result(WAIT) == 3
    assert seen == [("ConnectionError", 1), ("Retry", 2)]
    assert job.attempts == 3
    assert [e.error for e in job.errors] == ["ConnectionError: one", "Retry: two"]
    assert one_slot.stats.retried == 2

    def always() -> None:
        raise ValueError("no")

    failed = one_slot.submit_with(always, retry=lambda exc, n: 0.0 if n < 3 else None)
    with pytest.raises(JobFailed, match="ValueError: no"):
        failed.result(WAIT)
    assert failed.attempts == 3 and len(failed.errors) == 3


def test_cancel_in_every_state(one_slot: BackgroundRuntime) -> None:
    gate = threading.Event()
    running = one_slot.submit(gate.wait, WAIT)
    until(lambda: running.status() == "running")
    queued = one_slot.submit(time.time)
    scheduled = one_slot.submit_with(time.time, delay=WAIT)
    assert queued.cancel() and scheduled.cancel()
    assert queued.status() == scheduled.status() == "cancelled"
    assert not queued.cancel()
    with pytest.raises(JobCancelled, match="cancelled by request"):
        scheduled.result(0)
    assert running.cancel() is True, "a running sync job is asked to stop"
    gate.set()
    assert running.result(WAIT) is True, "and keeps its result when it returns"

    async def forever() -> None:
        await asyncio.sleep(WAIT)

    async def fine() -> str:
        return "fine"

    asleep = one_slot.submit(forever)
    until(lambda: asleep.status() == "running")
    assert asleep.cancel()
    with pytest.raises(JobCancelled):
        asleep.result(WAIT)
    assert one_slot.submit(fine).result(WAIT) == "fine", "the worker survived the cancel"


def test_drain_runs_what_is_due_and_cancels_what_is_not() -> None:
    rt = BackgroundRuntime(max_queue_size=8, max_concurrent_tasks=2, drain_timeout=WAIT)
    soon = rt.submit_with(time.time, delay=0.2)
    late = rt.submit_with(time.time, delay=60)
    report = rt.shutdown(timeout=2.0)
    assert soon.status() == "succeeded"
    assert late.status() == "cancelled"
    assert report.unfinished == 1 and not report.timed_out
    assert report.unfinished_jobs == [f"time ({late.id})"]
    assert rt.stats == RuntimeStats(queued=0, running=0, succeeded=1, failed=0, cancelled=1)


def test_bad_options_are_refused(one_slot: BackgroundRuntime) -> None:
    with pytest.raises(ValueError, match="priority"):
        one_slot.submit_with(time.time, priority=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="delay"):
        one_slot.submit_with(time.time, delay=-1)
    with pytest.raises(ValueError, match="timeout"):
        one_slot.submit_with(time.time, timeout=float("inf"))
    with pytest.raises(TypeError, match="retry"):
        one_slot.submit_with(time.time, retry=3)  # type: ignore[arg-type]
