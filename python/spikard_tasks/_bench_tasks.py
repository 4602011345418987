"""The task module the benchmark's durable worker process runs.

``spikard-tasks worker spikard_tasks._bench_tasks:queue`` with ``SPIKARD_TASKS_URL``,
``SPIKARD_TASKS_QUEUE`` and ``SPIKARD_TASKS_POLL_INTERVAL`` set by
:mod:`spikard_tasks.bench`.
"""

from __future__ import annotations

from .bench import register_tasks
from .queue import TaskQueue

__all__ = ["queue"]

queue = TaskQueue()
register_tasks(queue)
