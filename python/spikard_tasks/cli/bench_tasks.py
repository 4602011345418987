"""The task module the benchmark's durable worker process runs.

``spikard-tasks worker spikard_tasks.cli.bench_tasks:queue`` with ``SPIKARD_TASKS_URL``,
``SPIKARD_TASKS_QUEUE`` and ``SPIKARD_TASKS_POLL_INTERVAL`` set by
:mod:`spikard_tasks.cli.bench`.
"""

from __future__ import annotations

from ..queue import TaskQueue
from .bench import register_tasks

__all__ = ["queue"]

queue = TaskQueue()
register_tasks(queue)
