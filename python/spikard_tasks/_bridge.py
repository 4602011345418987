"""The Python half of the handler bridge: the worker's asyncio loop thread.

The native worker's Python threads call :func:`submit` to run an ``async def`` handler
on this loop; the coroutine reports its value or exception to a native ``Completion``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

__all__ = ["EventLoopThread", "submit"]


class _Done(Protocol):
    def ok(self, value: Any) -> None: ...
    def error(self, exc: BaseException) -> None: ...


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


async def _run(
    fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], kwargs: dict[str, Any], done: _Done
) -> None:
    try:
        value = await fn(*args, **kwargs)
    except BaseException as exc:
        done.error(exc)
    else:
        done.ok(value)


def submit(
    loop: asyncio.AbstractEventLoop,
    fn: Callable[..., Awaitable[Any]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    done: _Done,
) -> concurrent.futures.Future[None]:
    """Schedules ``fn(*args, **kwargs)`` on ``loop``; the outcome goes to ``done``."""
    return asyncio.run_coroutine_threadsafe(_run(fn, args, kwargs, done), loop)


class EventLoopThread:
    """An asyncio event loop (uvloop when installed) running on a daemon thread."""

    def __init__(self, name: str = "spikard-tasks-asyncio") -> None:
        self.loop = _new_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def stop(self, timeout: float = 5.0) -> None:
        """Cancels what still runs on the loop, stops it and joins the thread."""
        if not self._thread.is_alive():
            return

        async def _cancel_all() -> None:
            current = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not current]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
            asyncio.run_coroutine_threadsafe(_cancel_all(), self.loop).result(timeout)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self.loop.close()
