"""``spikard-tasks worker --processes N``: the supervisor side of the command (the
children run ``worker`` through ``spikard_tasks.cli.pool_child``).

The supervisor imports the app once (storing nothing: its schedules are only noted) so
that a wrong ``MODULE:QUEUE`` or an ``inprocess://`` queue fails here with exit code 2,
not in every child; then it runs :class:`~spikard_tasks.pool.supervisor.Supervisor` and
prints the children's summed report as ``worker`` prints its own.
"""

from __future__ import annotations

import argparse
import json
import logging

from .._flow import parse_queues
from ..cron import CronSchedule
from ..exceptions import ConfigError
from ..pool.launch import child_command, child_env
from ..pool.supervisor import Supervisor
from ..queue import TaskQueue
from .targets import CliError, load_queue, schedules_noted

__all__ = ["run_supervisor", "wants_pool"]

log = logging.getLogger("spikard_tasks.cli")


def wants_pool(args: argparse.Namespace) -> bool:
    """Whether ``worker`` runs a supervisor: more than one process, or recycling."""
    if getattr(args, "pool_child", None) is not None:
        return False
    recycling = args.max_jobs_per_child is not None or args.max_memory_per_child is not None
    return bool(args.processes > 1 or recycling)


def _check_app(args: argparse.Namespace) -> None:
    if args.queues is not None:
        try:
            parse_queues(args.queues)  # wrong here, not in every child
        except ConfigError as exc:
            raise CliError(str(exc)) from None
    noted: list[tuple[TaskQueue, CronSchedule]] = []
    with schedules_noted(noted):
        queue = load_queue(args.target)
    durable = queue.is_durable
    if args.url:
        other = TaskQueue(queue.config.replace(url=args.url), environment=False)
        durable = other.is_durable
        other.close()
    if not durable:
        raise CliError("--processes needs a durable backend URL (sqlite, postgres, …)")


def _worker_args(args: argparse.Namespace) -> list[str]:
    argv = ["worker", args.target]
    if args.concurrency is not None:
        argv += ["--concurrency", str(args.concurrency)]
    if args.queues is not None:
        argv += ["--queues", args.queues]
    if args.drain_timeout is not None:
        argv += ["--drain-timeout", repr(args.drain_timeout)]
    if args.no_scheduler:
        argv.append("--no-scheduler")
    argv += ["--metrics-host", args.metrics_host]
    argv += ["--log-level", args.log_level, "--log-format", args.log_format]
    return argv


def run_supervisor(args: argparse.Namespace) -> int:
    """Runs ``args.processes`` worker children until SIGINT/SIGTERM; returns the exit
    code (0 when every child drained and exited 0)."""
    _check_app(args)
    command = child_command(
        _worker_args(args),
        name=args.name,
        metrics_port=args.metrics_port,
        max_jobs=args.max_jobs_per_child,
        max_memory_mb=args.max_memory_per_child,
    )
    result = Supervisor(command, args.processes, env=child_env(args.url)).run()
    print(json.dumps({"worker": "stopped", **result.report}), flush=True)
    return result.code
