"""What the command line's options share: range-checked value types, the help formatter
that shows every default, and the queue and logging options several commands take."""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from collections.abc import Callable

from .._limits import MAX_ATTEMPTS, MAX_SECONDS

__all__ = [
    "LOG_LEVELS",
    "PROCESSES",
    "HelpFormatter",
    "add_log_level",
    "add_parser",
    "add_queue_args",
    "int_range",
    "seconds",
    "setup_logging",
]

#: The levels ``--log-level`` accepts.
LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "WARNING", "ERROR")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: …)`` after every option that has a default value; options whose
    default is ``None`` (or a flag's ``False``) say in their help what applies instead."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or action.default == "":
            return action.help
        return super()._get_help_string(action)


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help: str
) -> argparse.ArgumentParser:
    """A subcommand whose ``--help`` shows ``help`` and every default."""
    return sub.add_parser(name, help=help, description=help, formatter_class=HelpFormatter)


def int_range(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer from ``low`` to ``high`` (inclusive); argparse names
    the option in its error (``argument --concurrency: …``) and exits with code 2."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low or (high is not None and value > high):
            bound = f"at least {low}" if high is None else f"from {low} to {high}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def seconds(*, zero_ok: bool = True) -> Callable[[str], float]:
    """An argparse type: a finite number of seconds from 0 (more than 0 unless
    ``zero_ok``) to 100 years, the limit of every duration."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
        low_ok = value >= 0 if zero_ok else value > 0
        if not (math.isfinite(value) and low_ok and value <= MAX_SECONDS):
            low = "0" if zero_ok else "more than 0"
            raise argparse.ArgumentTypeError(
                f"must be a finite number of seconds from {low} to {MAX_SECONDS:.0f}, got {text}"
            )
        return value

    parse.__name__ = "seconds"
    return parse


def _processes(text: str) -> int:
    if text == "auto":
        return os.cpu_count() or 1
    try:
        return int_range(1)(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"must be a whole number of at least 1 or 'auto', got {text!r}"
        ) from None


_processes.__name__ = "processes"
#: A number of worker processes: at least 1, or ``auto`` (the CPU count).
PROCESSES = _processes

#: Attempts of one job: 1 to the engine's limit.
ATTEMPTS = int_range(1, MAX_ATTEMPTS)
#: A priority: the engine stores it as a 32-bit integer.
PRIORITY = int_range(-(2**31), 2**31 - 1)


def add_queue_args(p: argparse.ArgumentParser) -> None:
    """``--app``, ``--url`` and ``--queue``: which queue a command reads or writes."""
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
    p.add_argument(
        "--queue",
        help="queue name with --url (default: 'default'; with --app: the app queue's)",
    )


def add_log_level(p: argparse.ArgumentParser) -> None:
    """``--log-level`` and ``--log-format``: how the ``spikard_tasks`` loggers (the
    engine's included) print on stderr."""
    p.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        default="INFO",
        help="log level of the spikard_tasks loggers, the engine's included (printed on stderr)",
    )
    p.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="text lines, or one JSON object per line (with job_id, task, queue, ... fields)",
    )


def setup_logging(level: str, log_format: str = "text") -> None:
    """Logs to stderr: ``spikard_tasks`` loggers at ``level``, others at WARNING."""
    from .._logging import JsonFormatter, refresh

    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    logging.getLogger("spikard_tasks").setLevel(level)
    refresh()
