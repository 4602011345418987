"""Helpers of the process pool tests: a worker pool as a real process whose stderr is read
by a thread (so that the test can wait for log lines while the pool runs), and the
``start``/``done`` lines its handlers log."""

from __future__ import annotations

import collections
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from .procs import REPO

APP = "tests.apps.pool_app:queue"


def pool_env(url: str, log: Path, queue: str, **extra: str) -> dict[str, str]:
    """The environment of ``tests.apps.pool_app``: its URL, queue name and log file."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {
        **os.environ,
        "PYTHONPATH": path,
        "SPIKARD_TASKS_URL": url,
        "SPIKARD_TEST_QUEUE": queue,
        "SPIKARD_TEST_LOG": str(log),
        **extra,
    }


class Running:
    """A process whose stderr lines are collected as they come."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path = REPO) -> None:
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self.lines.append("")  # the end
            self._cond.notify_all()

    def matches(self, pattern: str) -> list[re.Match[str]]:
        """The stderr lines so far matching ``pattern`` (``re.search``)."""
        with self._cond:
            found = [re.search(pattern, line) for line in self.lines]
        return [m for m in found if m]

    def wait_for(self, pattern: str, count: int = 1, timeout: float = 60) -> list[re.Match[str]]:
        """Waits until ``count`` stderr lines match ``pattern``; fails with the log."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [m for m in (re.search(pattern, x) for x in self.lines) if m]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0 or (self.lines and self.lines[-1] == ""):
                    raise AssertionError(f"{count} x {pattern!r} not seen:\n" + "".join(self.lines))
                self._cond.wait(min(left, 0.5))

    def finish(self, timeout: float = 90) -> tuple[int, str, str]:
        """Waits for the exit: ``(code, stdout, stderr)``."""
        # Not communicate(): it would read stderr too, taking lines from the reader.
        assert self.proc.stdout is not None
        out = self.proc.stdout.read()
        self.proc.wait(timeout=timeout)
        self._reader.join(timeout=timeout)
        return self.proc.returncode, out, "".join(self.lines)

    def kill(self) -> None:
        """Kills the process if it still runs (cleanup)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


def pool(*args: str, env: dict[str, str], cwd: Path = REPO) -> Running:
    """Starts ``python -m spikard_tasks worker tests.apps.pool_app:queue ARGS``."""
    return Running([sys.executable, "-m", "spikard_tasks", "worker", APP, *args], env, cwd)


def handler_lines(log: Path) -> dict[str, collections.Counter[tuple[int, int]]]:
    """``{"start": Counter((job number, pid)), "done": ...}`` from the handlers' log."""
    seen: dict[str, collections.Counter[tuple[int, int]]] = {
        "start": collections.Counter(),
        "done": collections.Counter(),
    }
    if log.exists():
        for line in log.read_text().splitlines():
            kind, n, pid = line.split()
            seen[kind][(int(n), int(pid))] += 1
    return seen


def wait_until(check: object, timeout: float = 90, what: str = "the condition") -> None:
    """Polls ``check()`` until it is true."""
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(0.1)
