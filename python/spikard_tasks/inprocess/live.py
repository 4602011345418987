"""The runtimes alive in this process: drained at interpreter exit, and given fresh
locks in a child after ``fork``."""

from __future__ import annotations

import atexit
import logging
import os
import weakref
from typing import Any, Protocol

__all__ = ["LIVE_RUNTIMES", "LiveRuntime"]

logger = logging.getLogger("spikard_tasks.runtime")


class LiveRuntime(Protocol):
    """What the registry needs of a runtime."""

    _pid: int

    def shutdown(self, timeout: float | None = None) -> Any:
        """Drains the runtime."""
        ...

    def _reset_lock(self) -> None:
        """Replaces the runtime's lock (after ``fork``)."""
        ...


LIVE_RUNTIMES: weakref.WeakSet[LiveRuntime] = weakref.WeakSet()


def _reset_locks_in_child() -> None:
    """After ``fork``, a runtime's lock may be held by a thread that does not exist in
    the child; give every inherited runtime a fresh one so the child can shut it down."""
    for runtime in list(LIVE_RUNTIMES):
        runtime._reset_lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_locks_in_child)


@atexit.register
def _shutdown_live_runtimes() -> None:
    """Drain runtimes still running at interpreter exit (bounded by their drain_timeout)."""
    pid = os.getpid()
    for runtime in list(LIVE_RUNTIMES):
        if runtime._pid != pid:  # inherited through fork: its threads are not in this process
            continue
        try:
            runtime.shutdown()
        except Exception:  # pragma: no cover - never let one runtime break exit
            logger.exception("error while shutting down %r at exit", runtime)
