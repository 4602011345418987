"""Tasks and apps for the operations routes and the dashboard (tests/test_http_ops.py,
tests/test_dashboard_browser.py), served with ``spikard-tasks serve`` and run by
``spikard-tasks worker tests.apps.ops_web:queue``.

The URL comes from SPIKARD_TASKS_URL and the queue name from SPIKARD_TASKS_QUEUE (each
test its own). ``ops.flaky`` fails while its marker file is missing and creates it, so
it fails on its first run and succeeds when retried.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from spikard_tasks import Backoff, TaskQueue
from spikard_tasks.asgi import AuthResult, create_app
from spikard_tasks.http.wire import Scope, header

queue = TaskQueue(
    os.environ.get("SPIKARD_TASKS_URL", "sqlite:///test-ops.db"),
    poll_interval=0.05,
    drain_timeout=5.0,
    backoff=Backoff(initial=0.01, max=0.05, jitter=0.0),
)


@queue.task(name="ops.ok")
def ok(x: int) -> int:
    """Doubles ``x``."""
    return x * 2


@queue.task(name="ops.boom", max_attempts=1)
def boom(message: str) -> None:
    """Always fails with ``ValueError(message)``."""
    raise ValueError(message)


@queue.task(name="ops.flaky", max_attempts=1)
def flaky(marker: str) -> str:
    """Fails while ``marker`` does not exist (creating it), then succeeds."""
    path = Path(marker)
    if not path.exists():
        path.write_text("failed once\n")
        raise RuntimeError(f"first run fails (marker {path.name} was missing)")
    return "recovered"


@queue.task(name="ops.slow", timeout=60.0)
def slow(seconds: float) -> float:
    """Sleeps ``seconds``."""
    time.sleep(seconds)
    return seconds


def _check(scope: Scope) -> AuthResult:
    """``Bearer admin`` may do anything, ``Bearer viewer`` may only read; no token: 401."""
    token = header(scope, b"authorization")
    if token == b"Bearer admin":
        return True
    if token == b"Bearer viewer":
        if scope["method"] in ("GET", "HEAD"):
            return True
        raise PermissionError("viewers may only read")
    return False


guarded = create_app(queue, prefix="/guarded", auth=_check, dashboard=True)
readonly = create_app(queue, prefix="/ro", read_only=True, dashboard=True)
with_dashboard = create_app(queue, dashboard=True)
