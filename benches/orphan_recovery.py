"""Orphan recovery time: from SIGKILL of the worker running a job to that job's re-run.

    python benches/orphan_recovery.py [--url URL ...] [--trials 5] [--lease 2] [--json PATH]

For each backend (by default a fresh SQLite file plus PostgreSQL, MariaDB/MySQL and
Redis on 127.0.0.1 when they answer; ``--url`` picks instead) it runs two worker
processes on one queue with a short lease (``--lease``, heartbeat a fifth of it), then
per trial: enqueues a long job, waits until one worker has started it, SIGKILLs that
worker and measures the time until the other one starts the job again, then starts a
fresh worker in place of the dead one. The figure is lease expiry (at most ``lease``
after the victim's last heartbeat) plus the survivor's next rescue round (every
heartbeat) plus its claim. Prints a table; ``--json PATH`` writes the raw figures.

This file is also the task module of the worker processes
(``spikard-tasks worker orphan_recovery:queue``, run from ``benches/``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

from spikard_tasks import TaskQueue, __version__

HERE = Path(__file__).resolve().parent

#: The workers' queue (configured from SPIKARD_TASKS_* in the worker processes).
queue = TaskQueue(os.environ.get("SPIKARD_TASKS_URL", "memory://"), poll_interval=0.01)


@queue.task(name="orphan_hold")
def orphan_hold(trial: int, seconds: float) -> int:
    """Logs ``TRIAL PID TIME`` when it starts, then waits up to ``seconds`` for the
    trial's stop file."""
    log = Path(os.environ["SPIKARD_BENCH_LOG"])
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{trial} {os.getpid()} {time.time():.6f}\n".encode())
    finally:
        os.close(fd)
    stop = log.with_name(f"{log.name}.stop-{trial}")
    end = time.monotonic() + seconds
    while time.monotonic() < end and not stop.exists():
        time.sleep(0.01)
    return trial


DEFAULT_SERVERS = {
    "postgres": "postgres://postgres@127.0.0.1:5432/test",
    "mysql": "mysql://root@127.0.0.1:3306/test",
    "redis": "redis://127.0.0.1:6379/0",
}


def _answers(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), 1.0):
            return True
    except OSError:
        return False


def _starts(log: Path) -> list[tuple[int, int, float]]:
    """``(trial, pid, time)`` of every logged start."""
    if not log.exists():
        return []
    out = []
    for line in log.read_text().splitlines():
        trial, pid, at = line.split()
        out.append((int(trial), int(pid), float(at)))
    return out


class Bench:
    """Two workers on one fresh queue of ``url``."""

    def __init__(self, url: str, lease: float, workdir: Path) -> None:
        self.url = url
        self.log = workdir / f"starts-{uuid.uuid4().hex[:8]}.log"
        self.queue_name = f"orphans-{uuid.uuid4().hex[:8]}"
        self.env = {
            **os.environ,
            "SPIKARD_TASKS_URL": url,
            "SPIKARD_TASKS_QUEUE": self.queue_name,
            "SPIKARD_TASKS_LEASE": str(lease),
            "SPIKARD_TASKS_HEARTBEAT": str(lease / 5),
            "SPIKARD_BENCH_LOG": str(self.log),
            "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        }
        self.producer = TaskQueue(url, queue=self.queue_name)
        self.workers: dict[int, subprocess.Popen[bytes]] = {}

    def start_worker(self) -> None:
        proc = subprocess.Popen(
            [sys.executable, "-m", "spikard_tasks.cli", "worker", "orphan_recovery:queue"],
            cwd=HERE,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.workers[proc.pid] = proc

    def trial(self, n: int, timeout: float = 60.0) -> float:
        """One kill; returns seconds from the kill to the re-run's start."""
        job = self.producer.enqueue("orphan_hold", args=[n, timeout], strict=False)
        deadline = time.monotonic() + timeout
        first = None
        while first is None:
            first = next(((p, t) for (i, p, t) in _starts(self.log) if i == n), None)
            if time.monotonic() > deadline:
                raise RuntimeError(f"trial {n}: the job did not start")
            time.sleep(0.005)
        victim = self.workers.pop(first[0])
        killed_at = time.time()
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        while True:
            again = [t for (i, p, t) in _starts(self.log) if i == n and p != first[0]]
            if again:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"trial {n}: the job was not re-run")
            time.sleep(0.005)
        # Let the survivor finish the job, and replace the dead worker.
        self.log.with_name(f"{self.log.name}.stop-{n}").touch()
        job.result(timeout=timeout)
        self.start_worker()
        return again[0] - killed_at

    def close(self) -> None:
        for proc in self.workers.values():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        self.workers.clear()


def measure(url: str, trials: int, lease: float, workdir: Path) -> dict[str, Any]:
    bench = Bench(url, lease, workdir)
    try:
        bench.start_worker()
        bench.start_worker()
        times = [bench.trial(n) for n in range(trials)]
    finally:
        bench.close()
    return {
        "backend": urllib.parse.urlsplit(url).scheme,
        "trials": trials,
        "lease_s": lease,
        "heartbeat_s": lease / 5,
        "min_s": min(times),
        "median_s": statistics.median(times),
        "max_s": max(times),
        "times_s": times,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", action="append", help="backend URL (repeatable)")
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--lease", type=float, default=2.0)
    parser.add_argument("--json", default=None, help="write results to this file")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="orphans-"))
    urls = args.url or [
        f"sqlite:///{workdir / 'orphans.db'}",
        *(u for u in DEFAULT_SERVERS.values() if _answers(u)),
    ]
    results = []
    for url in urls:
        print(f"measuring {urllib.parse.urlsplit(url).scheme} ...", file=sys.stderr, flush=True)
        results.append(measure(url, args.trials, args.lease, workdir))
    from spikard_tasks.cli.progress import format_table

    print(
        f"kill -9 → re-run start, lease {args.lease:g}s, heartbeat {args.lease / 5:g}s, "
        f"{args.trials} trials per backend ({platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {sys.version.split()[0]}, spikard-tasks {__version__})"
    )
    print(
        format_table(
            ["backend", "min (s)", "median (s)", "max (s)"],
            [
                [r["backend"], f"{r['min_s']:.2f}", f"{r['median_s']:.2f}", f"{r['max_s']:.2f}"]
                for r in results
            ],
        )
    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
