"""``spikard-tasks dashboard MODULE:QUEUE | --url URL``: the web dashboard on uvicorn."""

from __future__ import annotations

import argparse
import sys

from ..exceptions import ConfigError
from .args import add_log_level, add_parser, int_range
from .jobs import queue_from
from .targets import CliError

__all__ = ["add_dashboard", "cmd_dashboard"]

#: Hosts that only this machine reaches.
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def cmd_dashboard(args: argparse.Namespace) -> int:
    """Serves the dashboard of the queue (``--url`` or ``MODULE:QUEUE``) until Ctrl-C.
    A SQLite file that does not exist is refused (nothing is created)."""
    if args.app:
        if args.target:
            raise CliError("give MODULE:QUEUE once (as an argument or with --app)")
        args.target = args.app
    queue = queue_from(args, existing=True)
    try:
        from ..http.serve import serve_dashboard
    except ImportError as exc:  # the http extra is not installed: its message says so
        raise ConfigError(str(exc)) from None
    print(
        f"spikard-tasks dashboard: {queue!r} at http://{_netloc(args.host, args.port)}/"
        + (" (read-only)" if args.read_only else ""),
        flush=True,
    )
    if not args.read_only and args.host not in _LOOPBACK:
        print(
            f"spikard-tasks dashboard: warning: listening on {args.host} without "
            "authentication; anyone who reaches it can retry, cancel, purge and pause "
            "(use --read-only, or mount dashboard_app() behind your auth)",
            file=sys.stderr,
            flush=True,
        )
    serve_dashboard(
        queue,
        host=args.host,
        port=args.port,
        read_only=args.read_only,
        log_level=args.log_level.lower(),
        access_log=args.access_log,
    )
    return 0


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def add_dashboard(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds the ``dashboard`` command."""
    p = add_parser(sub, "dashboard", "serve the web dashboard of a queue (needs uvicorn)")
    p.add_argument("target", nargs="?", metavar="MODULE:QUEUE", help="the TaskQueue (or use --url)")
    p.add_argument(
        "--app",
        metavar="MODULE:QUEUE",
        help="the TaskQueue, as other commands take it (default: the argument)",
    )
    p.add_argument(
        "--url",
        help="backend URL, e.g. sqlite:///tasks.db (instead of MODULE:QUEUE; nothing imported)",
    )
    p.add_argument(
        "--queue",
        help="queue name with --url (default: 'default'); the dashboard shows every queue",
    )
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    p.add_argument("--port", type=int_range(0, 65535), default=8000, help="TCP port")
    p.add_argument(
        "--read-only", action="store_true", help="hide and refuse retry, cancel, purge and pause"
    )
    p.add_argument("--access-log", action="store_true", help="log each request")
    add_log_level(p)
    p.set_defaults(func=cmd_dashboard)
