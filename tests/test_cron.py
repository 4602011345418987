"""Cron schedules: validation, storage, exactly one job per tick across schedulers, DST."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from spikard_tasks import ConfigError, CronSchedule, TaskQueue, UnknownTask

from .procs import REPO, start_worker, stop

pytestmark = pytest.mark.timeout(180)


def test_invalid_schedules_raise_config_error() -> None:
    for expr in ["* * *", "61 * * * *", "@sometimes", "0 9 * * 8"]:
        with pytest.raises(ConfigError):
            CronSchedule(expr, task="t")
    with pytest.raises(ConfigError, match="timezone"):
        CronSchedule("0 9 * * *", task="t", timezone="Mars/Olympus")
    with pytest.raises(ConfigError):
        CronSchedule("0 9 * * *", task="")
    with pytest.raises(ConfigError):
        CronSchedule("0 9 * * *", task="t", missed="sometimes")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("61 * * * *", "minute 61 is out of range 0-59"),
        ("* 24 * * *", "hour 24 is out of range 0-23"),
        ("* * 0 * *", "day of month 0 is out of range 1-31"),
        ("* * 32 * *", "day of month 32 is out of range 1-31"),
        ("* * * 13 *", "month 13 is out of range 1-12"),
        ("* * * * 8", "weekday 8 is out of range 0-7"),
        ("60 * * * * *", "second 60 is out of range 0-59"),
        ("*/60 * * * *", "minute step 60 is out of range 1-59"),
        ("30-10 * * * *", "minute range 30-10 runs backwards"),
    ],
)
def test_out_of_range_fields_name_the_field_and_its_range(expr: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        CronSchedule(expr, task="t")


@pytest.mark.parametrize("expr", ["0 0 30 2 *", "0 0 31 4 *", "0 0 31 2,4,6,9,11 *"])
def test_a_schedule_that_never_fires_is_refused(expr: str) -> None:
    with pytest.raises(ConfigError, match="never fires"):
        CronSchedule(expr, task="t")


def test_rare_schedules_are_accepted_and_stored_ones_read_back() -> None:
    dec_2026 = dt.datetime(2026, 12, 6, tzinfo=dt.timezone.utc)
    # February 29 only when it is a Monday: 2044 is the next.
    monday_leap_day = CronSchedule("0 0 29 2 1", task="t")
    assert monday_leap_day.next_run(dec_2026) == dt.datetime(2044, 2, 29, tzinfo=dt.timezone.utc)
    # A stored schedule that no longer fires (its year passed) reads back, to list or remove.
    stored = CronSchedule.from_dict({"expression": "0 0 0 1 1 * 2020", "task": "t"})
    assert stored.next_run(dec_2026) is None


def test_expression_forms_and_unix_weekdays() -> None:
    sat_noon = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.timezone.utc)  # a Saturday
    monday_9 = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.timezone.utc)
    assert CronSchedule("0 9 * * 1", task="t").next_run(sat_noon) == monday_9
    assert CronSchedule("0 9 * * MON", task="t").next_run(sat_noon) == monday_9
    assert CronSchedule("0 0 9 * * 1", task="t").next_run(sat_noon) == monday_9  # 6 fields
    assert CronSchedule("@daily", task="t").next_run(sat_noon) == dt.datetime(
        2026, 11, 29, 0, 0, tzinfo=dt.timezone.utc
    )
    assert CronSchedule("*/5 * * * *", task="t").next_run(sat_noon) == sat_noon + dt.timedelta(
        minutes=5
    )


def _fires(schedule: CronSchedule, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    out: list[dt.datetime] = []
    t = start
    while True:
        nxt = schedule.next_run(t)
        if nxt is None or nxt > end:
            return out
        out.append(nxt)
        t = nxt


def test_daily_0230_berlin_across_the_2026_dst_changes() -> None:
    berlin = CronSchedule("30 2 * * *", task="t", timezone="Europe/Berlin")
    utc = dt.timezone.utc
    # 2026-03-29: clocks jump 02:00 -> 03:00; 02:30 does not exist: no run that day.
    spring = _fires(
        berlin, dt.datetime(2026, 3, 27, tzinfo=utc), dt.datetime(2026, 3, 31, tzinfo=utc)
    )
    assert [f.date().isoformat() for f in spring] == ["2026-03-27", "2026-03-28", "2026-03-30"]
    # 2026-10-25: clocks fall back 03:00 -> 02:00; 02:30 happens twice: one run, the first.
    fall = _fires(
        berlin, dt.datetime(2026, 10, 24, tzinfo=utc), dt.datetime(2026, 10, 27, tzinfo=utc)
    )
    assert len(fall) == 3
    assert fall[1] == dt.datetime(2026, 10, 25, 0, 30, tzinfo=utc)  # 02:30 CEST
    year = _fires(berlin, dt.datetime(2026, 1, 1, tzinfo=utc), dt.datetime(2027, 1, 1, tzinfo=utc))
    assert len(year) == 364  # every day but the one without a 02:30


def test_schedule_is_idempotent_replaceable_and_removable(shared_url: str) -> None:
    queue = TaskQueue(shared_url, queue=f"cron-{uuid.uuid4().hex[:8]}")

    @queue.task(name="report")
    def report() -> None:
        return None

    name = f"report-{uuid.uuid4().hex[:8]}"
    first = queue.schedule(CronSchedule("*/5 * * * *", task="report", name=name))
    queue.schedule(CronSchedule("*/5 * * * *", task="report", name=name))
    mine = [s for s in queue.schedules() if s.schedule.name == name]
    assert len(mine) == 1
    assert mine[0].schedule.queue == queue.name == first.queue
    assert mine[0].next_run is not None
    queue.schedule(CronSchedule("0 * * * *", task="report", name=name))
    mine = [s for s in queue.schedules() if s.schedule.name == name]
    assert [s.schedule.expr for s in mine] == ["0 * * * *"]
    with pytest.raises(UnknownTask):
        queue.schedule(CronSchedule("0 * * * *", task="not-registered", name=name + "x"))
    assert queue.unschedule(name) is True
    assert queue.unschedule(name) is False


def test_inprocess_refuses_schedules() -> None:
    queue = TaskQueue("inprocess://")

    @queue.task(name="t")
    def t() -> None:
        return None

    with pytest.raises(ConfigError, match="durable"):
        queue.schedule(CronSchedule("* * * * *", task="t"))


def _start_scheduler(url: str, name: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "spikard_tasks.cli", "scheduler", "tests.apps.cron_app:queue"],
        cwd=REPO,
        env={**os.environ, "SPIKARD_TASKS_URL": url, "SPIKARD_TEST_SCHEDULE": name},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_three_scheduler_processes_enqueue_one_job_per_tick(shared_url: str) -> None:
    seconds = 20
    queue_name = f"cron-{uuid.uuid4().hex[:8]}"
    name = f"every-second-{queue_name}"
    queue = TaskQueue(shared_url, queue=queue_name)
    queue.schedule(CronSchedule("* * * * * *", task="tick", name=name, missed="skip"), strict=False)
    procs = [_start_scheduler(shared_url, name) for _ in range(3)]
    try:
        time.sleep(2)  # all three are up and ticking
        start = time.time()
        before = sum(queue.counts().values())
        time.sleep(seconds)
        after = sum(queue.counts().values())
        end = time.time()
    finally:
        outputs = [stop(p) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    ticks = int(end) - int(start)
    assert ticks - 1 <= after - before <= ticks + 1, (after - before, ticks)
    queue.unschedule(name)


@pytest.mark.slow
def test_worker_runs_the_scheduler_unless_told_not_to(sqlite_url: str, tmp_path: Path) -> None:
    queue = TaskQueue(sqlite_url, queue="cron-worker")
    name = f"s-{uuid.uuid4().hex[:8]}"
    queue.schedule(CronSchedule("* * * * * *", task="tick", name=name), strict=False)
    quiet = start_worker(
        sqlite_url,
        tmp_path / "log",
        "--no-scheduler",
        target="tests.apps.cron_app:queue",
        env={"SPIKARD_TASKS_QUEUE": "cron-worker", "SPIKARD_TEST_SCHEDULE": name},
    )
    time.sleep(2.5)
    stop(quiet)
    assert sum(queue.counts().values()) == 0
    busy = start_worker(
        sqlite_url,
        tmp_path / "log",
        target="tests.apps.cron_app:queue",
        env={"SPIKARD_TASKS_QUEUE": "cron-worker", "SPIKARD_TEST_SCHEDULE": name},
    )
    time.sleep(3.5)
    stop(busy)
    counts = queue.counts()
    assert counts["succeeded"] >= 2, counts


def test_cron_cli_lists_and_removes(sqlite_url: str) -> None:
    queue = TaskQueue(sqlite_url)
    queue.schedule(
        CronSchedule("0 3 * * *", task="nightly", timezone="Europe/Berlin"), strict=False
    )

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "spikard_tasks.cli", "cron", *args, "--url", sqlite_url],
            capture_output=True,
            text=True,
            timeout=60,
        )

    listed = cli("list")
    assert listed.returncode == 0, listed.stderr
    assert "nightly" in listed.stdout and "Europe/Berlin" in listed.stdout
    rows = json.loads(cli("list", "--json").stdout)
    assert rows[0]["expression"] == "0 3 * * *" and rows[0]["next_run"] != "-"
    assert json.loads(cli("remove", "nightly").stdout) == {"name": "nightly", "removed": True}
    assert cli("remove", "nightly").returncode == 1
