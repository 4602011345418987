"""Flow control (issue 20, part 2) on every store several processes share (a SQLite file,
PostgreSQL, MariaDB, Redis) and on ``inprocess://``: rate limits and caps on running jobs
of tasks and queues, enforced across real worker processes; per-queue concurrency inside
one worker; how limits compose with priorities and pause; ``stats().limits``; the checks
of every value; the command line and the HTTP stats.

Handlers record their own start and end times (``tests/apps/flow_app.py`` returns them as
the job's result), so the assertions are about when handler bodies ran, not about what
the store says it did. Servers are shared: each test has queue and task names of its own.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from spikard_tasks import Backoff, ConfigError, JobStatus, LimitInfo, TaskHandler, TaskQueue
from spikard_tasks._flow import format_queues, parse_queues

from .cli_procs import cli, cli_env
from .conftest import _url
from .ops_servers import start_http, stop_http
from .procs import REPO, wait_for

pytestmark = pytest.mark.timeout(240)

APP = "tests.apps.flow_app:queue"
SHARED = ["sqlite", "postgres", "mysql", "redis"]


def _name() -> str:
    return f"fc-{uuid.uuid4().hex[:10]}"


@pytest.fixture(params=SHARED)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store several processes share."""
    return _url(request.param, tmp_path)


@pytest.fixture(params=[*SHARED, "inprocess"])
def any_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A shared store, or ``inprocess://``."""
    return "inprocess://" if request.param == "inprocess" else _url(request.param, tmp_path)


@pytest.fixture
def name() -> str:
    """This test's queue name (its tasks' names end with it)."""
    return _name()


@pytest.fixture
def make(name: str) -> Iterator[Callable[[str], TaskQueue]]:
    """Queues on a URL with quick polling, named ``name``; closed afterwards, their jobs
    and limits removed from a shared server."""
    made: list[TaskQueue] = []

    def build(url: str) -> TaskQueue:
        queue = TaskQueue(
            url,
            environment=False,
            queue=name,
            poll_interval=0.01,
            drain_timeout=10.0,
            backoff=Backoff(initial=0.01, max=0.05, jitter=0.0),
        )
        made.append(queue)
        return queue

    yield build
    for queue in made:
        with contextlib.suppress(Exception):
            if queue.is_durable:
                for limit in queue.limits():
                    if limit.name.endswith(name):
                        queue.native.set_limit(limit.scope, limit.name, None, None)
                queue.resume(name)
                queue.cancel_jobs(queue=name)
                queue.purge(queue=name)
        queue.close()


def _finished(queue: TaskQueue, queue_name: str, total: int) -> bool:
    counts = queue.counts(queue_name)
    return counts["succeeded"] + counts["failed"] + counts["cancelled"] >= total


def most_in_one_second(starts: list[float]) -> int:
    """The most starts in any window ``[t, t + 1 s)``."""
    ordered = sorted(starts)
    best, first = 0, 0
    for last, at in enumerate(ordered):
        while at - ordered[first] >= 1.0:
            first += 1
        best = max(best, last - first + 1)
    return best


def most_at_once(spans: list[tuple[float, float]]) -> int:
    """The most intervals ``(start, end)`` open at one instant (an end before a start
    at the same time)."""
    edges = sorted([(end, -1) for _, end in spans] + [(start, 1) for start, _ in spans])
    now = best = 0
    for _, step in edges:
        now += step
        best = max(best, now)
    return best


def test_the_measures_count_what_they_say() -> None:
    assert most_in_one_second([0.0, 0.5, 0.99, 1.0, 1.5, 1.6]) == 4
    assert most_in_one_second([0.0, 1.0, 2.0]) == 1
    assert most_in_one_second([0.0, 0.1, 0.2]) == 3
    assert most_at_once([(0, 1), (1, 2), (2, 3)]) == 1
    assert most_at_once([(0, 2), (1, 3), (1.5, 1.7), (5, 6)]) == 3


# -- real worker processes -----------------------------------------------------------------


@contextlib.contextmanager
def workers(
    url: str, queue_name: str, count: int, tmp_path: Path, *args: str, **env: str
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``count`` processes of ``spikard-tasks worker tests.apps.flow_app:queue ARGS``,
    started (their log says so) on entry; SIGTERM drains them on exit, and each must
    exit 0."""
    full = {**cli_env(), "SPIKARD_TASKS_URL": url, "SPIKARD_TEST_QUEUE": queue_name, **env}
    procs: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        for index in range(count):
            log = tmp_path / f"worker-{queue_name}-{index}.log"
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "spikard_tasks", "worker", APP, *args],
                    cwd=REPO,
                    env=full,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            procs.append((proc, log))
        for proc, log in procs:
            wait_for(
                lambda p=proc, f=log: " started: " in f.read_text() or p.poll() is not None,
                "a worker to start",
                timeout=60,
            )
            assert proc.poll() is None, log.read_text()
        yield [proc for proc, _ in procs]
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = []
        for proc, log in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            codes.append((proc.returncode, log.read_text(errors="replace")[-3000:]))
    for code, text in codes:
        assert code == 0, text


def _results(queue: TaskQueue, queue_name: str) -> list[tuple[Any, int, JobStatus]]:
    """``(result, attempts, status)`` of every job of the queue (at most 1000)."""
    page = queue.list_jobs(queue=queue_name, limit=1000)
    return [(info.result, info.attempts, info.status) for info in page]


@pytest.mark.slow
def test_a_rate_limit_holds_across_three_worker_processes(
    url: str, name: str, make: Callable[[str], TaskQueue], tmp_path: Path
) -> None:
    """The issue's conformance test: 1,000 jobs of a task limited to 50/s, three worker
    processes: no 1-second window of handler starts holds more than 50 + 1, none fails
    and none used a second attempt."""
    queue = make(url)
    total = 1000
    with workers(url, name, 3, tmp_path, "--concurrency", "8", SPIKARD_TEST_RATE="50/s"):
        began = time.monotonic()
        queue.enqueue_many([(f"paced-{name}", [n]) for n in range(total)], strict=False)
        wait_for(lambda: _finished(queue, name, total), "1000 jobs", timeout=180)
        took = time.monotonic() - began
    found = _results(queue, name)
    assert len(found) == total
    assert {status for _, _, status in found} == {JobStatus.SUCCEEDED}
    assert {attempts for _, attempts, _ in found} == {1}
    starts = [result[0] for result, _, _ in found]
    pids = {int(result[2]) for result, _, _ in found}
    assert len(pids) >= 2, "the jobs ran in more than one of the worker processes"
    assert most_in_one_second(starts) <= 50 + 1
    span = max(starts) - min(starts)
    assert span >= total / 50 - 1, f"1000 starts at 50/s took only {span:.1f} s"
    assert took < total / 50 * 4, f"the drain took {took:.1f} s (at 50/s: 20 s)"


def test_max_running_holds_across_three_worker_processes(
    url: str, name: str, make: Callable[[str], TaskQueue], tmp_path: Path
) -> None:
    """``max_running=3`` over three workers of concurrency 4: never more than three
    handler bodies at once, and three do run together; every job succeeds."""
    queue = make(url)
    total = 24
    with workers(url, name, 3, tmp_path, "--concurrency", "4", SPIKARD_TEST_CAP="3"):
        queue.enqueue_many([(f"capped-{name}", [n, 0.2]) for n in range(total)], strict=False)
        wait_for(lambda: _finished(queue, name, total), f"{total} jobs", timeout=60)
    found = _results(queue, name)
    assert {status for _, _, status in found} == {JobStatus.SUCCEEDED}
    assert {attempts for _, attempts, _ in found} == {1}
    spans = [(result[0], result[1]) for result, _, _ in found]
    assert most_at_once(spans) == 3
    assert len({int(result[2]) for result, _, _ in found}) >= 2


def test_per_queue_concurrency_in_one_worker_process(
    url: str, name: str, make: Callable[[str], TaskQueue], tmp_path: Path
) -> None:
    """``--queues A=1,B=2``: at most one job of A and two of B at once in the worker, whose
    concurrency defaults to the sum (3)."""
    queue = make(url)
    other = f"{name}-b"
    with workers(url, name, 1, tmp_path, "--queues", f"{name}=1,{other}=2"):
        listed = [w for w in queue.workers() if name in w.queues]
        assert [(w.queues, w.concurrency) for w in listed] == [([name, other], 3)]
        for queue_name in (name, other):
            queue.enqueue_many(
                [
                    {"task": f"plain-{name}", "args": [n, 0.15], "queue": queue_name}
                    for n in range(6)
                ],
                strict=False,
            )
        wait_for(
            lambda: _finished(queue, name, 6) and _finished(queue, other, 6), "12 jobs", timeout=60
        )
    for queue_name, cap in ((name, 1), (other, 2)):
        found = _results(queue, queue_name)
        assert {status for _, _, status in found} == {JobStatus.SUCCEEDED}
        assert most_at_once([(r[0], r[1]) for r, _, _ in found]) == cap, queue_name
    with contextlib.suppress(Exception):
        queue.cancel_jobs(queue=other)
        queue.purge(queue=other)


def test_a_pool_passes_the_per_queue_concurrency_to_each_child(
    url: str, name: str, make: Callable[[str], TaskQueue], tmp_path: Path
) -> None:
    queue = make(url)
    other = f"{name}-b"
    args = ("--processes", "2", "--queues", f"{name}=1,{other}=2")
    with workers(url, name, 1, tmp_path, *args):
        listed = wait_for(
            lambda: len(found := [w for w in queue.workers() if name in w.queues]) == 2 and found,
            "two pool children",
            timeout=60,
        )
        assert [(w.queues, w.concurrency) for w in listed] == [([name, other], 3)] * 2


def test_a_worker_stores_the_limits_of_its_tasks_and_removes_dropped_ones(
    url: str, name: str, make: Callable[[str], TaskQueue]
) -> None:
    """Each worker stores the limit of every task it registers: a limit taken out of the
    code is gone once a worker of the new code started."""
    task = f"t-{name}"
    old = make(url)
    old.task(name=task, rate_limit="600/m", max_running=2)(lambda: None)
    with old.worker():
        pass
    stored = [(s.scope, s.rate_limit, s.max_running) for s in old.limits() if s.name == task]
    assert stored == [("task", "600/m", 2)]
    new = make(url)
    new.task(name=task)(lambda: None)
    with new.worker():
        pass
    assert [lim for lim in new.limits() if lim.name == task] == []


# -- one worker in this process, every backend ------------------------------------------------


def test_a_queue_limit_holds_jobs_pending_until_it_is_removed(
    any_url: str, name: str, make: Callable[[str], TaskQueue]
) -> None:
    queue = make(any_url)
    done = queue.task(name=f"ok-{name}")(lambda n: n)
    assert queue.limit(name, rate_limit="1/h") is True
    mine = [lim for lim in queue.limits() if lim.name == name]
    assert [(m.scope, m.rate_limit, m.max_running) for m in mine] == [("queue", "1/h", None)]
    with queue.worker(concurrency=4):
        jobs = [done.delay(n) for n in range(5)]
        wait_for(
            lambda: sum(j.status() is JobStatus.SUCCEEDED for j in jobs) == 1, "one job", timeout=60
        )
        time.sleep(0.5)
        states = [j.status() for j in jobs]
        assert states.count(JobStatus.SUCCEEDED) == 1, states
        assert states.count(JobStatus.PENDING) == 4, states
        held = [j.info() for j in jobs if j.status() is JobStatus.PENDING]
        assert all(i is not None and i.attempts == 0 and not i.errors for i in held)
        limit = next(lim for lim in queue.limits() if lim.name == name)
        assert limit.next_start is not None and limit.next_start > queue.stats().at
        assert queue.limit(name) is True  # removed
        assert [j.result(30) for j in jobs] == [0, 1, 2, 3, 4]
    assert [lim for lim in queue.limits() if lim.name == name] == []
    assert queue.limit(name) is False


def test_a_capped_task_starts_by_priority_and_never_blocks_the_others(
    any_url: str, name: str, make: Callable[[str], TaskQueue]
) -> None:
    queue = make(any_url)
    order: list[tuple[str, int, float]] = []

    @queue.task(name=f"one-{name}", max_running=1)
    def one(p: int) -> None:
        order.append(("one", p, time.time()))
        time.sleep(0.05)

    @queue.task(name=f"free-{name}")
    def free() -> None:
        order.append(("free", 0, time.time()))

    queue.pause(name)
    jobs = [one.enqueue(args=[p], priority=p) for p in (0, 5, 1, 9, 3)]
    jobs.append(free.enqueue(priority=-5))
    with queue.worker(concurrency=4):
        time.sleep(0.3)
        assert order == [] and all(j.status() is JobStatus.PENDING for j in jobs)
        queue.resume(name)
        for job in jobs:
            job.result(30)
    assert [p for kind, p, _ in order if kind == "one"] == [9, 5, 3, 1, 0]
    free_at = next(at for kind, _, at in order if kind == "free")
    assert free_at < max(at for kind, _, at in order if kind == "one")
    assert all(j.info().attempts == 1 for j in jobs)  # type: ignore[union-attr]


def test_a_paused_queue_is_not_claimed_whatever_its_limit_allows(
    any_url: str, name: str, make: Callable[[str], TaskQueue]
) -> None:
    queue = make(any_url)
    spans: list[tuple[float, float]] = []

    @queue.task(name=f"nap-{name}")
    def nap() -> None:
        start = time.time()
        time.sleep(0.1)
        spans.append((start, time.time()))

    assert queue.limit(name, max_running=2) is True
    assert queue.pause(name) is True
    jobs = [nap.delay() for _ in range(6)]
    with queue.worker(concurrency=6):
        time.sleep(0.4)
        assert spans == [] and all(j.status() is JobStatus.PENDING for j in jobs)
        assert queue.resume(name) is True
        for job in jobs:
            job.result(30)
    assert most_at_once(spans) == 2


def test_stats_show_each_limit_with_its_running_jobs(
    any_url: str, name: str, make: Callable[[str], TaskQueue]
) -> None:
    queue = make(any_url)
    release = threading.Event()
    task = f"held-{name}"

    @queue.task(name=task, max_running=2, rate_limit="1000/s")
    def held() -> None:
        release.wait(30)

    def running() -> int | None:
        found = queue.stats().limit("task", task)
        return None if found is None else found.running

    try:
        with queue.worker(concurrency=4):
            jobs = [held.delay() for _ in range(5)]
            wait_for(lambda: running() == 2, "two jobs running under the limit", timeout=60)
            time.sleep(0.3)
            stats = queue.stats()
            limit = stats.limit("task", task)
            assert isinstance(limit, LimitInfo)
            assert (limit.rate_limit, limit.max_running, limit.running) == ("1000/s", 2, 2)
            assert [j.status() for j in jobs].count(JobStatus.RUNNING) == 2
            assert stats.to_dict()["limits"] == [lim.to_dict() for lim in stats.limits]
            assert {"scope", "name", "rate_limit", "max_running", "running", "next_start"} == set(
                limit.to_dict()
            )
            release.set()
            for job in jobs:
                job.result(30)
        wait_for(lambda: running() == 0, "no job running under the limit", timeout=60)
    finally:
        release.set()


def test_setting_the_same_limit_again_changes_nothing(
    any_url: str, name: str, make: Callable[[str], TaskQueue]
) -> None:
    """``limit`` returns whether anything changed: setting the limit a queue has already
    changes nothing (and the command line says so)."""
    queue = make(any_url)
    assert queue.limit(name, max_running=2, rate_limit="10/s") is True
    assert queue.limit(name, max_running=2, rate_limit="10/s") is False
    assert queue.limit(name, max_running=3, rate_limit="10/s") is True
    assert queue.limit(name) is True
    assert queue.limit(name) is False
    if queue.is_durable:
        queue.open()
        args = ("queues", "limit", "--url", any_url, name, "--max-running", "2")
        assert cli(*args).stdout.strip() == f"queue {name}: at most 2 running"
        assert cli(*args).stdout.strip() == f"queue {name}: already at most 2 running"


async def test_async_twins(any_url: str, name: str, make: Callable[[str], TaskQueue]) -> None:
    queue = make(any_url)
    assert await queue.alimit(name, max_running=3, rate_limit="5/d") is True
    found = [lim for lim in await queue.alimits() if lim.name == name]
    assert [(f.scope, f.rate_limit, f.max_running) for f in found] == [("queue", "5/d", 3)]
    assert await queue.alimit(name) is True


# -- inprocess:// --------------------------------------------------------------------------


def test_inprocess_spaces_starts_and_caps_running_jobs() -> None:
    with TaskQueue("inprocess://", environment=False) as queue:
        starts: list[float] = []
        spans: list[tuple[float, float]] = []

        @queue.task(name="paced", rate_limit="20/s")
        def paced() -> None:
            starts.append(time.time())

        @queue.task(name="capped", max_running=2)
        def capped() -> None:
            start = time.time()
            time.sleep(0.05)
            spans.append((start, time.time()))

        jobs = [paced.delay() for _ in range(30)] + [capped.delay() for _ in range(8)]
        for job in jobs:
            job.result(30)
        assert all(j.info().attempts == 1 for j in jobs)  # type: ignore[union-attr]
        assert most_in_one_second(starts) <= 20 + 1
        assert max(starts) - min(starts) >= 29 / 20 - 0.1
        assert most_at_once(spans) == 2
        names = {(lim.scope, lim.name) for lim in queue.limits()}
        assert names == {("task", "paced"), ("task", "capped")}


def test_inprocess_worker_caps_each_queue_name_it_is_given() -> None:
    with TaskQueue("inprocess://", environment=False, queue="main") as queue:
        spans: dict[str, list[tuple[float, float]]] = {"main": [], "side": []}

        @queue.task(name="nap")
        def nap(where: str) -> None:
            start = time.time()
            time.sleep(0.05)
            spans[where].append((start, time.time()))

        with queue.worker(queues={"main": 1, "side": None}) as worker:
            assert worker.queue_concurrency == {"main": 1}
            jobs = [nap.enqueue(args=[w], queue=w) for w in ("main", "side") * 5]
            for job in jobs:
                job.result(30)
        assert most_at_once(spans["main"]) == 1
        assert most_at_once(spans["side"]) > 1


# -- checks ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "says"),
    [
        ("", "has no '/'"),
        ("100", "has no '/'"),
        ("0/s", "allows nothing"),
        ("-1/s", "whole number"),
        ("1.5/s", "whole number"),
        ("x/s", "whole number"),
        ("10/w", "unknown unit"),
        ("10/S", "unknown unit"),
        ("2000000/s", "above 1,000,000 per second"),
        ("99999999999999999999/s", "counts more than"),
        ("\u0661\u0660/s", "whole number"),
        ("nan/s", "whole number"),
        ("1e3/s", "whole number"),
        (100, "must be text"),
    ],
)
def test_bad_rates_are_refused_where_they_are_written(rate: Any, says: str) -> None:
    queue = TaskQueue("memory://", environment=False)
    with pytest.raises(ConfigError, match="rate_limit") as caught:
        queue.task(name="t", rate_limit=rate)
    assert says in str(caught.value)
    with pytest.raises(ConfigError, match=says):
        queue.limit("q", rate_limit=rate)
    assert "t" not in queue.tasks


@pytest.mark.parametrize("cap", [0, -1, True, 1.5, "3", 2**32, 2**70, float("nan"), float("inf")])
def test_bad_caps_are_refused(cap: Any) -> None:
    queue = TaskQueue("memory://", environment=False)
    with pytest.raises(ConfigError, match="max_running"):
        queue.task(name="t", max_running=cap)
    with pytest.raises(ConfigError, match="max_running"):
        queue.limit("q", max_running=cap)
    with pytest.raises(ConfigError, match="concurrency of queue"):
        queue.worker(queues={"q": cap})


def test_good_values_are_kept_as_the_engine_writes_them() -> None:
    queue = TaskQueue("memory://", environment=False)
    task = queue.task(name="t", rate_limit=" 600 / minute ", max_running=5)(lambda: None)
    assert (task.rate_limit, task.max_running) == ("600/m", 5)
    plain = queue.task(name="p")(lambda: None)
    assert (plain.rate_limit, plain.max_running) == (None, None)

    class Mail(TaskHandler):
        def handle(self) -> None:
            return None

    handler = queue.task(name="mail", rate_limit="5/d", max_running=1)(Mail)
    assert (handler.rate_limit, handler.max_running) == ("5/d", 1)
    for bad in (None, 3):
        with pytest.raises(ConfigError):
            queue.limit(bad, max_running=1)  # type: ignore[arg-type]


def test_worker_queues_as_a_mapping() -> None:
    queue = TaskQueue("memory://", environment=False, concurrency=7)
    both = queue.worker(queues={"a": 4, "b": 1})
    assert (both.queues, both.queue_concurrency, both.concurrency) == (
        ["a", "b"],
        {"a": 4, "b": 1},
        5,
    )
    mixed = queue.worker(queues={"a": 2, "b": None})
    assert (mixed.queue_concurrency, mixed.concurrency) == ({"a": 2}, 7)
    total = queue.worker(10, queues={"a": 2, "b": 1})
    assert total.concurrency == 10
    plain = queue.worker(queues=["a", "b"])
    assert (plain.queue_concurrency, plain.concurrency) == ({}, 7)
    with pytest.raises(ConfigError, match="not the text"):
        queue.worker(queues="a")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="non-empty"):
        queue.worker(queues={"": 1})


def test_queues_text_of_the_command_line() -> None:
    """``--queues`` text both ways (a pool hands ``queues=`` to its children as text)."""
    assert parse_queues("a, b=2 ,c=10") == {"a": None, "b": 2, "c": 10}
    assert format_queues({"a": None, "b": 2}) == "a,b=2"
    assert format_queues(["a", "b"]) == "a,b"
    mapping: dict[str, int | None] = {"emails": 4, "reports": 1, "misc": None}
    assert parse_queues(format_queues(mapping)) == mapping
    for bad, says in (
        (" , ", "at least one queue"),
        ("=3", "no queue name"),
        ("a=x", "whole number"),
        ("a=0", "at least 1"),
        ("a=-1", "whole number"),
    ):
        with pytest.raises(ConfigError, match=says):
            parse_queues(bad)


# -- the command line and HTTP -----------------------------------------------------------------


def test_queues_limit_list_and_info_on_the_command_line(
    url: str, name: str, make: Callable[[str], TaskQueue]
) -> None:
    queue = make(url)
    queue.open()  # a SQLite file must exist for the operations commands

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return cli(*args, env=cli_env())

    done = run("queues", "limit", "--url", url, name, "--max-running", "2", "--rate", "10/s")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"queue {name}: at most 2 running, 10/s starts"
    as_json = run("queues", "limit", "--url", url, name, "--rate", "600/minute", "--json")
    assert json.loads(as_json.stdout) == {
        "queue": name,
        "rate_limit": "600/m",
        "max_running": None,
        "changed": True,
    }
    listed = run("queues", "list", "--url", url, "--json")
    rows = [r for r in json.loads(listed.stdout) if r["queue"] == name]
    assert len(rows) == 1 and rows[0]["limit"]["rate_limit"] == "600/m"
    assert rows[0]["limit"]["max_running"] is None and rows[0]["counts"]["pending"] == 0
    table = run("queues", "list", "--url", url)
    assert name in table.stdout and "600/m" in table.stdout and "max running" in table.stdout
    info = run("info", "--url", url)
    assert info.returncode == 0 and "limits:" in info.stdout and "running now" in info.stdout
    info_json = json.loads(run("info", "--url", url, "--json").stdout)
    assert {"scope": "queue", "name": name} in [
        {"scope": lim["scope"], "name": lim["name"]} for lim in info_json["limits"]
    ]
    for args, says in (
        ((), "give --max-running N and/or --rate"),
        (("--clear", "--rate", "1/s"), "--clear removes the limit"),
    ):
        refused = run("queues", "limit", "--url", url, name, *args)
        assert refused.returncode == 2 and says in refused.stderr, refused.stderr
    cleared = run("queues", "limit", "--url", url, name, "--clear")
    assert cleared.stdout.strip() == f"queue {name}: limit removed"
    assert [lim for lim in queue.limits() if lim.name == name] == []
    bad = run("worker", APP, "--queues", f"{name}=0")
    assert bad.returncode == 2 and "at least 1" in bad.stderr


def test_http_stats_carry_the_limits(tmp_path: Path, name: str) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    with TaskQueue(url, environment=False, queue=name) as queue:
        queue.limit(name, max_running=4, rate_limit="2/s")
    srv = start_http(url, name, tmp_path / "server.log", "serve", "tests.apps.ops_web:queue")
    try:
        stats = srv.get("/tasks/stats")
        assert {k: v for k, v in stats["limits"][0].items() if k != "next_start"} == {
            "scope": "queue",
            "name": name,
            "rate_limit": "2/s",
            "max_running": 4,
            "running": 0,
        }
        schemas = srv.get("/tasks/openapi.json")["components"]["schemas"]
        assert "LimitInfo" in schemas and "limits" in schemas["Stats"]["properties"]
    finally:
        stop_http(srv)
