"""``info``, ``jobs list|show|retry|cancel|purge``, ``queues list|pause|resume`` and
``workers``, each run as a user runs it (a real process) on a real SQLite file."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from spikard_tasks import JobFailed, JobStatus, TaskQueue
from spikard_tasks.cli import build_parser
from spikard_tasks.cli.ops_args import BULK_LIMIT

from .cli_procs import cli, cli_env, cli_process, read_until

pytestmark = pytest.mark.timeout(120)

APP = "tests.apps.cli_app:queue"


def _url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'jobs.db'}"


def _store_a_mix(url: str) -> dict[str, list[str]]:
    """Two succeeded jobs, one failed, one scheduled, one cancelled in ``default``, and
    two pending in ``held`` (paused)."""
    with TaskQueue(url, poll_interval=0.01) as queue:

        @queue.task(name="ok")
        def ok(x: int) -> int:
            return x

        @queue.task(name="boom", max_attempts=1)
        def boom() -> None:
            raise ValueError("it broke")

        queue.pause("held")
        done = [queue.enqueue("ok", [1]), queue.enqueue("ok", [2])]
        bad = queue.enqueue("boom")
        later = queue.enqueue("ok", [3], delay=3600)
        gone = queue.enqueue("ok", [4], delay=3600)
        gone.cancel()
        held = [queue.enqueue("ok", [5], queue="held") for _ in range(2)]
        with queue.worker(concurrency=2, scheduler=False):
            for job in done:
                job.result(60)
            with pytest.raises(JobFailed):
                bad.result(60)
    return {
        "done": [j.id for j in done],
        "failed": [bad.id],
        "scheduled": [later.id],
        "cancelled": [gone.id],
        "held": [j.id for j in held],
    }


def test_every_operations_command_is_in_the_parser() -> None:
    names: set[str] = set()

    def walk(parser: object, path: tuple[str, ...]) -> None:
        import argparse

        assert isinstance(parser, argparse.ArgumentParser)
        names.add(" ".join(path))
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    walk(child, (*path, name))

    walk(build_parser(), ())
    expected = {"info", "jobs list", "jobs show", "jobs retry", "jobs cancel", "jobs purge"}
    assert expected | {"queues list", "queues pause", "queues resume", "workers"} <= names
    assert {"status", "cancel"} <= names  # the older commands stay


def test_info_prints_a_table_of_queues_and_states_and_json(tmp_path: Path) -> None:
    url = _url(tmp_path)
    _store_a_mix(url)
    text = cli("info", "--url", url)
    assert text.returncode == 0, text.stderr
    out = text.stdout
    header = next(line for line in out.splitlines() if line.startswith("queue"))
    for word in ("pending", "scheduled", "running", "retrying", "succeeded", "failed"):
        assert word in header, out
    assert "oldest ready" in header and "paused" in header
    default_row = next(line for line in out.splitlines() if line.startswith("default "))
    assert default_row.split()[1:8] == ["0", "1", "0", "0", "2", "1", "1"], out
    assert re.search(r"^held\s+2\s+0\s+0\s+0\s+0\s+0\s+0\s+\S+.*\byes$", out, re.M), out
    assert "total: 2 pending, 1 scheduled" in out
    assert "workers: 0 live" in out
    raw = cli("info", "--url", url, "--json")
    data = json.loads(raw.stdout)
    assert data["counts"]["succeeded"] == 2 and data["workers"] == []
    held = next(q for q in data["queues"] if q["queue"] == "held")
    assert held["paused"] is True and held["counts"]["pending"] == 2
    assert held["oldest_ready_age"] >= 0


def test_info_watch_refreshes_until_ctrl_c_and_exits_0(tmp_path: Path) -> None:
    url = _url(tmp_path)
    _store_a_mix(url)
    proc = cli_process("info", "--url", url, "--watch", "0.1")
    try:
        assert proc.stdout is not None
        seen = 0
        while seen < 2:
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else ""
            seen += line.startswith("workers: ")
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_jobs_list_filters_pages_and_prints_json(tmp_path: Path) -> None:
    url = _url(tmp_path)
    ids = _store_a_mix(url)
    every = cli("jobs", "list", "--url", url)
    assert every.returncode == 0, every.stderr
    assert all(job_id in every.stdout for group in ids.values() for job_id in group)
    assert "more:" not in every.stdout
    failed = cli("jobs", "list", "--url", url, "--status", "failed")
    rows = [line for line in failed.stdout.splitlines() if ids["failed"][0] in line]
    assert len(rows) == 1 and "ValueError: it broke" in rows[0] and "1/1" in rows[0]
    assert ids["done"][0] not in failed.stdout
    several = cli("jobs", "list", "--url", url, "--status", "pending,scheduled", "--json")
    listed = {j["id"] for j in json.loads(several.stdout)["jobs"]}
    assert listed == {*ids["held"], *ids["scheduled"]}
    by_queue = json.loads(cli("jobs", "list", "--url", url, "--queue", "held", "--json").stdout)
    assert {j["id"] for j in by_queue["jobs"]} == set(ids["held"])
    assert all(j["status"] == "pending" for j in by_queue["jobs"])
    seen: list[str] = []
    cursor: list[str] = []
    for _ in range(10):
        page = cli("jobs", "list", "--url", url, "--limit", "3", "--json", *cursor)
        data = json.loads(page.stdout)
        seen += [j["id"] for j in data["jobs"]]
        if data["next_cursor"] is None:
            break
        cursor = ["--cursor", data["next_cursor"]]
    assert sorted(seen) == sorted(j for group in ids.values() for j in group)
    first = cli("jobs", "list", "--url", url, "--limit", "3")
    assert re.search(r"^more: --cursor \S+$", first.stdout, re.M), first.stdout
    later = cli("jobs", "list", "--url", url, "--since", "1h", "--until", "2999-01-01T00:00:00Z")
    assert later.returncode == 0 and ids["failed"][0] in later.stdout
    none = cli("jobs", "list", "--url", url, "--until", "2000-01-01")
    assert none.returncode == 0 and "no jobs match" in none.stdout


def test_jobs_show_is_status(tmp_path: Path) -> None:
    url = _url(tmp_path)
    ids = _store_a_mix(url)
    shown = cli("jobs", "show", "--url", url, ids["failed"][0])
    assert shown.returncode == 0, shown.stderr
    status = cli("status", "--url", url, ids["failed"][0]).stdout
    assert shown.stdout.splitlines()[:4] == status.splitlines()[:4]
    assert re.search(r"^status\s+failed$", shown.stdout, re.M)
    assert "ValueError: it broke" in shown.stdout
    raw = json.loads(cli("jobs", "show", "--url", url, ids["failed"][0], "--json").stdout)
    assert raw["status"] == "failed"
    missing = cli("jobs", "show", "--url", url, "no-such-job")
    assert missing.returncode == 1 and "no job with id" in missing.stderr


def test_jobs_retry_and_cancel_by_id(tmp_path: Path) -> None:
    url = _url(tmp_path)
    ids = _store_a_mix(url)
    retried = cli("jobs", "retry", "--url", url, ids["failed"][0], ids["cancelled"][0])
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout.strip() == "retried: 2 job(s)"
    again = cli("jobs", "retry", "--url", url, ids["failed"][0], "--json")
    assert again.returncode == 1
    assert json.loads(again.stdout) == {"action": "retried", "touched": 0, "not touched": 1}
    assert "not retried" in again.stderr
    with TaskQueue(url) as queue:
        assert queue.get_job(ids["failed"][0]).status() is JobStatus.PENDING  # type: ignore[union-attr]
    cancelled = cli("jobs", "cancel", "--url", url, *ids["held"])
    assert cancelled.returncode == 0 and cancelled.stdout.strip() == "cancelled: 2 job(s)"
    both = cli("jobs", "cancel", "--url", url, ids["held"][0], "--task", "ok")
    assert both.returncode == 2 and "not both" in both.stderr
    bare = cli("jobs", "retry", "--url", url)
    assert bare.returncode == 2 and "give the ids of the jobs to retry" in bare.stderr


def test_bulk_actions_over_the_threshold_need_yes(tmp_path: Path) -> None:
    url = _url(tmp_path)
    many = BULK_LIMIT + 1
    with TaskQueue(url) as queue:
        queue.pause("bulk")
        jobs = queue.enqueue_many(
            [{"task": "t", "queue": "bulk"} for _ in range(many)], strict=False
        )
        few = queue.enqueue_many([{"task": "t", "queue": "few"} for _ in range(3)], strict=False)
    refused = cli("jobs", "cancel", "--url", url, "--queue", "bulk")
    assert refused.returncode == 2
    assert f"matches {many} jobs" in refused.stderr and "--yes" in refused.stderr
    small = cli("jobs", "cancel", "--url", url, "--queue", "few")
    assert small.returncode == 0 and small.stdout.strip() == "cancelled: 3 job(s)"
    done = cli("jobs", "cancel", "--url", url, "--queue", "bulk", "--yes")
    assert done.returncode == 0 and done.stdout.strip() == f"cancelled: {many} job(s)"
    refused = cli("jobs", "retry", "--url", url, "--status", "cancelled", "--queue", "bulk")
    assert refused.returncode == 2 and f"matches {many} jobs" in refused.stderr
    retried = cli("jobs", "retry", "--url", url, "--status", "cancelled", "--yes", "--json")
    assert json.loads(retried.stdout) == {"action": "retried", "touched": many + 3}
    with TaskQueue(url) as queue:
        assert queue.stats().queue("bulk").counts["pending"] == many  # type: ignore[union-attr]
        assert queue.cancel_jobs() == many + 3
        assert all(queue.get_job(j.id) is not None for j in [*jobs, *few])
    young = cli("jobs", "purge", "--url", url, "--older-than", "7d")
    assert young.returncode == 0 and young.stdout.strip() == "purged: 0 job(s)"
    refused = cli("jobs", "purge", "--url", url, "--status", "cancelled", "--older-than", "0s")
    assert refused.returncode == 2 and f"matches {many + 3} jobs" in refused.stderr
    small = cli("jobs", "purge", "--url", url, "--queue", "few", "--older-than", "0")
    assert small.returncode == 0 and small.stdout.strip() == "purged: 3 job(s)"
    purged = cli("jobs", "purge", "--url", url, "--older-than", "0s", "--yes")
    assert purged.returncode == 0 and purged.stdout.strip() == f"purged: {many} job(s)"
    with TaskQueue(url) as queue:
        assert queue.list_jobs(queue="bulk").jobs == []


def test_queues_pause_resume_and_list(tmp_path: Path) -> None:
    url = _url(tmp_path)
    _store_a_mix(url)
    paused = cli("queues", "pause", "--url", url, "reports")
    assert (paused.returncode, paused.stdout.strip()) == (0, "queue reports paused")
    again = cli("queues", "pause", "--url", url, "reports")
    assert again.stdout.strip() == "queue reports was already paused"
    listed = cli("queues", "list", "--url", url)
    assert re.search(r"^reports\s+yes(\s+0){7}\s+-\s+-$", listed.stdout, re.M), listed.stdout
    assert re.search(r"^default\s+no\s+0\s+1\s+0\s+0\s+2\s+1\s+1\s+-\s+-$", listed.stdout, re.M)
    rows = json.loads(cli("queues", "list", "--url", url, "--json").stdout)
    assert {q["queue"]: q["paused"] for q in rows} == {
        "default": False,
        "held": True,
        "reports": True,
    }
    resumed = cli("queues", "resume", "--url", url, "reports", "--json")
    assert json.loads(resumed.stdout) == {"queue": "reports", "resumed": True, "changed": True}
    with TaskQueue(url) as queue:
        assert queue.paused() == ["held"]


def test_workers_lists_a_running_worker_process(tmp_path: Path) -> None:
    url = _url(tmp_path)
    with TaskQueue(url) as queue:
        queue.open()
    env = cli_env(SPIKARD_TASKS_URL=url)
    none = cli("workers", "--url", url)
    assert none.returncode == 0 and none.stdout.strip() == "no live workers"
    proc = cli_process("worker", APP, "-c", "3", "--no-scheduler", env=env)
    try:
        read_until(proc, "started")
        rows: list[dict[str, object]] = []
        for _ in range(200):
            rows = json.loads(cli("workers", "--url", url, "--json").stdout)
            if rows:
                break
        assert len(rows) == 1, rows
        assert rows[0]["pid"] == proc.pid and rows[0]["concurrency"] == 3
        assert rows[0]["queues"] == ["default"] and rows[0]["host"] == socket.gethostname()
        table = cli("workers", "--url", url)
        assert str(proc.pid) in table.stdout and "1 live worker(s)" in table.stdout
        info = cli("info", "--url", url)
        assert "workers: 1 live" in info.stdout
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert cli("workers", "--url", url).stdout.strip() == "no live workers"


@pytest.mark.parametrize(
    "argv,message",
    [
        (["jobs", "list", "--status", "done"], "unknown status 'done'; valid: pending"),
        (["jobs", "list", "--limit", "0"], "must be from 1 to 1000"),
        (["jobs", "list", "--limit", "1001"], "must be from 1 to 1000"),
        (["jobs", "list", "--since", "yesterday"], "is not a time"),
        (["jobs", "list", "--cursor", "garbage"], "malformed cursor"),
        (["jobs", "purge", "--older-than", "3x"], "is not a duration"),
        (["jobs", "purge"], "--older-than"),
        (["info", "--watch", "soon"], "is not a duration"),
    ],
)
def test_bad_options_exit_2_with_a_message(tmp_path: Path, argv: list[str], message: str) -> None:
    url = _url(tmp_path)
    with TaskQueue(url) as queue:
        queue.open()
    result = cli(*argv, "--url", url)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "argv",
    [["info"], ["jobs", "list"], ["queues", "list"], ["workers"], ["queues", "pause", "x"]],
)
def test_a_missing_sqlite_file_is_an_error(tmp_path: Path, argv: list[str]) -> None:
    result = cli(*argv, "--url", "sqlite:///typo.db", cwd=tmp_path)
    assert result.returncode == 2 and "no database at" in result.stderr
    assert list(tmp_path.iterdir()) == []
