"""One attempt of a runtime job: its timeout, the retry decision after a failure, and the
thread-local marker of the runtime a handler runs on."""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Coroutine
from typing import Any

from .runtime_job import RuntimeJob

__all__ = ["next_attempt_at"]

logger = logging.getLogger("spikard_tasks.runtime")

# Extra time given to cancelled handlers to unwind after the drain timeout.
_CANCEL_GRACE = 1.0

_THREAD_STATE = threading.local()
_now = time.time
_CANCELLED_BY_REQUEST = "cancelled by request"
_TOO_LATE_RETRY = "runtime shut down before the job's next attempt"


def _timeout_text(job: RuntimeJob[Any]) -> str:
    limit = job._timeout
    return f"attempt {job._attempts} ran past its {limit:g}s timeout"


async def _with_timeout(job: RuntimeJob[Any], coro: Coroutine[Any, Any, Any]) -> Any:
    """Await ``coro`` with the job's timeout; a timeout becomes a ``TimeoutError``
    naming the attempt (the handler is cancelled)."""
    limit = job._timeout
    assert limit is not None
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        return await asyncio.wait_for(coro, limit)
    except asyncio.TimeoutError:
        if loop.time() - started < limit:
            raise  # the handler itself raised TimeoutError before the deadline
        raise TimeoutError(_timeout_text(job)) from None


def _uncancel(task: asyncio.Task[Any] | None) -> None:
    """Undo one ``task.cancel()`` that was aimed at a job, not at the worker (3.11+)."""
    cancelling = getattr(task, "cancelling", None)
    if cancelling is not None and cancelling() > 0:
        task.uncancel()  # type: ignore[union-attr]


def next_attempt_at(
    job: RuntimeJob[Any], exc: BaseException, now: float, abandoned: bool
) -> float | None:
    """Ask the job's retry policy when the next attempt runs (``None``: no retry)."""
    policy = job._retry
    if policy is None or abandoned:
        return None
    try:
        delay = policy(exc, job._attempts)
    except Exception:
        logger.exception("retry policy of background job %s (%s) raised", job._name, job.id)
        return None
    if delay is None:
        return None
    seconds = float(delay)
    return now + (seconds if math.isfinite(seconds) and seconds > 0 else 0.0)
