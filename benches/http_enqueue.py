"""The 202 path of the HTTP enqueue app under load: one task (``add``) on a SQLite file.

Served by uvicorn (one process), loaded by wrk posting ``{"args": [1, 2]}``:

    SPIKARD_TASKS_URL=sqlite:///$TMP/jobs.db uvicorn benches.http_enqueue:app \
        --port 8765 --log-level warning --no-access-log
    wrk -t2 -c32 -d10s --latency -s benches/http/post.lua http://127.0.0.1:8765/tasks/add

``benches/http/compare.sh OLD_PYTHONPATH`` runs that for an old and the current tree,
alternately, and prints requests/s and p99 of each run.
"""

from __future__ import annotations

import os

from spikard_tasks import TaskQueue
from spikard_tasks.asgi import create_app

queue = TaskQueue(os.environ.get("SPIKARD_TASKS_URL", "sqlite:///bench-http.db"))


@queue.task(name="add")
def add(a: int, b: int) -> int:
    """Adds two integers."""
    return a + b


app = create_app(queue)
