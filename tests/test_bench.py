"""``spikard-tasks bench --quick``: runs end to end and reports every figure (no timing
assertions: the figures depend on the machine)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from spikard_tasks.bench import FIGURES

from .procs import REPO

pytestmark = pytest.mark.timeout(300)


def test_bench_quick_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "spikard_tasks.cli",
            "bench",
            "--quick",
            "--jobs",
            "40",
            "--enqueue",
            "20",
            "--batch",
            "10",
            "--samples",
            "5",
            "--concurrency",
            "2",
            "--poll-interval",
            "0.01",
            "--url",
            f"sqlite:///{tmp_path / 'bench.db'}",
            "--json",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert result.returncode == 0, result.stderr
    for label in FIGURES.values():
        assert label in result.stdout
    assert "sqlite ÷ fast" in result.stdout
    assert "cores" in result.stdout and "Python" in result.stdout
    assert "enqueue single" in result.stderr, "a progress bar was shown"

    data = json.loads(out.read_text())
    fast, durable = data["results"]
    assert (fast["backend"], durable["backend"]) == ("inprocess", "sqlite")
    for row in (fast, durable):
        for key in FIGURES:
            assert isinstance(row[key], (int, float)) and row[key] >= 0, (row["backend"], key)
    ratios = data["ratios"][durable["target"]]
    assert set(ratios) == set(FIGURES)
    assert all(isinstance(v, float) for v in ratios.values())
    machine = data["meta"]["machine"]
    for key in ("cores", "cpu", "python", "spikard_tasks", "python_sqlite3", "engine_sqlite"):
        assert machine[key], key
    assert data["meta"]["sizes"]["jobs"] == 40

    # Every job the run enqueued was run: none is left pending in the database.
    with sqlite3.connect(tmp_path / "bench.db") as db:
        left = db.execute(
            "SELECT queue, status, COUNT(*) FROM spikard_jobs "
            "WHERE status != 'succeeded' GROUP BY 1, 2"
        ).fetchall()
        idle = db.execute(
            "SELECT COUNT(*) FROM spikard_jobs WHERE queue LIKE 'bench-%-idle'"
        ).fetchone()[0]
    assert left == [], left
    assert idle == 20 + 40, "the enqueue rounds' jobs ran in the clean-up"
