"""The commands that read or change stored jobs and schedules: ``enqueue``, ``status``,
``cancel``, ``cron list`` and ``cron remove``.

All but ``enqueue`` only read or change what exists, so a SQLite file that is not there
is an error (exit code 2, its absolute path named) and nothing is created. With ``--app``
they import the module without storing the schedules it declares at import time
(``queue.schedule(...)`` calls are noted, not written), so ``cron remove`` reports what
was stored before the command and ``cron list`` shows what is stored.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from typing import Any

from ..cron import CronSchedule
from ..exceptions import UnknownTask
from ..queue import TaskQueue
from .status_text import format_job
from .targets import CliError, load_queue, require_database, schedules_noted

__all__ = [
    "cmd_cancel",
    "cmd_cron_list",
    "cmd_cron_remove",
    "cmd_enqueue",
    "cmd_status",
    "queue_from",
]


def queue_from(
    args: argparse.Namespace,
    *,
    existing: bool,
    noted: list[tuple[TaskQueue, CronSchedule]] | None = None,
) -> TaskQueue:
    """The queue of ``--url`` (and ``--queue``) or ``--app``. With ``existing``, the
    command only reads or changes stored jobs: a missing SQLite file is refused and the
    app's import-time schedules are noted in ``noted`` rather than stored."""
    if args.url and args.target:
        raise CliError("give --app MODULE:QUEUE or --url URL, not both")
    if args.url:
        queue = TaskQueue(
            args.url, environment=False, **({"queue": args.queue} if args.queue else {})
        )
    elif args.target:
        if args.queue:
            raise CliError("--queue goes with --url; with --app the app's queue is used")
        if existing:
            with schedules_noted([] if noted is None else noted):
                queue = load_queue(args.target)
        else:
            queue = load_queue(args.target)
    else:
        raise CliError("give --app MODULE:QUEUE or --url URL")
    if existing:
        require_database(queue)
    return queue


def _options(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("priority", "delay", "max_attempts", "unique_key", "timeout")
    return {key: getattr(args, key) for key in keys if getattr(args, key) is not None}


def cmd_enqueue(args: argparse.Namespace) -> int:
    """``enqueue``: checks the task name against the app's tasks (with ``--app``), then
    enqueues one job and prints its id. May create a SQLite file."""
    try:
        call_args = json.loads(args.args)
        call_kwargs = json.loads(args.kwargs)
    except json.JSONDecodeError as exc:
        raise CliError(f"--args/--kwargs must be JSON: {exc}") from None
    queue = queue_from(args, existing=False)
    if args.target:
        known = sorted(queue.tasks)
        if args.task not in known:
            close = difflib.get_close_matches(args.task, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            listed = ", ".join(known) or "none"
            raise UnknownTask(
                f"unknown task {args.task!r}{hint} (tasks of {args.target}: {listed})"
            )
    # With --app the arguments are checked against the handler's signature too.
    strict = bool(args.target)
    job = queue.enqueue(args.task, call_args, call_kwargs, strict=strict, **_options(args))
    print(job.id)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """``status``: the job as text (times with how long ago), or raw with ``--json``."""
    queue = queue_from(args, existing=True)
    rec = queue.native.get(args.job_id)
    if rec is None:
        print(f"no job with id {args.job_id}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(dict(rec), indent=2, default=str))
    else:
        print(format_job(rec))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    """``cancel``: cancels a job; exit code 1 if it was not cancellable."""
    queue = queue_from(args, existing=True)
    cancelled = queue.cancel(args.job_id)
    print(json.dumps({"task_id": args.job_id, "cancelled": cancelled}))
    return 0 if cancelled else 1


def _fmt_time(value: Any) -> str:
    return value.isoformat(timespec="seconds") if value is not None else "-"


def cmd_cron_list(args: argparse.Namespace) -> int:
    """``cron list``: the stored schedules as a table or JSON."""
    states = queue_from(args, existing=True).schedules()
    if args.json:
        rows = [
            {
                **s.schedule.to_dict(),
                "last_run": _fmt_time(s.last_run),
                "next_run": _fmt_time(s.next_run),
            }
            for s in states
        ]
        print(json.dumps(rows, indent=2))
        return 0
    from .progress import format_table

    table = [
        [
            s.schedule.name or "",
            s.schedule.expr,
            s.schedule.timezone,
            s.schedule.task,
            "yes" if s.schedule.enabled else "no",
            _fmt_time(s.last_run),
            _fmt_time(s.next_run),
        ]
        for s in states
    ]
    headers = ["name", "expression", "timezone", "task", "enabled", "last run", "next run"]
    print(format_table(headers, table))
    return 0


def cmd_cron_remove(args: argparse.Namespace) -> int:
    """``cron remove``: removes a stored schedule; exit code 1 if none was stored. With
    ``--app``, a schedule the app declares at import time is not stored by this command,
    and a note says the next process importing the app stores it again."""
    noted: list[tuple[TaskQueue, CronSchedule]] = []
    queue = queue_from(args, existing=True, noted=noted)
    removed = queue.unschedule(args.name)
    print(json.dumps({"name": args.name, "removed": removed}))
    if any(s.name == args.name for _, s in noted):
        print(
            f"note: {args.target} declares schedule {args.name!r} at import time; the next "
            "worker or scheduler that imports it stores it again (remove it from the code)",
            file=sys.stderr,
        )
    return 0 if removed else 1
