"""Helpers to run real worker processes in tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def start_worker(
    url: str,
    log: Path,
    *extra: str,
    target: str = "tests.apps.basic:queue",
    env: dict[str, str] | None = None,
) -> subprocess.Popen[str]:
    """Starts ``spikard-tasks worker TARGET`` in a new process."""
    full_env = {
        **os.environ,
        "SPIKARD_TASKS_URL": url,
        "SPIKARD_TEST_LOG": str(log),
        **(env or {}),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "spikard_tasks.cli", "worker", target, *extra],
        cwd=REPO,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_started(proc: subprocess.Popen[str]) -> None:
    """Reads the worker's stderr until it logs that it started (or exits)."""
    assert proc.stderr is not None
    seen: list[str] = []
    while line := proc.stderr.readline():
        seen.append(line)
        if " started: " in line:
            return
    raise AssertionError("the worker exited before it started:\n" + "".join(seen))


def events(log: Path, kind: str) -> Counter[str]:
    """How often each detail was logged with ``kind`` (e.g. which job numbers started)."""
    if not log.exists():
        return Counter()
    out: Counter[str] = Counter()
    for line in log.read_text().splitlines():
        parts = line.split()
        if parts and parts[0] == kind:
            out[parts[1]] += 1
    return out


def wait_for(predicate: Callable[[], Any], what: str = "condition", timeout: float = 30.0) -> Any:
    """Polls ``predicate()`` until it returns something true (a correctness wait, not a
    timing) and returns that value, or raises ``AssertionError`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM, timeout: float = 30.0) -> str:
    """Sends ``sig`` and waits; returns stdout+stderr."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"worker did not exit after signal {sig}:\n{err}") from None
    return out + err
