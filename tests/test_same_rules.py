"""The fast path (``inprocess://``) and the durable engine take the same decisions for the
same input: configuration and option checks, the JSON rules of arguments and results,
and the retry decision after each attempt. The durable side runs through the engine's
own code (``memory://``; ``eager`` claims and runs jobs with an engine worker)."""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from spikard_tasks import Backoff, Cancel, JobFailed, Retry, TaskQueue
from spikard_tasks.exceptions import JobCancelled, SpikardTasksError
from spikard_tasks.inprocess import backoff_delay, retry_policy
from spikard_tasks.testing import eager

pytestmark = pytest.mark.timeout(300)

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
NO_BACKOFF = Backoff(initial=0.0, max=0.0, jitter=0.0)

_calls: dict[str, int] = {}
_calls_lock = threading.Lock()
_tokens = itertools.count()


def _register(queue: TaskQueue) -> None:
    @queue.task(name="echo")
    def echo(*args: Any, **kwargs: Any) -> Any:
        return [list(args), kwargs]

    @queue.task(name="scripted")
    def scripted(token: str, script: list[str]) -> str:
        with _calls_lock:
            attempt = _calls[token] = _calls.get(token, 0) + 1
        step = script[min(attempt, len(script)) - 1]
        if step == "error":
            raise ValueError(f"attempt {attempt}")
        if step == "retry":
            raise Retry(after=0)
        if step == "cancel":
            raise Cancel("scripted")
        if step == "not-json":
            return {"bad": {1, 2}}  # type: ignore[return-value]
        return "ok"


@pytest.fixture
def both() -> Iterator[tuple[TaskQueue, TaskQueue]]:
    fast = TaskQueue("inprocess://", queue="rules", backoff=NO_BACKOFF, max_attempts=3)
    durable = TaskQueue("memory://", queue="rules", backoff=NO_BACKOFF, max_attempts=3)
    _register(fast)
    _register(durable)
    with eager(durable):
        yield fast, durable
    fast.close()
    durable.close()


@pytest.fixture
def stores() -> Iterator[tuple[TaskQueue, TaskQueue]]:
    """Both paths with nothing running their delayed jobs to the end: the fast path drops
    them at close (drain_timeout=0), the durable store has no worker."""
    fast = TaskQueue("inprocess://?drain_timeout=0&max_queue_size=100000", queue="rules")
    durable = TaskQueue("memory://", queue="rules")
    _register(fast)
    _register(durable)
    yield fast, durable
    fast.close()
    durable.close()


def _outcome(call: Any) -> tuple[str, Any]:
    """("ok", value) or ("error", exception class name) of a call."""
    try:
        return "ok", call()
    except SpikardTasksError as exc:
        return "error", type(exc).__name__


# -- configuration and options ------------------------------------------------------

numbers = st.one_of(
    st.integers(min_value=-(2**65), max_value=2**65),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
)
texts = st.one_of(st.text(max_size=5), st.text(min_size=198, max_size=202), st.just("a\x00b"))


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "concurrency": numbers,
            "max_attempts": numbers,
            "default_priority": numbers,
            "drain_timeout": numbers,
            "queue": texts,
            "backoff": st.fixed_dictionaries(
                {}, optional={k: numbers for k in ("initial", "max", "multiplier", "jitter")}
            ),
        },
    )
)
@settings(max_examples=150, deadline=None)
def test_a_configuration_is_accepted_by_both_paths_or_by_neither(options: dict[str, Any]) -> None:
    def make(url: str) -> Any:
        def build() -> None:
            queue = TaskQueue(url, **options)
            queue.open()
            queue.close()

        return build

    fast = _outcome(make("inprocess://"))
    durable = _outcome(make("memory://"))
    assert fast == durable


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "priority": numbers,
            "delay": st.one_of(numbers, st.timedeltas(max_value=dt.timedelta(days=1))),
            "max_attempts": numbers,
            "timeout": numbers,
            "unique_key": texts,
            "queue": texts,
        },
    )
)
@SETTINGS
def test_enqueue_options_are_accepted_by_both_paths_or_by_neither(
    stores: tuple[TaskQueue, TaskQueue], options: dict[str, Any]
) -> None:
    fast, durable = stores
    got = [
        _outcome(lambda q=q: q.enqueue("echo", [1], **options).id is not None)
        for q in (fast, durable)
    ]
    assert got[0] == got[1]


# -- JSON -----------------------------------------------------------------------------

json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.binary(max_size=3),
    st.just("\ud800"),
)
values = st.recursive(
    json_leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner, inner),
        st.dictionaries(st.one_of(st.text(max_size=4), st.integers(0, 3)), inner, max_size=3),
        st.frozensets(st.integers(0, 3), max_size=2),
    ),
    max_leaves=6,
)


@given(args=st.lists(values, max_size=3), kwargs=st.dictionaries(st.text(max_size=4), values))
@example(args=[7.813841175890128e-255, 5e-324, 1.7976931348623157e308, 0.1], kwargs={})
@SETTINGS
def test_arguments_follow_the_same_json_rules(
    both: tuple[TaskQueue, TaskQueue], args: list[Any], kwargs: dict[str, Any]
) -> None:
    fast, durable = both
    got = [
        _outcome(lambda q=q: q.enqueue("echo", args, kwargs).result(30)) for q in (fast, durable)
    ]
    assert got[0] == got[1]


# -- the retry decision ---------------------------------------------------------------

steps = st.sampled_from(["ok", "error", "retry", "cancel", "not-json"])


def _run_script(queue: TaskQueue, script: list[str], max_attempts: int) -> tuple[Any, ...]:
    token = f"t{next(_tokens)}"
    job = queue.enqueue("scripted", [token, script], max_attempts=max_attempts)
    with contextlib.suppress(JobFailed, JobCancelled):
        job.result(30)
    info = job.info()
    kinds = [e.error.split(":", 1)[0] for e in info.errors]
    return info.status, info.attempts, kinds, _calls[token]


@given(script=st.lists(steps, min_size=1, max_size=5), max_attempts=st.integers(1, 4))
@SETTINGS
def test_both_paths_retry_and_fail_alike(
    both: tuple[TaskQueue, TaskQueue], script: list[str], max_attempts: int
) -> None:
    fast, durable = both
    assert _run_script(fast, script, max_attempts) == _run_script(durable, script, max_attempts)


@given(
    initial=st.floats(0, 100),
    maximum=st.floats(0, 1000),
    multiplier=st.floats(1, 1000),
    failed=st.integers(1, 200),
)
@settings(max_examples=200, deadline=None)
def test_the_fast_path_backoff_is_the_engines_formula(
    initial: float, maximum: float, multiplier: float, failed: int
) -> None:
    """Without jitter the delay is the documented formula; with jitter it stays within
    ``± jitter`` of it and under ``max``."""
    backoff = Backoff(initial=initial, max=maximum, multiplier=multiplier, jitter=0.0)
    try:
        expected = min(initial * multiplier ** min(failed - 1, 64), maximum)
    except OverflowError:
        expected = maximum
    assert backoff_delay(backoff, failed) == pytest.approx(expected, rel=1e-9, abs=1e-12)
    jittered = Backoff(initial=initial, max=maximum, multiplier=multiplier, jitter=0.5)
    delay = backoff_delay(jittered, failed)
    assert expected * 0.5 - 1e-9 <= delay <= min(expected * 1.5, maximum) + 1e-9
    policy = retry_policy(failed + 1, backoff)
    assert policy is not None
    assert policy(ValueError("x"), failed) == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert policy(ValueError("x"), failed + 1) is None
