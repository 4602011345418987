"""The ``spikard-tasks`` command line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from .. import _native
from .._version import installed_version
from ..exceptions import ConfigError, SpikardTasksError
from .args import (
    ATTEMPTS,
    PRIORITY,
    PROCESSES,
    HelpFormatter,
    add_log_level,
    add_parser,
    add_queue_args,
    int_range,
    seconds,
    setup_logging,
)
from .dashboard_cmd import add_dashboard
from .jobs import cmd_cancel, cmd_cron_list, cmd_cron_remove, cmd_enqueue, cmd_status
from .ops_args import add_ops_commands
from .ops_cmds import (
    cmd_info,
    cmd_queues_limit,
    cmd_queues_list,
    cmd_queues_pause,
    cmd_queues_resume,
    cmd_workers,
)
from .ops_jobs import cmd_jobs_cancel, cmd_jobs_list, cmd_jobs_purge, cmd_jobs_retry, cmd_jobs_show
from .targets import CliError, load_queue
from .worker_cmd import cmd_scheduler, cmd_worker

__all__ = ["build_parser", "load_queue", "main", "run"]


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.url:
        os.environ["SPIKARD_TASKS_DEMO_URL"] = args.url
    from .demo import run_demo

    return run_demo(jobs=args.jobs, concurrency=args.concurrency)


def _cmd_serve(args: argparse.Namespace) -> int:
    try:
        from ..http.serve import serve
    except ImportError as exc:  # the http extra is not installed: its message says so
        raise ConfigError(str(exc)) from None

    serve(
        args.target,
        host=args.host,
        port=args.port,
        prefix=args.prefix,
        max_body_bytes=args.max_body_bytes,
        root_path=args.root_path,
        log_level=args.log_level.lower(),
        access_log=not args.no_access_log,
    )
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from .bench import run

    return run(args)


class _VersionAction(argparse.Action):
    """``--version``: reads the package metadata only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_args: Any, **_kwargs: Any) -> None:
        print(f"spikard-tasks {installed_version()} (engine {_native.__version__})")
        parser.exit()


def _queue_command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help: str
) -> argparse.ArgumentParser:
    p = add_parser(sub, name, help)
    add_queue_args(p)
    return p


def _add_worker(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = add_parser(
        sub,
        "worker",
        "run a worker until SIGINT/SIGTERM, then drain (a second signal stops at once)",
    )
    p.add_argument(
        "target", metavar="MODULE:QUEUE", help="the app's TaskQueue, e.g. app.tasks:queue"
    )
    p.add_argument(
        "--url", help="backend URL instead of the app queue's (the app is still imported)"
    )
    p.add_argument(
        "-c",
        "--concurrency",
        type=int_range(1),
        help="jobs run at once, every queue together (default: the sum of the --queues "
        "numbers when each has one, else the queue's concurrency, 16 unless configured)",
    )
    p.add_argument(
        "--queues",
        metavar="A,B=N",
        help="consume exactly these queues, comma separated; NAME=N runs at most N jobs of "
        "that queue at once in this worker (e.g. emails=4,reports=1; the default "
        "--concurrency is then the sum when every queue has a number) (default: the app "
        "queue's own, no cap of its own)",
    )
    p.add_argument("--name", help="worker name, stored on the jobs it holds (default: unique)")
    p.add_argument(
        "--drain-timeout",
        type=seconds(),
        help="seconds a stopping worker waits for jobs in flight (default: the queue's, 30 "
        "unless configured)",
    )
    p.add_argument(
        "--no-scheduler", action="store_true", help="do not run the cron scheduler in this worker"
    )
    p.add_argument(
        "--processes",
        type=PROCESSES,
        default=1,
        metavar="N",
        help="worker processes under one supervisor, which restarts a child that dies; "
        "'auto': one per CPU; 1 runs the worker in this process, with no supervisor",
    )
    p.add_argument(
        "--max-jobs-per-child",
        type=int_range(1),
        metavar="N",
        help="a child that started N jobs drains, exits and is replaced at once "
        "(default: no limit)",
    )
    p.add_argument(
        "--max-memory-per-child",
        type=int_range(1),
        metavar="MB",
        help="a child whose RSS passes MB megabytes drains, exits and is replaced at once "
        "(default: no limit)",
    )
    p.add_argument(
        "--metrics-port",
        type=int_range(0, 65535),
        help="serve /metrics (Prometheus), /healthz and /readyz on this port (0: a free one; "
        "with --processes, child I serves on PORT+I; default: not served)",
    )
    p.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        help="address the metrics port listens on (0.0.0.0 for every interface)",
    )
    add_log_level(p)
    p.set_defaults(func=cmd_worker)

    p = add_parser(sub, "scheduler", "run only the cron scheduler until SIGINT/SIGTERM")
    p.add_argument(
        "target", metavar="MODULE:QUEUE", help="the app's TaskQueue, e.g. app.tasks:queue"
    )
    p.add_argument(
        "--url", help="backend URL instead of the app queue's (the app is still imported)"
    )
    add_log_level(p)
    p.set_defaults(func=cmd_scheduler)


def _add_jobs(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = add_parser(sub, "cron", "list or remove stored cron schedules")
    cron = p.add_subparsers(dest="cron_command", required=True, metavar="{list,remove}")
    c = _queue_command(cron, "list", "name, expression, timezone, task, last and next run")
    c.add_argument("--json", action="store_true", help="print JSON instead of a table")
    c.set_defaults(func=cmd_cron_list)
    c = _queue_command(
        cron, "remove", "remove a stored schedule by name (exit code 1 if none was stored)"
    )
    c.add_argument("name", help="the schedule's name")
    c.set_defaults(func=cmd_cron_remove)

    p = _queue_command(sub, "enqueue", "enqueue a job by task name; prints its id")
    p.add_argument("task", help="task name (checked against the app's tasks with --app)")
    p.add_argument("--args", default="[]", help="JSON array of positional arguments")
    p.add_argument("--kwargs", default="{}", help="JSON object of keyword arguments")
    p.add_argument("--priority", type=PRIORITY, help="higher runs first (default: the task's)")
    p.add_argument(
        "--delay", type=seconds(), help="seconds before the job may run (default: at once)"
    )
    p.add_argument(
        "--max-attempts", type=ATTEMPTS, help="attempts the job gets (default: the task's)"
    )
    p.add_argument("--unique-key", help="no second unfinished job with this key (default: no key)")
    p.add_argument(
        "--timeout",
        type=seconds(zero_ok=False),
        help="seconds one attempt may run (default: the task's, none unless set)",
    )
    p.set_defaults(func=cmd_enqueue)

    p = _queue_command(sub, "status", "show a job: times, attempts, errors with tracebacks")
    p.add_argument("job_id", help="the id enqueue printed")
    p.add_argument(
        "--json", action="store_true", help="print the stored record as JSON (times in epoch ms)"
    )
    p.set_defaults(func=cmd_status)

    p = _queue_command(sub, "cancel", "cancel a job (exit code 1 if it was not cancellable)")
    p.add_argument("job_id", help="the id enqueue printed")
    p.set_defaults(func=cmd_cancel)


def _add_tools(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = add_parser(sub, "demo", "run the demo on the embedded default (SQLite)")
    p.add_argument("--jobs", type=int_range(1), default=300, help="jobs to enqueue")
    p.add_argument("-c", "--concurrency", type=int_range(1), default=8, help="worker slots")
    p.add_argument("--url", help="backend URL (default: sqlite:///spikard_tasks_demo.db)")
    p.set_defaults(func=_cmd_demo)

    p = add_parser(sub, "serve", "serve the HTTP enqueue API (needs uvicorn)")
    p.add_argument("target", metavar="MODULE:QUEUE", help="a TaskQueue or a create_app() app")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    p.add_argument("--port", type=int_range(0, 65535), default=8000, help="TCP port")
    p.add_argument("--prefix", help="route prefix (default: /tasks)")
    p.add_argument(
        "--max-body-bytes", type=int_range(1), help="request body limit (default: 1 MiB)"
    )
    p.add_argument(
        "--root-path", default="", help="path prefix added by a reverse proxy (default: none)"
    )
    add_log_level(p)
    p.add_argument("--no-access-log", action="store_true", help="do not log each request")
    p.set_defaults(func=_cmd_serve)

    add_dashboard(sub)

    from .bench import add_arguments as add_bench_arguments

    p = add_parser(sub, "bench", "throughput and latency: the fast path against durable URLs")
    add_bench_arguments(p)
    p.set_defaults(func=_cmd_bench)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(
        prog="spikard-tasks",
        description="Durable task queue with a Rust core.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log at INFO level (commands without --log-level)",
    )
    parser.add_argument("-V", "--version", action=_VersionAction, help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_worker(sub)
    _add_jobs(sub)
    add_ops_commands(
        sub,
        {
            "info": cmd_info,
            "jobs list": cmd_jobs_list,
            "jobs show": cmd_jobs_show,
            "jobs retry": cmd_jobs_retry,
            "jobs cancel": cmd_jobs_cancel,
            "jobs purge": cmd_jobs_purge,
            "queues list": cmd_queues_list,
            "queues pause": cmd_queues_pause,
            "queues resume": cmd_queues_resume,
            "queues limit": cmd_queues_limit,
            "workers": cmd_workers,
        },
    )
    _add_tools(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``spikard-tasks`` command."""
    return run(build_parser().parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Runs the parsed command: logging set up, errors printed as one line (exit code 2)."""
    setup_logging(
        getattr(args, "log_level", None) or ("INFO" if args.verbose else "WARNING"),
        getattr(args, "log_format", "text"),
    )
    try:
        code: int = args.func(args)
    except CliError as exc:
        print(f"spikard-tasks {args.command}: {exc}", file=sys.stderr)
        return 2
    except SpikardTasksError as exc:
        print(f"spikard-tasks: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
