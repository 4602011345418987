"""Tests of the pure-Python in-process fast path, ``spikard_tasks.runtime.BackgroundRuntime``.

Real threads and event loops, no mocks. Handlers are held with events and barriers, never
with sleeps whose length decides the outcome.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from spikard_tasks.exceptions import (
    Cancel,
    JobCancelled,
    JobFailed,
    QueueFull,
    RuntimeShutDown,
    SpikardTasksError,
)
from spikard_tasks.runtime import BackgroundRuntime, DrainReport, RuntimeJob, RuntimeStats

pytestmark = pytest.mark.timeout(30)

# Upper bound for waits that normally take milliseconds; only reached when a test fails.
WAIT = 10.0
LOGGER = "spikard_tasks.runtime"


async def _until_set(event: threading.Event, limit: float = WAIT) -> None:
    """Poll a threading.Event from a coroutine without blocking the loop."""
    deadline = time.monotonic() + limit
    while not event.is_set():
        if time.monotonic() > deadline:
            raise AssertionError("event was never set")
        await asyncio.sleep(0.001)


def _until(predicate: Callable[[], bool], limit: float = WAIT) -> None:
    """Poll ``predicate()`` from a thread until it is true."""
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition never became true")
        time.sleep(0.001)


@pytest.fixture
def runtime() -> Iterator[BackgroundRuntime]:
    rt = BackgroundRuntime(max_queue_size=256, max_concurrent_tasks=4, drain_timeout=WAIT)
    try:
        yield rt
    finally:
        rt.shutdown()


# -- construction -------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, -1, True, 1.5, "3", None])
@pytest.mark.parametrize("param", ["max_queue_size", "max_concurrent_tasks"])
def test_rejects_bad_sizes(param: str, value: object) -> None:
    with pytest.raises(ValueError, match=param):
        BackgroundRuntime(**{param: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [-0.1, float("nan"), float("inf"), "1", True])
def test_rejects_bad_drain_timeout(value: object) -> None:
    with pytest.raises(ValueError, match="drain_timeout"):
        BackgroundRuntime(drain_timeout=value)  # type: ignore[arg-type]


def test_rejects_empty_name_and_accepts_defaults() -> None:
    with pytest.raises(ValueError, match="name"):
        BackgroundRuntime(name="")
    rt = BackgroundRuntime()
    assert (rt.max_queue_size, rt.max_concurrent_tasks, rt.drain_timeout) == (1024, 128, 30.0)
    assert rt.name == "spikard-tasks"
    assert BackgroundRuntime(drain_timeout=0).drain_timeout == 0.0
    assert not rt.started
    assert rt.shutdown() == DrainReport()


def test_starts_on_first_submit_and_uses_a_daemon_loop_thread() -> None:
    rt = BackgroundRuntime(name="lazy")
    assert not rt.started
    try:
        job = rt.submit(threading.current_thread)
        thread = job.result(WAIT)
        assert rt.started
        assert thread is not threading.current_thread()
        assert thread.name.startswith("lazy-sync")

        async def loop_thread() -> threading.Thread:
            return threading.current_thread()

        loop_thread_obj = rt.submit(loop_thread).result(WAIT)
        assert loop_thread_obj.name == "lazy-loop"
        assert loop_thread_obj.daemon
    finally:
        rt.shutdown()


# -- handlers, results, metadata ----------------------------------------------------


def add(a: int, b: int = 0) -> int:
    return a + b


async def amul(a: int, b: int = 1) -> int:
    await asyncio.sleep(0)
    return a * b


class AsyncCallable:
    async def __call__(self, x: int) -> str:
        await asyncio.sleep(0)
        return f"called {x}"


def test_sync_and_async_handlers_return_values(runtime: BackgroundRuntime) -> None:
    sync_job = runtime.submit(add, 2, b=3)
    async_job = runtime.submit(amul, 4, b=5)
    obj_job = runtime.submit(AsyncCallable(), 7)
    partial_job = runtime.submit(functools.partial(amul, 6), b=2)
    lambda_job = runtime.submit(lambda: "lam")
    assert sync_job.result(WAIT) == 5
    assert async_job.result(WAIT) == 20
    assert obj_job.result(WAIT) == "called 7"
    assert partial_job.result(WAIT) == 12
    assert lambda_job.result(WAIT) == "lam"
    for job in (sync_job, async_job, obj_job, partial_job, lambda_job):
        assert job.status() == "succeeded"
        assert job.done()
        assert job.exception is None and job.error is None and job.traceback is None


def test_async_handlers_run_on_the_loop_and_sync_ones_off_it(runtime: BackgroundRuntime) -> None:
    async def where_async() -> str:
        asyncio.get_running_loop()  # raises if there is no running loop
        return threading.current_thread().name

    def where_sync() -> bool:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return True
        return False

    assert runtime.submit(where_async).result(WAIT).endswith("-loop")
    assert runtime.submit(where_sync).result(WAIT) is True


def test_job_metadata(runtime: BackgroundRuntime) -> None:
    job = runtime.submit(add, 1)
    assert job.name == add.__qualname__
    assert job.request_id is None
    assert uuid.UUID(hex=job.id).version == 4
    assert job.id == uuid.UUID(hex=job.id).hex and job.id == job.id
    named = runtime.submit_with(amul, (3,), {"b": 3}, name="triple", request_id="req-42")
    assert (named.name, named.request_id) == ("triple", "req-42")
    assert named.result(WAIT) == 9
    assert runtime.submit_with(add, [1, 2]).result(WAIT) == 3
    assert runtime.submit_with(add, args=(1,)).name == add.__qualname__
    assert runtime.submit(functools.partial(add, 1)).name == add.__qualname__
    ids = {runtime.submit(add, i).id for i in range(100)}
    assert len(ids) == 100
    assert "triple" in repr(named) and named.id in repr(named)


def test_rejects_non_callables(runtime: BackgroundRuntime) -> None:
    with pytest.raises(TypeError):
        runtime.submit(42)  # type: ignore[call-overload]
    assert runtime.stats.queued == 0


def test_status_moves_pending_running_succeeded() -> None:
    gate = threading.Event()
    started = threading.Event()

    def hold() -> str:
        started.set()
        assert gate.wait(WAIT)
        return "held"

    with BackgroundRuntime(max_queue_size=4, max_concurrent_tasks=1) as rt:
        try:
            first = rt.submit(hold)
            second = rt.submit(add, 1, 1)
            assert started.wait(WAIT)
            assert first.status() == "running" and not first.done()
            assert second.status() == "pending" and not second.done()
            assert rt.stats == RuntimeStats(queued=1, running=1, succeeded=0, failed=0)
        finally:
            gate.set()
        assert first.result(WAIT) == "held"
        assert second.result(WAIT) == 2
        assert first.status() == second.status() == "succeeded"
        assert rt.stats == RuntimeStats(queued=0, running=0, succeeded=2, failed=0)


def test_stats_is_a_frozen_snapshot(runtime: BackgroundRuntime) -> None:
    stats = runtime.stats
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.queued = 5  # type: ignore[misc]


def test_result_times_out_with_builtin_timeout_error() -> None:
    gate = threading.Event()
    with BackgroundRuntime(max_concurrent_tasks=1) as rt:
        try:
            job = rt.submit(gate.wait, WAIT)
            with pytest.raises(TimeoutError):
                job.result(timeout=0.05)
            with pytest.raises(TimeoutError):
                job.result(timeout=0)
            assert job.status() in ("pending", "running")
        finally:
            gate.set()
        assert job.result(WAIT) is True


# -- failures -----------------------------------------------------------------------


def boom() -> None:
    raise ValueError("boom")


async def aboom() -> None:
    await asyncio.sleep(0)
    raise KeyError("missing")


def test_failing_handlers_are_logged_and_do_not_affect_others(
    runtime: BackgroundRuntime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger=LOGGER)
    bad = runtime.submit(boom)
    abad = runtime.submit(aboom)
    good = [runtime.submit(add, i, 1) for i in range(20)] + [runtime.submit(amul, 2, 2)]

    with pytest.raises(JobFailed) as info:
        bad.result(WAIT)
    err = info.value
    assert isinstance(err, SpikardTasksError)
    assert err.job_id == bad.id
    assert err.error == "ValueError: boom"
    assert "ValueError: boom" in str(err)
    assert err.traceback is not None
    assert err.traceback.startswith("Traceback (most recent call last)")
    assert 'raise ValueError("boom")' in err.traceback
    assert bad.status() == "failed"
    assert isinstance(bad.exception, ValueError)
    assert bad.error == "ValueError: boom" and bad.traceback == err.traceback

    with pytest.raises(JobFailed, match="KeyError: 'missing'"):
        abad.result(WAIT)
    assert [job.result(WAIT) for job in good] == [*range(1, 21), 4]

    records = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.ERROR]
    by_id = {job.id: [r for r in records if job.id in r.getMessage()] for job in (bad, abad)}
    for job_id, found in by_id.items():
        assert len(found) == 1, job_id
        assert found[0].exc_info is not None
    assert "Traceback (most recent call last)" in caplog.text
    assert 'raise ValueError("boom")' in caplog.text
    stats = runtime.stats
    assert (stats.failed, stats.succeeded, stats.queued, stats.running) == (2, 21, 0, 0)


@pytest.mark.parametrize("exc_type", [SystemExit, KeyboardInterrupt])
def test_system_exit_and_keyboard_interrupt_only_fail_the_job(
    exc_type: type[BaseException], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger=LOGGER)

    def sync_raiser() -> None:
        raise exc_type("bye")

    async def async_raiser() -> None:
        raise exc_type("bye")

    # One slot: if a worker or the loop died, the later jobs could not run.
    with BackgroundRuntime(max_concurrent_tasks=1) as rt:
        jobs = [rt.submit(sync_raiser), rt.submit(async_raiser)]
        after = [rt.submit(add, 1, 2), rt.submit(amul, 2, 3)]
        for job in jobs:
            with pytest.raises(JobFailed, match=exc_type.__name__):
                job.result(WAIT)
            assert job.status() == "failed"
            assert isinstance(job.exception, exc_type)
        assert [job.result(WAIT) for job in after] == [3, 6]
    assert rt.stats.failed == 2


def test_cancel_and_cancelled_error_end_the_job_cancelled() -> None:
    def cancel_me() -> None:
        raise Cancel("not needed")

    async def acancel_me() -> None:
        raise Cancel("not needed either")

    async def raise_cancelled() -> None:
        raise asyncio.CancelledError

    with BackgroundRuntime(max_concurrent_tasks=1) as rt:
        jobs = [rt.submit(cancel_me), rt.submit(acancel_me), rt.submit(raise_cancelled)]
        later = rt.submit(amul, 5, 5)
        for job in jobs:
            with pytest.raises(JobCancelled) as info:
                job.result(WAIT)
            assert info.value.job_id == job.id
            assert job.status() == "cancelled"
        assert jobs[0].error == "not needed"
        assert later.result(WAIT) == 25
    assert rt.stats == RuntimeStats(queued=0, running=0, succeeded=1, failed=0, cancelled=3)


# -- bound and concurrency ----------------------------------------------------------


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_bound_is_exactly_queue_plus_concurrency(kind: str) -> None:
    queue_size, concurrency = 3, 2
    total = queue_size + concurrency
    gates = [threading.Event() for _ in range(total + 1)]
    started = threading.Semaphore(0)

    def hold(i: int) -> int:
        started.release()
        assert gates[i].wait(WAIT)
        return i

    async def ahold(i: int) -> int:
        started.release()
        await _until_set(gates[i])
        return i

    fn = hold if kind == "sync" else ahold
    rt = BackgroundRuntime(max_queue_size=queue_size, max_concurrent_tasks=concurrency)
    try:
        jobs = [rt.submit(fn, i) for i in range(total)]
        with pytest.raises(QueueFull, match="full"):
            rt.submit(fn, 99)
        for _ in range(concurrency):
            assert started.acquire(timeout=WAIT)
        assert rt.stats == RuntimeStats(
            queued=queue_size, running=concurrency, succeeded=0, failed=0
        )
        with pytest.raises(QueueFull):
            rt.submit(fn, 99)

        gates[0].set()  # jobs start in submission order: job 0 is running
        assert jobs[0].result(WAIT) == 0
        extra = rt.submit(fn, total)  # one place freed up
        with pytest.raises(QueueFull):
            rt.submit(fn, 99)
        assert rt.stats.queued + rt.stats.running == total
    finally:
        for gate in gates:
            gate.set()
        report = rt.shutdown(WAIT)
    assert [job.result(WAIT) for job in jobs] == list(range(total))
    assert extra.result(WAIT) == total
    assert not report.timed_out
    assert rt.stats.succeeded == total + 1


def test_bound_is_exact_with_concurrent_submitters() -> None:
    queue_size, concurrency, threads, attempts = 20, 5, 8, 10
    release = threading.Event()
    barrier = threading.Barrier(threads, timeout=WAIT)
    accepted: list[RuntimeJob[bool]] = []
    rejected: list[QueueFull] = []
    lock = threading.Lock()
    rt = BackgroundRuntime(max_queue_size=queue_size, max_concurrent_tasks=concurrency)
    rt.start()

    def producer() -> None:
        barrier.wait()
        for _ in range(attempts):
            try:
                job = rt.submit(release.wait, WAIT)
            except QueueFull as exc:
                with lock:
                    rejected.append(exc)
            else:
                with lock:
                    accepted.append(job)

    workers = [threading.Thread(target=producer) for _ in range(threads)]
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(WAIT)
        assert len(accepted) == queue_size + concurrency
        assert len(rejected) == threads * attempts - (queue_size + concurrency)
    finally:
        release.set()
        rt.shutdown(WAIT)
    assert all(job.result(WAIT) is True for job in accepted)


def test_never_more_than_max_concurrent_handlers_run() -> None:
    concurrency = 4
    lock = threading.Lock()
    current = 0
    peak = 0

    def enter() -> None:
        nonlocal current, peak
        with lock:
            current += 1
            peak = max(peak, current)

    def leave() -> None:
        nonlocal current
        with lock:
            current -= 1

    def sync_job(i: int) -> int:
        enter()
        time.sleep(0.0005)
        leave()
        return i

    async def async_job(i: int) -> int:
        enter()
        await asyncio.sleep(0.0005)
        leave()
        return i

    with BackgroundRuntime(max_queue_size=1000, max_concurrent_tasks=concurrency) as rt:
        jobs = [rt.submit(sync_job if i % 2 else async_job, i) for i in range(600)]
        assert [job.result(WAIT) for job in jobs] == list(range(600))
    assert 1 <= peak <= concurrency


def test_max_concurrent_handlers_do_run_together_sync_and_async() -> None:
    concurrency = 4
    arrived = 0
    lock = threading.Lock()
    release = threading.Event()

    def arrive() -> None:
        nonlocal arrived
        with lock:
            arrived += 1

    def sync_job() -> str:
        arrive()
        assert release.wait(WAIT)
        return "sync"

    async def async_job() -> str:
        arrive()
        await _until_set(release)
        return "async"

    with BackgroundRuntime(max_queue_size=10, max_concurrent_tasks=concurrency) as rt:
        try:
            jobs = [rt.submit(sync_job if i % 2 else async_job) for i in range(concurrency + 1)]
            _until(lambda: arrived == concurrency)  # all slots busy at once
            assert rt.stats.running == concurrency
            assert jobs[-1].status() == "pending"  # the extra job has to wait
            assert arrived == concurrency
        finally:
            release.set()
        assert [job.result(WAIT) for job in jobs] == ["async", "sync"] * 2 + ["async"]


# -- submitting from anywhere -------------------------------------------------------


def test_submit_from_inside_handlers(runtime: BackgroundRuntime) -> None:
    def sync_parent(x: int) -> int:
        child = runtime.submit(amul, x, 10)  # async child from a pool thread
        return child.result(WAIT) + 1

    async def async_parent(x: int) -> int:
        child = runtime.submit(add, x, 10)  # sync child from the loop thread
        grandchild = runtime.submit(amul, x, 2)  # async child from the loop thread
        return await child.wait(WAIT) + await grandchild.wait(WAIT)

    assert runtime.submit(sync_parent, 3).result(WAIT) == 31
    assert runtime.submit(async_parent, 3).result(WAIT) == 19


def test_result_on_the_loop_thread_is_refused(runtime: BackgroundRuntime) -> None:
    gate = threading.Event()

    async def parent() -> None:
        child = runtime.submit(gate.wait, WAIT)
        child.result(WAIT)  # would block the loop: refused

    try:
        with pytest.raises(JobFailed, match=r"RuntimeError: .*await job.wait"):
            runtime.submit(parent).result(WAIT)
    finally:
        gate.set()


def test_shutdown_from_a_handler_is_refused(runtime: BackgroundRuntime) -> None:
    async def async_stopper() -> None:
        runtime.shutdown()

    with pytest.raises(JobFailed, match="RuntimeError"):
        runtime.submit(runtime.shutdown).result(WAIT)
    with pytest.raises(JobFailed, match="RuntimeError"):
        runtime.submit(async_stopper).result(WAIT)
    assert not runtime.closed
    assert runtime.submit(add, 1, 1).result(WAIT) == 2


def test_wait_from_another_thread_s_event_loop(runtime: BackgroundRuntime) -> None:
    gate = threading.Event()
    job = runtime.submit(amul, 7, 6)
    slow = runtime.submit(gate.wait, WAIT)

    async def waiter() -> tuple[int, bool]:
        first = await job.wait(WAIT)
        gate.set()
        return first, await slow.wait(WAIT)

    results: list[tuple[int, bool]] = []
    thread = threading.Thread(target=lambda: results.append(asyncio.run(waiter())))
    thread.start()
    thread.join(WAIT)
    gate.set()
    assert results == [(42, True)]


# -- asyncio programs ---------------------------------------------------------------


@pytest.mark.asyncio
async def test_inside_a_running_event_loop() -> None:
    rt = BackgroundRuntime(max_queue_size=100, max_concurrent_tasks=4)
    jobs = [rt.submit(amul, i, 2) for i in range(50)]
    assert [await job.wait(WAIT) for job in jobs] == [i * 2 for i in range(50)]
    assert await rt.submit(add, 1, 2).wait(WAIT) == 3
    with pytest.raises(JobFailed, match="ValueError: boom"):
        await rt.submit(boom).wait(WAIT)

    gate = threading.Event()
    held = rt.submit(gate.wait, WAIT)
    with pytest.raises(TimeoutError):
        await held.wait(timeout=0.05)
    gate.set()
    assert await held.wait(WAIT) is True

    report = await rt.ashutdown()
    assert report == DrainReport()  # nothing was left to drain
    with pytest.raises(RuntimeShutDown):
        rt.submit(add, 1)
    assert await rt.ashutdown() == DrainReport()


@pytest.mark.asyncio
async def test_async_context_manager() -> None:
    async with BackgroundRuntime(max_concurrent_tasks=2) as rt:
        job = rt.submit(amul, 3, 3)
        assert await job.wait(WAIT) == 9
        assert rt.started
    assert rt.closed


@pytest.mark.asyncio
async def test_ashutdown_drains_and_reports() -> None:
    rt = BackgroundRuntime(max_queue_size=10, max_concurrent_tasks=2)

    async def until_closed(i: int) -> int:
        deadline = time.monotonic() + WAIT
        while not rt.closed and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        return i

    jobs = [rt.submit(until_closed, i) for i in range(6)]
    report = await rt.ashutdown(WAIT)
    assert report == DrainReport(completed=6, unfinished=0, unfinished_jobs=[], timed_out=False)
    assert [await job.wait(WAIT) for job in jobs] == list(range(6))


# -- shutdown -----------------------------------------------------------------------


def test_submit_after_shutdown_raises_runtime_shut_down() -> None:
    rt = BackgroundRuntime(name="closing")
    assert rt.submit(add, 1).result(WAIT) == 1
    rt.shutdown()
    assert rt.closed
    with pytest.raises(RuntimeShutDown, match="'closing' has shut down") as info:
        rt.submit(add, 1)
    assert isinstance(info.value, SpikardTasksError)
    with pytest.raises(RuntimeShutDown):
        rt.submit_with(add, (1,))
    with pytest.raises(RuntimeShutDown):
        rt.start()


def test_shutdown_before_start_and_twice() -> None:
    rt = BackgroundRuntime()
    assert rt.shutdown() == DrainReport(0, 0, [], False)
    with pytest.raises(RuntimeShutDown):
        rt.submit(add, 1)
    assert not rt.started
    with pytest.raises(ValueError):
        BackgroundRuntime().shutdown(timeout=-1)


def test_context_manager_drains_on_exit() -> None:
    with BackgroundRuntime(max_concurrent_tasks=2) as rt:
        assert rt.started
        jobs = [rt.submit(add, i, i) for i in range(20)] + [rt.submit(amul, 3, 4)]
    assert rt.closed
    assert all(job.done() for job in jobs)
    assert [job.result(0) for job in jobs] == [i * 2 for i in range(20)] + [12]
    with pytest.raises(RuntimeShutDown):
        rt.submit(add, 1)


def test_shutdown_runs_queued_and_in_flight_work() -> None:
    rt = BackgroundRuntime(max_queue_size=50, max_concurrent_tasks=2)

    def until_closed(i: int) -> int:
        _until(lambda: rt.closed)
        return i

    async def auntil_closed(i: int) -> int:
        deadline = time.monotonic() + WAIT
        while not rt.closed and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        return i

    # None of these can finish before shutdown begins, so all finish during the drain.
    jobs = [rt.submit(until_closed if i % 2 else auntil_closed, i) for i in range(10)]
    report = rt.shutdown(timeout=WAIT)
    assert report == DrainReport(completed=10, unfinished=0, unfinished_jobs=[], timed_out=False)
    assert [job.result(0) for job in jobs] == list(range(10))
    assert rt.shutdown() == DrainReport()


def test_drain_timeout_reports_a_blocked_sync_job(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    rt = BackgroundRuntime(max_queue_size=10, max_concurrent_tasks=2)
    release = threading.Event()
    blocker_started = threading.Event()

    def blocker() -> str:
        blocker_started.set()
        assert release.wait(WAIT)
        return "late"

    def until_closed(i: int) -> int:
        _until(lambda: rt.closed)
        return i

    stuck = rt.submit_with(blocker, name="blocker")
    assert blocker_started.wait(WAIT)
    quick = [rt.submit(until_closed, i) for i in range(5)]
    try:
        # The quick jobs need milliseconds; the blocker outlives any timeout.
        report = rt.shutdown(timeout=2.0)
    finally:
        release.set()
    assert report.timed_out is True
    assert report.unfinished == 1
    assert report.unfinished_jobs == [f"blocker ({stuck.id})"]
    assert report.completed == 5
    assert [job.result(0) for job in quick] == list(range(5))
    # A sync handler cannot be interrupted: it finishes on its thread after the report.
    assert stuck.result(WAIT) == "late"
    assert stuck.status() == "succeeded"
    assert "drain timed out" in caplog.text and stuck.id in caplog.text


def test_drain_timeout_cancels_async_and_queued_leftovers() -> None:
    rt = BackgroundRuntime(max_queue_size=10, max_concurrent_tasks=1)
    release = threading.Event()
    started: list[int] = []
    cleaned_up = threading.Event()

    async def forever() -> None:
        started.append(-1)
        try:
            await _until_set(release, limit=60)
        finally:
            cleaned_up.set()

    def never_started(i: int) -> int:
        started.append(i)
        return i

    stuck = rt.submit_with(forever, name="forever")
    _until(lambda: stuck.status() == "running")
    queued = [rt.submit(never_started, i) for i in range(3)]
    try:
        report = rt.shutdown(timeout=0.1)
    finally:
        release.set()
    assert report.timed_out
    assert report.completed == 0
    assert report.unfinished == 4
    assert sorted(report.unfinished_jobs) == sorted(
        [f"forever ({stuck.id})"] + [f"{never_started.__qualname__} ({j.id})" for j in queued]
    )
    assert cleaned_up.wait(WAIT)
    assert started == [-1]
    leftovers: list[RuntimeJob[Any]] = [stuck, *queued]
    for job in leftovers:
        assert job.status() == "cancelled"
        with pytest.raises(JobCancelled):
            job.result(WAIT)
    assert rt.stats.cancelled == 4
    assert rt.stats.queued == rt.stats.running == 0


def test_waiters_of_queued_jobs_are_released_by_a_timed_out_drain() -> None:
    rt = BackgroundRuntime(max_queue_size=5, max_concurrent_tasks=1)
    release = threading.Event()
    rt.submit(release.wait, WAIT)
    queued = rt.submit(add, 1, 1)
    outcome: list[BaseException] = []

    def wait_queued() -> None:
        try:
            queued.result(WAIT)
        except BaseException as exc:
            outcome.append(exc)

    waiter = threading.Thread(target=wait_queued)
    waiter.start()
    try:
        report = rt.shutdown(timeout=0.05)
    finally:
        release.set()
    waiter.join(WAIT)
    assert report.timed_out and report.unfinished == 2
    assert len(outcome) == 1 and isinstance(outcome[0], JobCancelled)


def test_interpreter_exit_does_not_hang() -> None:
    code = textwrap.dedent(
        """
        import asyncio
        from spikard_tasks.runtime import BackgroundRuntime

        rt = BackgroundRuntime(drain_timeout=0.2)

        async def forever():
            await asyncio.Event().wait()

        rt.submit(forever)
        assert rt.submit(lambda: 1).result(10) == 1
        print("exiting", flush=True)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "exiting"
    assert "drain timed out" in proc.stderr  # the atexit drain ran and gave up in time


@pytest.mark.slow
def test_shutdown_gives_up_on_a_loop_blocked_by_a_handler(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger=LOGGER)
    rt = BackgroundRuntime(max_queue_size=5, max_concurrent_tasks=2)
    release = threading.Event()
    hogging = threading.Event()

    async def hog() -> str:
        hogging.set()
        release.wait(WAIT * 2)  # blocks the runtime's loop: a misbehaving handler
        return "done"

    stuck = rt.submit_with(hog, name="hog")
    assert hogging.wait(WAIT)
    queued = rt.submit(add, 1, 1)
    try:
        report = rt.shutdown(timeout=0.1)  # returns after the timeout plus a fixed grace
    finally:
        release.set()
    assert report.timed_out
    assert report.unfinished == 2
    assert set(report.unfinished_jobs) == {f"hog ({stuck.id})", f"add ({queued.id})"}
    assert queued.status() == "cancelled"
    assert "unresponsive" in caplog.text
    assert stuck.result(WAIT) == "done"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_does_not_wait_for_the_parent_s_runtime() -> None:
    code = textwrap.dedent(
        """
        import os, sys
        from spikard_tasks.runtime import BackgroundRuntime

        rt = BackgroundRuntime(drain_timeout=60)
        assert rt.submit(lambda: 1).result(10) == 1
        pid = os.fork()
        if pid == 0:
            report = rt.shutdown()  # the loop thread does not exist in the child
            assert report.unfinished == 0, report
            sys.exit(0)  # atexit must not wait either
        _, status = os.waitpid(pid, 0)
        rt.shutdown()
        print("child", os.waitstatus_to_exitcode(status), flush=True)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", "-c", code],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "child 0"


def test_many_producers_mixed_jobs_all_complete() -> None:
    producers, per_producer = 4, 2000
    rt = BackgroundRuntime(max_queue_size=8, max_concurrent_tasks=3)
    results: list[list[RuntimeJob[int]]] = [[] for _ in range(producers)]
    barrier = threading.Barrier(producers, timeout=WAIT)

    async def async_echo(i: int) -> int:
        if i % 5 == 0:
            await asyncio.sleep(0)
        return i

    def produce(k: int) -> None:
        barrier.wait()
        for i in range(per_producer):
            fn = async_echo if (i + k) % 3 else add
            while True:
                try:
                    results[k].append(rt.submit(fn, i))
                    break
                except QueueFull:
                    time.sleep(0)  # back off and retry: the bound never blocks

    threads = [threading.Thread(target=produce, args=(k,)) for k in range(producers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 2)
    try:
        for jobs in results:
            assert [job.result(WAIT) for job in jobs] == list(range(per_producer))
    finally:
        report = rt.shutdown(WAIT)
    assert not report.timed_out
    assert rt.stats == RuntimeStats(
        queued=0, running=0, succeeded=producers * per_producer, failed=0
    )
