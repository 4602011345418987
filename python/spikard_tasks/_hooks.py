"""Running a queue's ``on_worker_start`` / ``on_worker_stop`` hooks."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["Hook", "run_start_hooks", "run_stop_hooks"]

#: A worker hook: a function of no arguments, sync or ``async def``.
Hook = Callable[[], Any]

log = logging.getLogger("spikard_tasks.worker")


def _call(hook: Hook, loop: asyncio.AbstractEventLoop | None) -> None:
    value: Any = hook()
    if not inspect.isawaitable(value):
        return

    async def _await() -> Any:
        return await value

    if loop is not None and loop.is_running():
        asyncio.run_coroutine_threadsafe(_await(), loop).result()
    else:  # no worker loop (any more): a loop of its own
        asyncio.run(_await())


def run_start_hooks(hooks: Sequence[Hook], loop: asyncio.AbstractEventLoop | None) -> None:
    """Runs every start hook in order; the first that raises stops the rest (and the
    worker's start)."""
    for hook in hooks:
        _call(hook, loop)


def run_stop_hooks(hooks: Sequence[Hook], loop: asyncio.AbstractEventLoop | None) -> None:
    """Runs every stop hook in order; one that raises is logged, the others still run."""
    for hook in hooks:
        try:
            _call(hook, loop)
        except Exception:
            log.exception("on_worker_stop hook %r raised", hook)
