"""The ``spikard-tasks`` command line: worker, scheduler, cron, enqueue, status,
cancel, serve, demo and bench (``spikard_tasks.cli:main`` is the console script)."""

from .main import build_parser, load_queue, main

__all__ = ["build_parser", "load_queue", "main"]
