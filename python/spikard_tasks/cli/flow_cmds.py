"""Flow control on the command line: ``queues limit NAME [--max-running N] [--rate 10/s]
[--clear]``, and the limits table ``info`` and ``queues list`` print."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from typing import Any

from .._flow import check_rate
from ..exceptions import ConfigError
from ..ops_types import LimitInfo
from .progress import format_table
from .targets import CliError

__all__ = ["describe_limit", "format_limits", "rate_arg", "set_queue_limit"]


def rate_arg(text: str) -> str:
    """An argparse type: a rate (``10/s``, ``600/m``, ``10/h``, ``5/d``), as written by
    the engine."""
    try:
        rate = check_rate(text, "--rate")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    assert rate is not None
    return rate


rate_arg.__name__ = "rate"


def describe_limit(rate: str | None, max_running: int | None) -> str:
    """``"at most 5 running, 10/s"``; ``"no limit"`` when neither is set."""
    parts = []
    if max_running is not None:
        parts.append(f"at most {max_running} running")
    if rate is not None:
        parts.append(f"{rate} starts")
    return ", ".join(parts) or "no limit"


def _next_start(limit: LimitInfo, now: dt.datetime) -> str:
    if limit.next_start is None:
        return "now" if limit.rate_limit else "-"
    wait = max(0.0, (limit.next_start - now).total_seconds())
    return f"in {wait:.2f}s" if wait < 60 else limit.next_start.strftime("%Y-%m-%dT%H:%M:%SZ")


def format_limits(limits: list[LimitInfo], now: dt.datetime | None = None) -> str:
    """The limits table: scope, name, rate, max running, running now, next start."""
    now = now or dt.datetime.now(dt.timezone.utc)
    headers = ["scope", "name", "rate", "max running", "running now", "next start"]
    rows: list[list[Any]] = [
        [
            lim.scope,
            lim.name,
            lim.rate_limit or "-",
            "-" if lim.max_running is None else lim.max_running,
            lim.running,
            _next_start(lim, now),
        ]
        for lim in limits
    ]
    return format_table(headers, rows)


def set_queue_limit(args: argparse.Namespace, queue: Any) -> int:
    """``queues limit NAME``: sets (replaces) or, with ``--clear``, removes the queue's
    limit in the store."""
    given = args.max_running is not None or args.rate is not None
    if args.clear and given:
        raise CliError("--clear removes the limit: give it without --max-running and --rate")
    if not args.clear and not given:
        raise CliError("give --max-running N and/or --rate N/s|m|h|d, or --clear to remove")
    changed = queue.limit(args.name, max_running=args.max_running, rate_limit=args.rate)
    if args.json:
        print(
            json.dumps(
                {
                    "queue": args.name,
                    "rate_limit": args.rate,
                    "max_running": args.max_running,
                    "changed": changed,
                }
            )
        )
    elif args.clear:
        print(f"queue {args.name}: limit removed" if changed else f"queue {args.name}: no limit")
    elif changed:
        print(f"queue {args.name}: {describe_limit(args.rate, args.max_running)}")
    else:
        print(f"queue {args.name}: already {describe_limit(args.rate, args.max_running)}")
    return 0
