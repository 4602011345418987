"""The options of the operations commands (``info``, ``jobs …``, ``queues …``,
``workers``): durations (``30s``, ``15m``, ``2h``, ``7d``), instants, the job filter, and
the parser entries themselves."""

from __future__ import annotations

import argparse
import datetime as dt
import math
import re
from collections.abc import Callable
from typing import Any

from .._flow import MAX_RUNNING
from .._limits import MAX_SECONDS
from ..ops_types import STATES
from .args import add_parser, int_range
from .flow_cmds import rate_arg

__all__ = ["BULK_LIMIT", "add_ops_commands", "duration", "filter_kwargs", "instant"]

#: A bulk action whose filter matches more jobs than this needs ``--yes``.
BULK_LIMIT = 100

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")


def duration(text: str) -> float:
    """An argparse type: ``30s``, ``15m``, ``2h``, ``7d`` or plain seconds, as seconds."""
    match = _DURATION.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration: a number with s, m, h or d (30s, 15m, 2h, 7d)"
        )
    value = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if not (math.isfinite(value) and value <= MAX_SECONDS):
        raise argparse.ArgumentTypeError(f"{text!r} is longer than 100 years")
    return value


def instant(text: str) -> dt.datetime:
    """An argparse type: an ISO-8601 time (UTC unless it says otherwise), epoch seconds,
    or a duration meaning that long ago (``2h``: two hours ago)."""
    try:
        when = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        pass
    else:
        return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if math.isfinite(seconds) and abs(seconds) < 253_402_300_799:
            return dt.datetime.fromtimestamp(seconds, tz=dt.timezone.utc)
    try:
        ago = duration(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time: give ISO-8601 (2025-01-31T12:00:00Z), epoch seconds "
            "or a duration ago (2h, 7d)"
        ) from None
    return dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=ago)


def _statuses(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    wrong = [n for n in names if n not in STATES]
    if not names or wrong:
        raise argparse.ArgumentTypeError(
            f"unknown status {', '.join(wrong) or text!r}; valid: {', '.join(STATES)}"
        )
    return names


def filter_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The job filter of the command line as keyword arguments of the operations."""
    return {
        "status": args.status,
        "task": args.task,
        "queue": args.queue,
        "since": args.since,
        "until": args.until,
    }


def has_filter(args: argparse.Namespace) -> bool:
    """Whether any filter option was given."""
    return any(value is not None for value in filter_kwargs(args).values())


def _target(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--app",
        dest="target",
        metavar="MODULE:QUEUE",
        help="the TaskQueue to use, imported from MODULE (e.g. myapp.tasks:queue)",
    )
    p.add_argument(
        "--url",
        help="backend URL, e.g. sqlite:///tasks.db (instead of --app; no module is imported)",
    )


def _json(p: argparse.ArgumentParser, what: str = "a table") -> None:
    p.add_argument("--json", action="store_true", help=f"print JSON instead of {what}")


def _filter(p: argparse.ArgumentParser, states: str = "any state") -> None:
    p.add_argument(
        "--status",
        type=_statuses,
        metavar="S[,S]",
        help=f"only jobs in these states, comma separated (default: {states})",
    )
    p.add_argument("--task", help="only jobs of this task (default: any task)")
    p.add_argument("--queue", help="only jobs of this queue (default: every queue)")
    p.add_argument(
        "--since",
        type=instant,
        metavar="TIME",
        help="only jobs enqueued at or after TIME: ISO-8601, epoch seconds or a duration "
        "ago like 2h (default: no limit)",
    )
    p.add_argument(
        "--until",
        type=instant,
        metavar="TIME",
        help="only jobs enqueued before TIME, as --since (default: no limit)",
    )


def _bulk(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "job_ids",
        nargs="*",
        metavar="ID",
        help=f"the jobs to {what} (default: the jobs the filter options select)",
    )
    p.add_argument(
        "--yes",
        action="store_true",
        help=f"{what} even when the filter matches more than {BULK_LIMIT} jobs",
    )
    _json(p, "a line of text")


Handler = Callable[[argparse.Namespace], int]


def add_ops_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], handlers: dict[str, Handler]
) -> None:
    """Adds ``info``, ``jobs``, ``queues`` and ``workers``; ``handlers`` maps each
    command path (``"jobs list"``) to its function."""
    p = add_parser(sub, "info", "jobs per queue and state, oldest ready job, throughput, workers")
    _target(p)
    p.add_argument(
        "--watch",
        nargs="?",
        const=2.0,
        type=duration,
        metavar="SECONDS",
        help="refresh every SECONDS (2 when none is given) until Ctrl-C (default: print once)",
    )
    _json(p)
    p.set_defaults(func=handlers["info"])

    p = add_parser(sub, "jobs", "list, show, retry, cancel or purge stored jobs")
    jobs = p.add_subparsers(dest="jobs_command", required=True, metavar="ACTION")
    c = add_parser(jobs, "list", "jobs newest first, filtered, one page at a time")
    _target(c)
    _filter(c)
    c.add_argument("--limit", type=int_range(1, 1000), default=50, help="jobs per page (1 to 1000)")
    c.add_argument(
        "--cursor", help="the cursor a previous page printed, for the next page (default: first)"
    )
    _json(c)
    c.set_defaults(func=handlers["jobs list"])
    c = add_parser(jobs, "show", "show a job: times, attempts, errors with tracebacks")
    _target(c)
    c.add_argument("job_id", help="the job's id")
    _json(c, "text (times in epoch ms)")
    c.set_defaults(func=handlers["jobs show"], queue=None)
    c = add_parser(jobs, "retry", "put failed or cancelled jobs back to pending (fresh budget)")
    _target(c)
    _bulk(c, "retry")
    _filter(c, "failed and cancelled")
    c.set_defaults(func=handlers["jobs retry"])
    c = add_parser(jobs, "cancel", "cancel jobs not started, ask running ones to stop")
    _target(c)
    _bulk(c, "cancel")
    _filter(c, "every unfinished state")
    c.set_defaults(func=handlers["jobs cancel"])
    c = add_parser(jobs, "purge", "delete finished jobs that finished long enough ago")
    _target(c)
    _filter(c, "succeeded, failed and cancelled")
    c.add_argument(
        "--older-than",
        type=duration,
        required=True,
        metavar="AGE",
        help="only jobs finished more than AGE ago: 30s, 15m, 2h, 7d (required, no default)",
    )
    c.add_argument(
        "--yes",
        action="store_true",
        help=f"purge even when more than {BULK_LIMIT} jobs match",
    )
    _json(c, "a line of text")
    c.set_defaults(func=handlers["jobs purge"], job_ids=[])

    p = add_parser(sub, "queues", "list queues, pause, resume or limit one")
    queues = p.add_subparsers(dest="queues_command", required=True, metavar="ACTION")
    c = add_parser(
        queues, "list", "every queue with its counts, whether it is paused, and its limit"
    )
    _target(c)
    _json(c)
    c.set_defaults(func=handlers["queues list"])
    for action, text in (
        ("pause", "stop every worker from starting jobs of a queue (enqueue still works)"),
        ("resume", "let workers start jobs of a paused queue again"),
    ):
        c = add_parser(queues, action, text)
        _target(c)
        c.add_argument("name", help="the queue's name")
        _json(c, "a line of text")
        c.set_defaults(func=handlers[f"queues {action}"])
    c = add_parser(
        queues,
        "limit",
        "limit a queue across every worker on every host: jobs running at once and starts "
        "per second/minute/hour/day (replaces its earlier limit; --clear removes it)",
    )
    _target(c)
    c.add_argument("name", help="the queue's name")
    c.add_argument(
        "--max-running",
        type=int_range(1, MAX_RUNNING),
        metavar="N",
        help="at most N jobs of the queue running at once (default: no cap)",
    )
    c.add_argument(
        "--rate",
        type=rate_arg,
        metavar="N/UNIT",
        help="at most N starts per s, m, h or d, spaced evenly: 10/s, 600/m, 5/d "
        "(default: no rate limit)",
    )
    c.add_argument("--clear", action="store_true", help="remove the queue's limit")
    _json(c, "a line of text")
    c.set_defaults(func=handlers["queues limit"])

    p = add_parser(sub, "workers", "live workers: host, pid, queues, jobs held, last heartbeat")
    _target(p)
    _json(p)
    p.set_defaults(func=handlers["workers"])
