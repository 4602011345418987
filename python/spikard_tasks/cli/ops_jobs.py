"""``jobs list|show|retry|cancel|purge``: the job list one page at a time, and the bulk
actions. A bulk action takes job ids or filter options; with a filter that matches more
than :data:`~.ops_args.BULK_LIMIT` jobs it refuses (exit code 2, saying how many) unless
``--yes`` is given. Each prints how many jobs it touched."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Callable
from typing import Any

from .._ops_filter import FINISHED, RETRYABLE
from ..job import JobInfo
from ..queue import TaskQueue
from .jobs import cmd_status
from .ops_args import BULK_LIMIT, filter_kwargs, has_filter
from .ops_cmds import age, ops_queue
from .progress import format_table
from .targets import CliError

__all__ = ["cmd_jobs_cancel", "cmd_jobs_list", "cmd_jobs_purge", "cmd_jobs_retry", "cmd_jobs_show"]

#: The states ``jobs cancel`` touches.
UNFINISHED = ("pending", "scheduled", "running", "retrying")
#: A filter is counted page by page up to this many jobs, for the ``--yes`` message.
COUNT_CAP = 10_000


def _ago(when: dt.datetime | None, now: dt.datetime) -> str:
    return "-" if when is None else f"{age(max(0.0, (now - when).total_seconds()))} ago"


def _last_error(info: JobInfo) -> str:
    if not info.errors:
        return ""
    text = info.errors[-1].error.splitlines()[0] if info.errors[-1].error else ""
    return text if len(text) <= 60 else text[:57] + "..."


def cmd_jobs_list(args: argparse.Namespace) -> int:
    """``jobs list``: one page, newest first, and the cursor of the next."""
    queue = ops_queue(args)
    page = queue.list_jobs(**filter_kwargs(args), limit=args.limit, cursor=args.cursor)
    if args.json:
        print(json.dumps(page.to_dict(), indent=2))
        return 0
    now = dt.datetime.now(dt.timezone.utc)
    headers = ["id", "task", "queue", "status", "attempts", "enqueued", "finished", "last error"]
    rows = [
        [
            j.id,
            j.task,
            j.queue,
            j.status.value,
            f"{j.attempts}/{j.max_attempts}",
            _ago(j.enqueued_at, now),
            _ago(j.finished_at, now),
            _last_error(j),
        ]
        for j in page
    ]
    print(format_table(headers, rows) if rows else "no jobs match")
    if page.next_cursor is not None:
        print(f"more: --cursor {page.next_cursor}")
    return 0


def cmd_jobs_show(args: argparse.Namespace) -> int:
    """``jobs show ID``: the same as ``status ID``."""
    return cmd_status(args)


def _count(
    queue: TaskQueue,
    args: argparse.Namespace,
    states: tuple[str, ...],
    keep: Callable[[JobInfo], bool] | None = None,
) -> int:
    """How many jobs the filter selects among ``states`` (counted up to about
    :data:`COUNT_CAP`)."""
    chosen = [s for s in (args.status or states) if s in states]
    if not chosen:
        return 0
    kwargs = {**filter_kwargs(args), "status": chosen}
    count, cursor = 0, None
    while True:
        page = queue.list_jobs(**kwargs, limit=1000, cursor=cursor)
        count += sum(1 for job in page if keep is None or keep(job))
        if page.next_cursor is None or count > COUNT_CAP:
            return count
        cursor = page.next_cursor


def _guard(args: argparse.Namespace, count: int, verb: str) -> None:
    """Refuses a filter matching more than :data:`BULK_LIMIT` jobs without ``--yes``."""
    if count > BULK_LIMIT and not args.yes:
        many = f"more than {COUNT_CAP}" if count > COUNT_CAP else str(count)
        raise CliError(
            f"the filter matches {many} jobs; {verb} would touch them all: add --yes to "
            f"{verb} them (over {BULK_LIMIT} needs it)"
        )


def _report(args: argparse.Namespace, action: str, touched: int, extra: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps({"action": action, "touched": touched, **extra}))
    else:
        print(f"{action}: {touched} job(s)" + "".join(f", {k} {v}" for k, v in extra.items()))


def _by_ids(args: argparse.Namespace, action: str, one: Callable[[str], bool]) -> int:
    """Applies ``one`` to every id; exit code 1 when some were not touched."""
    if has_filter(args):
        raise CliError("give job ids or filter options, not both")
    missed = [job_id for job_id in args.job_ids if not one(job_id)]
    touched = len(args.job_ids) - len(missed)
    _report(args, action, touched, {"not touched": len(missed)} if missed else {})
    for job_id in missed:
        print(f"{job_id}: not {action} (unknown, or not in a state it applies to)", file=sys.stderr)
    return 1 if missed else 0


def _need_filter(args: argparse.Namespace, verb: str) -> None:
    if not has_filter(args):
        raise CliError(
            f"give the ids of the jobs to {verb}, or filter options "
            "(--status, --task, --queue, --since, --until)"
        )


def cmd_jobs_retry(args: argparse.Namespace) -> int:
    """``jobs retry ID... | --status failed [--task T]``."""
    queue = ops_queue(args)
    if args.job_ids:
        return _by_ids(args, "retried", queue.retry)
    _need_filter(args, "retry")
    _guard(args, _count(queue, args, RETRYABLE), "retry")
    _report(args, "retried", queue.retry_jobs(**filter_kwargs(args)), {})
    return 0


def cmd_jobs_cancel(args: argparse.Namespace) -> int:
    """``jobs cancel ID... | --status pending [--task T]``."""
    queue = ops_queue(args)
    if args.job_ids:
        return _by_ids(args, "cancelled", queue.cancel)
    _need_filter(args, "cancel")
    _guard(args, _count(queue, args, UNFINISHED), "cancel")
    _report(args, "cancelled", queue.cancel_jobs(**filter_kwargs(args)), {})
    return 0


def cmd_jobs_purge(args: argparse.Namespace) -> int:
    """``jobs purge --status succeeded --older-than 7d``."""
    queue = ops_queue(args)
    cutoff = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=args.older_than)

    def old(job: JobInfo) -> bool:
        return job.finished_at is not None and job.finished_at < cutoff

    _guard(args, _count(queue, args, FINISHED, old), "purge")
    purged = queue.purge(**filter_kwargs(args), older_than=args.older_than)
    _report(args, "purged", purged, {})
    return 0
