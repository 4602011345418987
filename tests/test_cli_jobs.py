"""``status``, ``cancel``, ``enqueue`` and ``cron`` on real SQLite files, as a user runs them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from spikard_tasks import CronSchedule, JobFailed, TaskQueue

from .cli_procs import cli, cli_env

pytestmark = pytest.mark.timeout(120)

APP = "tests.apps.cli_app:queue"
ISO_AGO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \((\d+ (s|min|h|d) ago|now)\)"


def test_status_prints_times_with_how_long_ago_and_tracebacks_as_text(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    with TaskQueue(url, poll_interval=0.01) as queue:

        @queue.task(name="boom")
        def boom() -> None:
            raise ValueError("line one" + chr(10) + "line two")

        job = queue.enqueue("boom", max_attempts=1)
        with queue.worker(concurrency=1, scheduler=False):
            with pytest.raises(JobFailed):
                job.result(timeout=60)
    text = cli("status", "--url", url, job.id)
    assert text.returncode == 0, text.stderr
    out = text.stdout
    assert re.search(r"^status\s+failed$", out, re.M), out
    assert re.search(rf"^enqueued\s+{ISO_AGO}$", out, re.M), out
    assert re.search(rf"^finished\s+{ISO_AGO}$", out, re.M), out
    assert "attempts  1 of 1" in out
    # The traceback is real lines, indented under its attempt, not one JSON string.
    assert "\\n" not in out
    assert re.search(r"^    Traceback \(most recent call last\):$", out, re.M), out
    assert re.search(r"^    ValueError: line one$", out, re.M), out
    assert re.search(r"^    line two$", out, re.M), out
    raw = cli("status", "--url", url, job.id, "--json")
    record = json.loads(raw.stdout)
    assert isinstance(record["enqueued_at_ms"], int)
    assert "Traceback" in record["errors"][0]["traceback"]


def test_status_shows_progress_when_the_record_has_it() -> None:
    from spikard_tasks.cli.status_text import format_job

    now = 1_700_000_000_000
    record = {"id": "j", "status": "running", "attempts": 1, "max_attempts": 3}
    progress = {"fraction": 0.42, "message": "step 2 of 5", "at_ms": now - 3_000}
    text = format_job({**record, "progress": progress}, now_ms=now)
    assert re.search(r"^progress\s+42% step 2 of 5 \(reported .*\(3 s ago\)\)$", text, re.M)
    assert "progress" not in format_job(record, now_ms=now)
    assert "progress" not in format_job({**record, "progress": "odd"}, now_ms=now)


def test_status_of_a_scheduled_job_says_in_how_long(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    enq = cli("enqueue", "--url", url, "report", "--args", "[1, 2]", "--delay", "3600")
    assert enq.returncode == 0, enq.stderr
    out = cli("status", "--url", url, enq.stdout.strip()).stdout
    assert re.search(r"^run at\s+\S+Z \(in (59 min|1 h)\)$", out, re.M), out
    assert re.search(r"^args\s+\[1, 2\]$", out, re.M), out


@pytest.mark.parametrize(
    "command",
    [
        ["status", "JOB"],
        ["cancel", "JOB"],
        ["cron", "list"],
        ["cron", "remove", "nightly"],
    ],
    ids=lambda c: " ".join(c[:2]),
)
@pytest.mark.parametrize("how", ["url", "app"])
def test_a_missing_sqlite_file_is_an_error_and_nothing_is_created(
    tmp_path: Path, command: list[str], how: str
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    env = cli_env(SPIKARD_TASKS_URL="sqlite:///typo.db", SPIKARD_TEST_SCHEDULE="nightly")
    where = ["--url", "sqlite:///typo.db"] if how == "url" else ["--app", APP]
    head, rest = command[:-1], command[-1:]
    if command == ["cron", "list"]:
        head, rest = command, []
    result = cli(*head, *where, *rest, cwd=work, env=env)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert f"no database at {work / 'typo.db'}" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(work.iterdir()) == [], "nothing created"


def test_enqueue_may_create_the_file(tmp_path: Path) -> None:
    result = cli("enqueue", "--url", "sqlite:///new.db", "anything", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "new.db").exists()


def test_enqueue_with_an_app_refuses_an_unknown_task_and_suggests(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    env = cli_env(SPIKARD_TASKS_URL=f"sqlite:///{db}")
    typo = cli("enqueue", "--app", APP, "fetchh", "--args", '["x"]', env=env)
    assert typo.returncode == 2
    assert "unknown task 'fetchh'; did you mean 'fetch'?" in typo.stderr
    assert not db.exists(), "nothing written"
    far = cli("enqueue", "--app", APP, "zzz", env=env)
    assert far.returncode == 2 and "unknown task 'zzz'" in far.stderr
    assert "did you mean" not in far.stderr
    extra = cli("enqueue", "--app", APP, "fetch", "--args", '["x", "y"]', env=env)
    assert extra.returncode == 2 and "InvalidArguments" in extra.stderr
    assert "signature: fetch(url:" in extra.stderr
    assert not db.exists(), "nothing written"
    good = cli("enqueue", "--app", APP, "fetch", "--args", '["x"]', env=env)
    assert good.returncode == 0, good.stderr
    # Without an app the name is not checked: the producer may not import the handlers.
    unchecked = cli("enqueue", "--url", f"sqlite:///{db}", "fetchh")
    assert unchecked.returncode == 0, unchecked.stderr
    with TaskQueue(f"sqlite:///{db}") as queue:
        assert queue.counts()["pending"] == 2


def _store_schedule(url: str, name: str) -> None:
    with TaskQueue(url) as queue:
        queue.schedule(CronSchedule("0 3 * * *", task="report", name=name), strict=False)


def test_cron_remove_with_url_alone(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    _store_schedule(url, "nightly")
    listed = cli("cron", "list", "--url", url, "--json")
    assert [row["name"] for row in json.loads(listed.stdout)] == ["nightly"]
    first = cli("cron", "remove", "--url", url, "nightly")
    assert (first.returncode, json.loads(first.stdout)["removed"]) == (0, True)
    again = cli("cron", "remove", "--url", url, "nightly")
    assert (again.returncode, json.loads(again.stdout)["removed"]) == (1, False)


def test_cron_remove_with_an_app_that_schedules_at_import(tmp_path: Path) -> None:
    """The app stores "nightly" whenever it is imported: ``cron remove --app`` reports
    what was stored before the command, and says the app will store it again."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    env = cli_env(SPIKARD_TASKS_URL=url, SPIKARD_TEST_SCHEDULE="nightly")
    with TaskQueue(url) as queue:
        queue.open()  # the file exists, no schedule stored
    nothing = cli("cron", "remove", "--app", APP, "nightly", env=env)
    assert nothing.returncode == 1, nothing.stderr
    assert json.loads(nothing.stdout) == {"name": "nightly", "removed": False}
    assert "stores it again" in nothing.stderr
    assert json.loads(cli("cron", "list", "--app", APP, "--json", env=env).stdout) == []
    _store_schedule(url, "nightly")
    stored = cli("cron", "remove", "--app", APP, "nightly", env=env)
    assert stored.returncode == 0, stored.stderr
    assert json.loads(stored.stdout) == {"name": "nightly", "removed": True}
    assert json.loads(cli("cron", "list", "--url", url, "--json").stdout) == []
