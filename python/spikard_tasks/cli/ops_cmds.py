"""The operations commands that read the store, pause or limit queues: ``info`` (with
``--watch``), ``queues list|pause|resume|limit`` and ``workers``. Tables for people, ``--json``
for scripts. Like ``status``, they refuse a SQLite file that does not exist."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from typing import Any

from ..ops_types import STATES, LimitInfo, QueueStats, Stats, WorkerInfo
from ..queue import TaskQueue
from .flow_cmds import format_limits, set_queue_limit
from .jobs import queue_from
from .progress import format_table

__all__ = [
    "age",
    "cmd_info",
    "cmd_queues_limit",
    "cmd_queues_list",
    "cmd_queues_pause",
    "cmd_queues_resume",
    "cmd_workers",
    "ops_queue",
]


def ops_queue(args: argparse.Namespace) -> TaskQueue:
    """The queue of ``--url`` or ``--app`` (an operations command's ``--queue`` is a
    filter, not the queue's name)."""
    where = argparse.Namespace(url=args.url, target=args.target, queue=None)
    return queue_from(where, existing=True)


def age(seconds: float | None) -> str:
    """``"4s"``, ``"3m 20s"``, ``"2h 5m"``, ``"3d 4h"``; ``"-"`` for none."""
    if seconds is None:
        return "-"
    whole = int(seconds)
    for size, unit, small, small_unit in (
        (86400, "d", 3600, "h"),
        (3600, "h", 60, "m"),
        (60, "m", 1, "s"),
    ):
        if whole >= size:
            rest = (whole % size) // small
            return f"{whole // size}{unit} {rest}{small_unit}" if rest else f"{whole // size}{unit}"
    return f"{seconds:.1f}s" if seconds < 10 else f"{whole}s"


def _ago(when: dt.datetime, now: dt.datetime) -> str:
    return f"{age(max(0.0, (now - when).total_seconds()))} ago"


def format_stats(stats: Stats, workers: list[WorkerInfo] | None) -> str:
    """The ``info`` table: one row per queue, then the totals and the live workers."""
    headers = ["queue", *STATES, "oldest ready", "ok/min", "failed/min", "paused"]
    rows: list[list[Any]] = [
        [
            q.queue,
            *(q.counts[s] for s in STATES),
            age(q.oldest_ready_age),
            q.succeeded_last_minute,
            q.failed_last_minute,
            "yes" if q.paused else "no",
        ]
        for q in stats.queues
    ]
    lines = [f"at {stats.at.strftime('%Y-%m-%dT%H:%M:%SZ')}"]
    if rows:
        lines.append(format_table(headers, rows))
        total = stats.counts
        lines.append("total: " + ", ".join(f"{total[s]} {s}" for s in STATES))
    else:
        lines.append("no jobs and no paused queue")
    if stats.limits:
        lines.append("limits:")
        lines.append(format_limits(stats.limits, stats.at))
    if workers is not None:
        held = sum(w.jobs_held for w in workers)
        lines.append(f"workers: {len(workers)} live, {held} jobs held")
    return "\n".join(lines)


def _info_json(stats: Stats, workers: list[WorkerInfo]) -> str:
    return json.dumps({**stats.to_dict(), "workers": [w.to_dict() for w in workers]})


def cmd_info(args: argparse.Namespace) -> int:
    """``info``: the figures once, or every ``--watch`` seconds until Ctrl-C (exit 0)."""
    queue = ops_queue(args)
    try:
        while True:
            stats = queue.stats()
            workers = queue.workers()
            if args.json:
                print(_info_json(stats, workers), flush=True)
            else:
                if args.watch is not None and sys.stdout.isatty():
                    print("\x1b[2J\x1b[H", end="")  # clear the screen, cursor home
                print(format_stats(stats, workers), flush=True)
                if args.watch is not None:
                    print(f"(every {args.watch:g}s; Ctrl-C stops)\n", flush=True)
            if args.watch is None:
                return 0
            time.sleep(args.watch)
    except KeyboardInterrupt:
        return 0


def _listed_queues(stats: Stats) -> list[tuple[QueueStats, LimitInfo | None]]:
    """Every queue with a job, paused or limited, by name, with its limit if any."""
    limits = {lim.name: lim for lim in stats.limits if lim.scope == "queue"}
    rows = {q.queue: q for q in stats.queues}
    for name in limits.keys() - rows.keys():
        rows[name] = QueueStats(name, dict.fromkeys(STATES, 0), None, 0, 0, False)
    return [(rows[name], limits.get(name)) for name in sorted(rows)]


def cmd_queues_list(args: argparse.Namespace) -> int:
    """``queues list``: every queue (with a job, paused or limited), its counts, paused
    flag and limit."""
    listed = _listed_queues(ops_queue(args).stats())
    if args.json:
        out = [
            {**q.to_dict(), "limit": None if lim is None else lim.to_dict()} for q, lim in listed
        ]
        print(json.dumps(out, indent=2))
        return 0
    headers = ["queue", "paused", *STATES, "rate", "max running"]
    rows = [
        [
            q.queue,
            "yes" if q.paused else "no",
            *(q.counts[s] for s in STATES),
            (lim and lim.rate_limit) or "-",
            "-" if lim is None or lim.max_running is None else lim.max_running,
        ]
        for q, lim in listed
    ]
    print(format_table(headers, rows) if rows else "no queues (no jobs and nothing paused)")
    return 0


def cmd_queues_limit(args: argparse.Namespace) -> int:
    """``queues limit NAME``: sets or removes the queue's limit (see ``flow_cmds``)."""
    return set_queue_limit(args, ops_queue(args))


def _pause(args: argparse.Namespace, pause: bool) -> int:
    queue = ops_queue(args)
    changed = queue.pause(args.name) if pause else queue.resume(args.name)
    word = "paused" if pause else "resumed"
    if args.json:
        print(json.dumps({"queue": args.name, word: True, "changed": changed}))
    elif changed:
        print(f"queue {args.name} {word}")
    else:
        print(f"queue {args.name} was already {'paused' if pause else 'not paused'}")
    return 0


def cmd_queues_pause(args: argparse.Namespace) -> int:
    """``queues pause NAME``: no worker starts its jobs within one poll interval."""
    return _pause(args, True)


def cmd_queues_resume(args: argparse.Namespace) -> int:
    """``queues resume NAME``: workers start its jobs again."""
    return _pause(args, False)


def cmd_workers(args: argparse.Namespace) -> int:
    """``workers``: the live workers as a table or JSON."""
    workers = ops_queue(args).workers()
    if args.json:
        print(json.dumps([w.to_dict() for w in workers], indent=2))
        return 0
    if not workers:
        print("no live workers")
        return 0
    now = dt.datetime.now(dt.timezone.utc)
    headers = ["name", "host", "pid", "queues", "concurrency", "held", "started", "heartbeat"]
    rows = [
        [
            w.name,
            w.host,
            w.pid,
            ",".join(w.queues),
            w.concurrency,
            w.jobs_held,
            _ago(w.started_at, now),
            _ago(w.last_heartbeat, now),
        ]
        for w in workers
    ]
    print(format_table(headers, rows))
    print(
        f"{len(workers)} live worker(s), version {', '.join(sorted({w.version for w in workers}))}"
    )
    return 0
