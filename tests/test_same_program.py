"""The same task module runs unchanged on ``inprocess://`` and on a SQLite file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .procs import REPO

pytestmark = pytest.mark.timeout(120)


def run_portable(url: str) -> dict[str, object]:
    """Runs ``tests/apps/portable.py`` with ``SPIKARD_TASKS_URL=url``; returns its report."""
    result = subprocess.run(
        [sys.executable, "-m", "tests.apps.portable"],
        cwd=REPO,
        env={**os.environ, "SPIKARD_TASKS_URL": url},
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


def test_same_program_same_results(tmp_path: Path) -> None:
    fast = run_portable("inprocess://?max_queue_size=64&max_concurrent_tasks=4")
    durable = run_portable(f"sqlite:///{tmp_path / 'portable.db'}")
    assert fast == durable
    # And the results are the expected ones, not merely equal.
    assert fast["add"] == ["succeeded", 5, 1, 0]
    assert fast["flaky"] == ["succeeded", "k after 3", 3, 2]
    assert fast["broken"] == ["failed", "ValueError: bad value 7", 2, 2]
    assert fast["refuse"] == ["cancelled", "not worth it", 1, 0]
    assert fast["echo"] == [
        "succeeded",
        [[[1, [2, 3]], {"k": [4]}], {"flag": True}, ["list", "dict"]],
        1,
        0,
    ]
    assert fast["bad_argument"] == "args[0]: object of type set is not JSON serializable"
    assert fast["delay_respected"] is True
    assert fast["unique"] == [True, 2]
    assert fast["cancel_parked"] == [True, False]
    assert fast["async"] == ["ASYNC", 42]


def test_cli_worker_runs_an_inprocess_queue_until_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "spikard_tasks.cli", "worker", "tests.apps.portable:queue"],
        cwd=REPO,
        env={**os.environ, "SPIKARD_TASKS_URL": "inprocess://"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # wait for the start log line
            if "in-process worker" in line and "started" in line:
                break
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    assert report["worker"] == "stopped" and report["released"] == 0


def test_run_worker_blocks_until_sigterm_then_drains() -> None:
    script = """
import json, sys, threading
from spikard_tasks import TaskQueue
queue = TaskQueue("inprocess://")

@queue.task(name="double")
def double(x: int) -> int:
    return 2 * x

def produce() -> None:
    jobs = [double.delay(i) for i in range(10)]
    print(json.dumps([j.result(10) for j in jobs]), flush=True)

threading.Timer(0.2, produce).start()
report = queue.run_worker()
print(json.dumps(report), flush=True)
"""
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        results = json.loads(proc.stdout.readline())
        assert results == [2 * i for i in range(10)]
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    assert report == {"succeeded": 10, "retried": 0, "failed": 0, "cancelled": 0, "released": 0}
