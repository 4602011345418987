"""Tasks served over HTTP by tests/test_asgi.py (``spikard-tasks serve tests.apps.web:queue``).

The queue URL comes from SPIKARD_TASKS_URL. The task names follow spikard's background
task fixtures (process, slow-task, may-fail); ``guarded`` is an app with an auth hook
and an allow-list, served with ``spikard-tasks serve tests.apps.web:guarded``.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, Literal

from spikard_tasks import Backoff, TaskQueue
from spikard_tasks.asgi import AuthResult, create_app
from spikard_tasks.http.wire import Scope, header

queue = TaskQueue(
    os.environ.get("SPIKARD_TASKS_URL", "sqlite:///test-apps.db"),
    poll_interval=0.01,
    drain_timeout=5.0,
    backoff=Backoff(initial=0.01, max=0.05, jitter=0.0),
)


@queue.task(name="process")
def process(task_id: str, data: str) -> dict[str, str]:
    """Processes one item (the spikard fixture's POST /background/process)."""
    return {"task_id": task_id, "processed": data.upper()}


@queue.task(name="slow-task", timeout=30.0)
async def slow_task(duration_ms: int) -> int:
    """Sleeps ``duration_ms`` milliseconds."""
    await asyncio.sleep(duration_ms / 1000)
    return duration_ms


_failed_once: set[str] = set()


@queue.task(name="may-fail", max_attempts=3)
def may_fail(should_fail: bool, key: str = "") -> str:
    """Fails its first attempt when ``should_fail`` (the worker retries it)."""
    if should_fail and key not in _failed_once:
        _failed_once.add(key)
        raise RuntimeError(f"transient failure of {key}")
    return "done"


@queue.task(name="add")
def add(a: int, b: int) -> int:
    """Adds two integers."""
    return a + b


@queue.task(name="always-fails", max_attempts=1)
def always_fails(message: str) -> None:
    """Raises ``ValueError(message)``."""
    raise ValueError(message)


@queue.task(name="noop")
def noop() -> None:
    """Does nothing (for load tests)."""


@queue.task(name="tagged")
def tagged(
    item: dict[str, int],
    *labels: str,
    mode: Literal["fast", "slow"] = "fast",
    extra: Any = None,
    **meta: float | None,
) -> int:
    """A signature exercising the OpenAPI schema derivation."""
    return len(item) + len(labels)


async def _check(scope: Scope) -> AuthResult:
    """``Bearer good`` may do anything, ``Bearer reader`` may only read, ``Bearer
    banned`` gets 403 by status; no token gets 401."""
    token = header(scope, b"authorization")
    if token is None:
        return False
    if token == b"Bearer good":
        return True
    if token == b"Bearer reader":
        if scope["method"] in ("GET", "HEAD"):
            return True
        raise PermissionError("this token may only read")
    if token == b"Bearer banned":
        return 403
    return False


guarded = create_app(queue, tasks=["add", process], prefix="/guarded", auth=_check)
