"""The ``spikard-tasks`` command line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from .. import _native
from .._targets import import_target
from .._version import installed_version
from ..exceptions import ConfigError, SpikardTasksError
from ..queue import TaskQueue

__all__ = ["load_queue", "main"]


def load_queue(target: str) -> TaskQueue:
    """Imports ``module:attribute`` (attribute may be dotted) and returns the TaskQueue."""
    obj = import_target(target)
    if not isinstance(obj, TaskQueue):
        raise ConfigError(f"{target} is a {type(obj).__name__}, not a TaskQueue")
    return obj


def _queue_from(args: argparse.Namespace) -> TaskQueue:
    if getattr(args, "url", None):
        return TaskQueue(args.url, **({"queue": args.queue} if args.queue else {}))
    if getattr(args, "target", None):
        return load_queue(args.target)
    raise ConfigError("give MODULE:QUEUE or --url URL")


def _add_queue_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--app", dest="target", metavar="MODULE:QUEUE", help="the TaskQueue to use")
    p.add_argument("--url", help="backend URL (instead of --app)")
    p.add_argument("--queue", help="queue name with --url (default: 'default')")


def _cmd_worker(args: argparse.Namespace) -> int:
    queue = load_queue(args.target)
    queues = [q for q in (args.queues or "").split(",") if q]
    report = queue.run_worker(
        concurrency=args.concurrency,
        queues=queues,
        name=args.name,
        drain_timeout=args.drain_timeout,
        scheduler=not args.no_scheduler,
    )
    print(json.dumps({"worker": "stopped", **report}), flush=True)
    return 0


def _cmd_scheduler(args: argparse.Namespace) -> int:
    queue = load_queue(args.target)
    logging.getLogger("spikard_tasks.cli").info("scheduler started for %r", queue)
    queue.run_scheduler()
    print(json.dumps({"scheduler": "stopped"}), flush=True)
    return 0


def _fmt_time(value: Any) -> str:
    return value.isoformat(timespec="seconds") if value is not None else "-"


def _cmd_cron_list(args: argparse.Namespace) -> int:
    states = _queue_from(args).schedules()
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
    print(
        format_table(
            ["name", "expression", "timezone", "task", "enabled", "last run", "next run"],
            table,
        )
    )
    return 0


def _cmd_cron_remove(args: argparse.Namespace) -> int:
    removed = _queue_from(args).unschedule(args.name)
    print(json.dumps({"name": args.name, "removed": removed}))
    return 0 if removed else 1


def _cmd_enqueue(args: argparse.Namespace) -> int:
    queue = _queue_from(args)
    options: dict[str, Any] = {}
    for key in ("priority", "delay", "max_attempts", "unique_key", "timeout"):
        value = getattr(args, key)
        if value is not None:
            options[key] = value
    try:
        call_args = json.loads(args.args)
        call_kwargs = json.loads(args.kwargs)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--args/--kwargs must be JSON: {exc}") from None
    job = queue.enqueue(args.task, call_args, call_kwargs, strict=False, **options)
    print(job.id)
    return 0


def _info_dict(queue: TaskQueue, job_id: str) -> dict[str, Any] | None:
    rec = queue.native.get(job_id)
    return None if rec is None else dict(rec)


def _cmd_status(args: argparse.Namespace) -> int:
    queue = _queue_from(args)
    info = _info_dict(queue, args.job_id)
    if info is None:
        print(f"no job with id {args.job_id}", file=sys.stderr)
        return 1
    print(json.dumps(info, indent=2, default=str))
    return 0


def _cmd_cancel(args: argparse.Namespace) -> int:
    queue = _queue_from(args)
    cancelled = queue.cancel(args.job_id)
    print(json.dumps({"task_id": args.job_id, "cancelled": cancelled}))
    return 0 if cancelled else 1


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
        log_level=args.log_level,
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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(
        prog="spikard-tasks", description="Durable task queue with a Rust core."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    parser.add_argument("-V", "--version", action=_VersionAction, help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("worker", help="run a worker until SIGINT/SIGTERM, then drain")
    p.add_argument("target", metavar="MODULE:QUEUE")
    p.add_argument("-c", "--concurrency", type=int, default=None)
    p.add_argument("--queues", help="extra queues to consume, comma separated")
    p.add_argument("--name", help="worker name (unique by default)")
    p.add_argument("--drain-timeout", type=float, default=None)
    p.add_argument(
        "--no-scheduler", action="store_true", help="do not run the cron scheduler in this worker"
    )
    p.set_defaults(func=_cmd_worker)

    p = sub.add_parser("scheduler", help="run only the cron scheduler until SIGINT/SIGTERM")
    p.add_argument("target", metavar="MODULE:QUEUE")
    p.set_defaults(func=_cmd_scheduler)

    p = sub.add_parser("cron", help="list or remove cron schedules")
    cron = p.add_subparsers(dest="cron_command", required=True)
    c = cron.add_parser("list", help="name, expression, timezone, task, last and next run")
    _add_queue_args(c)
    c.add_argument("--json", action="store_true", help="print JSON instead of a table")
    c.set_defaults(func=_cmd_cron_list)
    c = cron.add_parser("remove", help="remove a schedule by name")
    _add_queue_args(c)
    c.add_argument("name")
    c.set_defaults(func=_cmd_cron_remove)

    p = sub.add_parser("enqueue", help="enqueue a job by task name; prints its id")
    _add_queue_args(p)
    p.add_argument("task")
    p.add_argument("--args", default="[]", help="JSON array of positional arguments")
    p.add_argument("--kwargs", default="{}", help="JSON object of keyword arguments")
    p.add_argument("--priority", type=int)
    p.add_argument("--delay", type=float)
    p.add_argument("--max-attempts", type=int)
    p.add_argument("--unique-key")
    p.add_argument("--timeout", type=float)
    p.set_defaults(func=_cmd_enqueue)

    p = sub.add_parser("status", help="show a job as JSON")
    _add_queue_args(p)
    p.add_argument("job_id")
    p.set_defaults(func=_cmd_status)

    p = sub.add_parser("cancel", help="cancel a job")
    _add_queue_args(p)
    p.add_argument("job_id")
    p.set_defaults(func=_cmd_cancel)

    p = sub.add_parser("demo", help="run the demo on the embedded default (SQLite)")
    p.add_argument("--jobs", type=int, default=300)
    p.add_argument("-c", "--concurrency", type=int, default=8)
    p.add_argument("--url", help="backend URL (default sqlite:///spikard_tasks_demo.db)")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("serve", help="serve the HTTP enqueue API (needs uvicorn)")
    p.add_argument("target", metavar="MODULE:QUEUE", help="a TaskQueue or a create_app() app")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--prefix", help="route prefix (default /tasks)")
    p.add_argument("--max-body-bytes", type=int, help="request body limit (default 1 MiB)")
    p.add_argument("--root-path", default="", help="path prefix added by a reverse proxy")
    p.add_argument("--log-level", default="info")
    p.add_argument("--no-access-log", action="store_true")
    p.set_defaults(func=_cmd_serve)

    from .bench import add_arguments as add_bench_arguments

    p = sub.add_parser("bench", help="throughput and latency: the fast path against durable URLs")
    add_bench_arguments(p)
    p.set_defaults(func=_cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``spikard-tasks`` command."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose or args.command == "worker" else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        code: int = args.func(args)
    except SpikardTasksError as exc:
        print(f"spikard-tasks: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
