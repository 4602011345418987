"""The command line, run as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .procs import REPO

pytestmark = pytest.mark.timeout(120)


def run(
    *args: str, cwd: Path = REPO, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spikard_tasks.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=110,
        env=env,
    )


def test_demo_runs_on_sqlite(tmp_path: Path) -> None:
    result = run("demo", "--jobs", "60", "--concurrency", "4", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "enqueued 60 jobs" in result.stdout
    assert "total" in result.stdout
    assert (tmp_path / "spikard_tasks_demo.db").exists()
    # The summary is not buried under the per-job lines of the jobs it fails on purpose,
    # and it points at the operations commands.
    assert "job attempt failed" not in result.stderr
    assert "job failed" not in result.stderr
    assert "spikard-tasks jobs list --url sqlite:///spikard_tasks_demo.db --status failed" in (
        result.stdout
    )


def test_demo_shows_the_per_job_lines_when_logs_are_asked_for(tmp_path: Path) -> None:
    env = {**os.environ, "SPIKARD_TASKS_LOG": "info"}
    result = run("demo", "--jobs", "60", "--concurrency", "4", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "job attempt failed, retrying" in result.stderr
    assert "job failed" in result.stderr


def test_enqueue_status_cancel(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    enq = run("enqueue", "--url", url, "report", "--args", "[1, 2]", "--delay", "60")
    assert enq.returncode == 0, enq.stderr
    job_id = enq.stdout.strip()
    status = run("status", "--url", url, job_id, "--json")
    assert status.returncode == 0, status.stderr
    info = json.loads(status.stdout)
    assert info["status"] == "scheduled"
    assert info["args"] == [1, 2]
    cancel = run("cancel", "--url", url, job_id)
    assert json.loads(cancel.stdout) == {"task_id": job_id, "cancelled": True}
    assert run("cancel", "--url", url, job_id).returncode == 1
    assert run("status", "--url", url, "missing").returncode == 1


def test_bad_target_and_url_are_clear_errors(tmp_path: Path) -> None:
    bad = run("worker", "no_such_module:queue")
    assert bad.returncode == 2
    assert "ConfigError" in bad.stderr and "no_such_module" in bad.stderr
    bad_url = run("enqueue", "--url", "mysql://root:topsecret@/x", "t")
    assert bad_url.returncode == 2
    assert "topsecret" not in bad_url.stderr
    bad_args = run("enqueue", "--url", f"sqlite:///{tmp_path / 'x.db'}", "t", "--args", "{oops")
    assert bad_args.returncode == 2


def test_version_is_the_installed_distributions() -> None:
    from importlib import metadata

    import spikard_tasks
    from spikard_tasks import _native

    installed = metadata.version("spikard-tasks")
    assert spikard_tasks.__version__ == installed
    for flag in ("--version", "-V"):
        result = run(flag)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"spikard-tasks {installed} (engine {_native.__version__})"
    module = subprocess.run(
        [sys.executable, "-m", "spikard_tasks", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert module.returncode == 0, module.stderr
    assert installed in module.stdout


def test_serve_without_the_http_extra_says_what_to_install() -> None:
    """Starlette hidden from the import system: one line naming the extra, no traceback."""
    script = (
        "import sys; sys.modules['starlette'] = None\n"
        "from spikard_tasks.cli import main\n"
        "sys.exit(main(['serve', 'tests.apps.web:add']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stderr
    assert "pip install 'spikard-tasks[http]'" in result.stderr
    assert "Traceback" not in result.stderr
