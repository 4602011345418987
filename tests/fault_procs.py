"""Helpers shared by the fault tests: worker processes with their output in files, and
the run log written by ``tests/apps/faulty.py``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.parse
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from spikard_tasks import TaskQueue

from .procs import REPO

FAULTY = "tests.apps.faulty:queue"


@dataclass
class WorkerProc:
    """A ``spikard-tasks worker`` process whose stdout and stderr go to a file."""

    proc: subprocess.Popen[bytes]
    output: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL, then reap."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Sends ``sig`` and waits; returns the exit code (SIGKILL after ``timeout``)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)
            raise AssertionError(
                f"worker {self.pid} did not exit within {timeout}s of signal {sig}:\n" + self.text()
            ) from None

    def text(self) -> str:
        """Everything the process wrote so far."""
        return self.output.read_text(errors="replace") if self.output.exists() else ""


@dataclass
class Workers:
    """Every worker a test started; :meth:`cleanup` ends those still running."""

    url: str
    log: Path
    directory: Path
    env: dict[str, str]
    target: str = FAULTY
    started: list[WorkerProc] = field(default_factory=list)

    def start(self, *extra: str, env: dict[str, str] | None = None) -> WorkerProc:
        out = self.directory / f"worker-{len(self.started)}.out"
        full_env = {
            **os.environ,
            "SPIKARD_TASKS_URL": self.url,
            "SPIKARD_TEST_LOG": str(self.log),
            **self.env,
            **(env or {}),
        }
        with open(out, "wb") as fh:
            proc = subprocess.Popen(
                [sys.executable, "-m", "spikard_tasks.cli", "worker", self.target, *extra],
                cwd=REPO,
                env=full_env,
                stdout=fh,
                stderr=subprocess.STDOUT,
            )
        worker = WorkerProc(proc, out)
        self.started.append(worker)
        return worker

    def producer(self) -> TaskQueue:
        """A queue handle on the workers' backend and queue, for enqueueing and reading."""
        return TaskQueue(self.url, queue=self.env["SPIKARD_TASKS_QUEUE"])

    def cleanup(self) -> None:
        for w in self.started:
            if w.proc.poll() is None:
                w.proc.kill()
                w.proc.wait(timeout=30)


@contextmanager
def running_workers(url: str, directory: Path, env: dict[str, str]) -> Iterator[Workers]:
    """Workers on ``url`` logging to ``directory``, every one killed at the end."""
    made = Workers(url=url, log=directory / "events.log", directory=directory, env=env)
    try:
        yield made
    finally:
        made.cleanup()


@dataclass(frozen=True)
class Run:
    """One logged event of a handler."""

    detail: str
    pid: int
    at: float


def read_log(log: Path, kind: str) -> dict[str, list[Run]]:
    """Events of ``kind`` by detail (e.g. job number), each list in time order."""
    out: dict[str, list[Run]] = defaultdict(list)
    if not log.exists():
        return out
    for line in log.read_text().splitlines():
        event, detail, pid, at = line.split()
        if event == kind:
            out[detail].append(Run(detail, int(pid), float(at)))
    for runs in out.values():
        runs.sort(key=lambda r: r.at)
    return out


def count_events(log: Path, kind: str) -> int:
    """How many ``kind`` events were logged."""
    return sum(len(v) for v in read_log(log, kind).values())


def unique_queue(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def backend_of(url: str) -> str:
    """``sqlite``, ``postgres``, ``mysql`` or ``redis``."""
    scheme = urllib.parse.urlsplit(url).scheme
    return {"postgresql": "postgres", "mariadb": "mysql", "rediss": "redis"}.get(scheme, scheme)
