"""A worker child of the pool: ``python -m spikard_tasks.cli.pool_child --index I
--report-fd FD [--parent PID] [--max-jobs N] [--max-memory MB] worker APP [options]``.

It runs ``spikard-tasks worker APP [options]`` as the command line does (the same import of
the app, signals and drain), with a :class:`~spikard_tasks.pool.recycle.Recycler`, and
writes its report as JSON to ``FD`` instead of printing it (the supervisor sums them).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ..pool.launch import URL_VARIABLE
from .main import build_parser, run

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m spikard_tasks.cli.pool_child",
        description="one worker child of a spikard-tasks worker pool (started by its supervisor)",
    )
    p.add_argument("--index", type=int, required=True, help="the child's position in the pool")
    p.add_argument("--report-fd", type=int, help="file descriptor the report is written to")
    p.add_argument("--parent", type=int, help="the supervisor's pid: drain when it is gone")
    p.add_argument("--max-jobs", type=int, help="recycle after starting this many jobs")
    p.add_argument("--max-memory", type=float, help="recycle above this RSS in MB")
    p.add_argument("worker_argv", nargs=argparse.REMAINDER, help="worker APP [options]")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Parses the child's own options and runs ``worker`` with them."""
    own = _parser().parse_args(argv)
    args = build_parser().parse_args(own.worker_argv)
    if args.command != "worker":
        raise SystemExit("a pool child runs the worker command only")
    url = os.environ.pop(URL_VARIABLE, None)
    if url:
        args.url = url
    args.pool_child = own
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
