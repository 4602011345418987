"""A task module for fault tests run in real worker processes.

The queue URL comes from SPIKARD_TASKS_URL (and every other setting from the
``SPIKARD_TASKS_*`` environment, e.g. a short lease). Tasks append one line per event to
SPIKARD_TEST_LOG: ``EVENT DETAIL PID TIME``, written with a single ``write(2)`` on an
``O_APPEND`` descriptor, so lines of concurrent processes never interleave and a
``SIGKILL`` cannot leave half a line.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time

from spikard_tasks import Backoff, TaskQueue

queue = TaskQueue(
    os.environ.get("SPIKARD_TASKS_URL", "sqlite:///test-apps.db"),
    poll_interval=0.01,
    drain_timeout=float(os.environ.get("SPIKARD_TEST_DRAIN", "10")),
    backoff=Backoff(initial=0.01, max=0.05, jitter=0.0),
)

_log_fd: int | None = None
_log_lock = threading.Lock()


def log(event: str, detail: object) -> None:
    """Appends ``EVENT DETAIL PID TIME`` to SPIKARD_TEST_LOG (if set)."""
    global _log_fd
    path = os.environ.get("SPIKARD_TEST_LOG")
    if not path:
        return
    with _log_lock:
        if _log_fd is None:
            _log_fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(_log_fd, f"{event} {detail} {os.getpid()} {time.time():.6f}\n".encode())


@queue.task(name="work")
def work(n: int, seconds: float) -> int:
    """Logs ``run N``, sleeps, returns ``n``."""
    log("run", n)
    time.sleep(seconds)
    return n


@queue.task(name="hold")
def hold(n: int, seconds: float) -> int:
    """Logs ``start N`` and ``finish N`` around a sleep; returns this process' pid."""
    log("start", n)
    time.sleep(seconds)
    log("finish", n)
    return os.getpid()


@queue.task(name="ahold")
async def ahold(n: int, seconds: float) -> int:
    """``hold`` as an ``async def`` handler."""
    log("start", n)
    await asyncio.sleep(seconds)
    log("finish", n)
    return os.getpid()


@queue.task(name="spin")
def spin(n: int, seconds: float) -> int:
    """Like ``hold`` but busy: pure Python that keeps the interpreter working."""
    log("start", n)
    end = time.monotonic() + seconds
    spins = 0
    while time.monotonic() < end:
        spins += 1
    log("finish", n)
    return os.getpid()


@queue.task(name="forever", timeout=0.5, max_attempts=1)
def forever() -> None:
    """Blocks its thread for good (nothing ever sets the event)."""
    log("start", "forever")
    threading.Event().wait()


@queue.task(name="aforever", timeout=0.5, max_attempts=1)
async def aforever() -> None:
    """Awaits forever (only cancellation ends it)."""
    log("start", "aforever")
    await asyncio.Event().wait()


@queue.task(name="echo")
def echo(payload: object) -> object:
    """Returns its argument."""
    return payload


@queue.task(name="always_fails", max_attempts=1)
def always_fails() -> None:
    """Fails; the test checks what the stored error and the logs contain."""
    raise RuntimeError("handler failed on purpose")


@queue.task(name="die")
def die(n: int) -> None:
    """Logs ``start N`` and SIGKILLs its own worker at once (a poison job)."""
    log("start", n)
    os.kill(os.getpid(), 9)
