"""Drain rate of ``worker --processes N`` against the bare-body ceiling, in one run.

    python benches/process_pool.py [--url sqlite:///pool-bench.db] [--processes 1,2]
        [--cpu-jobs 3000] [--incr-jobs 30000] [--concurrency 4] [--incr-concurrency 16]
        [--repeat 1] [--redis redis://...] [--json PATH]

Two handlers (``tests.apps.pool_app``): ``spin``, about 2 ms of pure-Python work (the
rounds are calibrated at the start), and ``incr``, one Redis ``INCR``. For each N:

- the ceiling: the same body in a loop in N plain processes (no queue), started together;
  the sum of their rates;
- the pool: the jobs enqueued into a paused queue, ``spikard-tasks worker --processes N``
  started and all its children up, then the queue resumed; jobs / seconds from the resume
  to the last success.

Prints per handler the 2-process / 1-process speed-up of the pool and each drain's share
of the ceiling at the same N (targets: >= 1.8x for ``spin``, >= 90 % everywhere). The
``incr`` drain runs on ``--incr-url`` (default: the Redis of ``--redis``), the ``spin``
drain on ``--url``. Figures depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.apps.pool_app import spin_body  # noqa: E402

from spikard_tasks import TaskQueue  # noqa: E402

APP = "tests.apps.pool_app:queue"
CEILING = """
import sys, time
from tests.apps.pool_app import {body} as body
arg, count, start_at = {arg!r}, int(sys.argv[1]), float(sys.argv[2])
body(arg)  # connect / warm up
while time.time() < start_at:
    time.sleep(0.001)
t = time.perf_counter()
for _ in range(count):
    body(arg)
print(count / (time.perf_counter() - t))
"""


def _env(url: str, redis_url: str) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {
        **os.environ,
        "PYTHONPATH": path,
        "SPIKARD_TASKS_URL": url,
        "SPIKARD_TEST_REDIS": redis_url,
    }


def calibrate(target_s: float = 0.002) -> int:
    """The ``spin_body`` rounds that take about ``target_s`` here."""
    rounds = 5000
    best = min(_timed(spin_body, rounds) for _ in range(20))
    return max(100, int(rounds * target_s / best))


def _timed(fn: Any, arg: Any) -> float:
    t = time.perf_counter()
    fn(arg)
    return time.perf_counter() - t


def ceiling(body: str, arg: Any, processes: int, total: int, env: dict[str, str]) -> float:
    """Bodies per second of ``processes`` plain processes running ``body(arg)`` in a loop."""
    code = CEILING.format(body=body, arg=arg)
    start_at = time.time() + 1.5  # every process imported and warmed up by then
    each = max(1, total // processes)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(each), repr(start_at)],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    rates = []
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"the ceiling process failed ({proc.returncode})")
        rates.append(float(out.strip()))
    return sum(rates)


def _wait_started(proc: subprocess.Popen[str], processes: int) -> None:
    assert proc.stderr is not None
    started = 0
    for line in proc.stderr:
        if re.search(r"worker \S+ started: ", line):
            started += 1
            if started == processes:
                # keep the pipe drained so the children never block on a full stderr
                threading.Thread(target=proc.stderr.read, daemon=True).start()
                return
    raise RuntimeError("the pool exited before its children started")


def pool_drain(
    url: str, task: str, arg: Any, processes: int, jobs: int, concurrency: int, env: dict[str, str]
) -> float:
    """Jobs per second of ``worker --processes N`` draining ``jobs`` ``task(arg)`` jobs."""
    name = f"bench-pool-{task}-{processes}-{uuid.uuid4().hex[:8]}"
    with TaskQueue(url, queue=name) as queue:
        queue.pause(name)
        for start in range(0, jobs, 5000):
            count = min(5000, jobs - start)
            queue.enqueue_many([{"task": task, "args": [arg]}] * count, strict=False)
        argv = [sys.executable, "-m", "spikard_tasks", "worker", APP, "--queues", name]
        argv += ["--processes", str(processes), "-c", str(concurrency), "--no-scheduler"]
        proc = subprocess.Popen(
            argv,
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            _wait_started(proc, processes)
            t0 = time.perf_counter()
            queue.resume(name)
            while (done := queue.counts()["succeeded"]) < jobs:
                elapsed = time.perf_counter() - t0
                left = (jobs - done) * elapsed / done if done else 0.05
                time.sleep(min(0.25, max(0.005, left / 4)))
            rate = jobs / (time.perf_counter() - t0)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)
        queue.purge(queue=name)
    return rate


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--url", help="store of the spin drain (default: a temporary SQLite file)")
    p.add_argument("--incr-url", help="store of the incr drain (default: --redis)")
    p.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="Redis of the INCR body")
    p.add_argument("--processes", default="1,2", help="process counts, comma separated")
    p.add_argument("--cpu-jobs", type=int, default=3000, help="spin jobs per drain")
    p.add_argument("--incr-jobs", type=int, default=30000, help="incr jobs per drain")
    p.add_argument("--concurrency", type=int, default=4, help="job slots per child (spin)")
    p.add_argument("--incr-concurrency", type=int, default=16, help="job slots per child (incr)")
    p.add_argument("--repeat", type=int, default=1, help="best of this many runs of each figure")
    p.add_argument("--skip-incr", action="store_true", help="only the CPU-bound handler")
    p.add_argument("--json", help="also write the figures as JSON to this path")
    args = p.parse_args()
    counts = [int(n) for n in args.processes.split(",")]
    tmp = tempfile.mkdtemp(prefix="pool-bench-")
    url = args.url or f"sqlite:///{tmp}/bench.db"
    rounds = calibrate()
    key = f"pool-bench-{uuid.uuid4().hex[:8]}"
    cases = [("spin", "spin_body", rounds, url, args.cpu_jobs, args.concurrency)]
    if not args.skip_incr:
        store = args.incr_url or args.redis
        cases.append(("incr", "incr_body", key, store, args.incr_jobs, args.incr_concurrency))
    results: list[dict[str, Any]] = []
    for task, body, arg, store, jobs, slots in cases:
        env = _env(store, args.redis)
        for n in counts:
            # Alternated, best of each: a load that comes and goes hits both alike.
            tops, rates = [], []
            for _ in range(args.repeat):
                tops.append(ceiling(body, arg, n, jobs, env))
                rates.append(pool_drain(store, task, arg, n, jobs, slots, env))
            top, rate = max(tops), max(rates)
            row = {"handler": task, "processes": n, "jobs": jobs, "ceiling_per_s": top}
            row.update(drain_per_s=rate, share_of_ceiling=rate / top)
            results.append(row)
            print(
                f"{task:5} N={n}: drain {rate:9.0f} jobs/s  ceiling {top:9.0f} bodies/s  "
                f"share {rate / top:6.1%}",
                flush=True,
            )
    if not args.skip_incr:
        import redis

        redis.Redis.from_url(args.redis).delete(key)
    print(
        f"spin rounds: {rounds} (~2 ms); job slots per child: spin {args.concurrency}, "
        f"incr {args.incr_concurrency}; best of {args.repeat}"
    )
    for task in dict.fromkeys(r["handler"] for r in results):
        rates = {r["processes"]: r["drain_per_s"] for r in results if r["handler"] == task}
        tops = {r["processes"]: r["ceiling_per_s"] for r in results if r["handler"] == task}
        if 1 in rates and 2 in rates:
            print(
                f"{task}: speed-up 1 -> 2 processes {rates[2] / rates[1]:.2f}x "
                f"(ceiling {tops[2] / tops[1]:.2f}x)"
            )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"cpus": os.cpu_count(), "results": results}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
