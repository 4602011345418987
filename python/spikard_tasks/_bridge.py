"""The Python half of the handler bridge: the worker's asyncio loop thread.

The native worker's Python threads call :meth:`EventLoopThread.submit` to run an
``async def`` handler on this loop; the coroutine reports its value or exception to the
attempt's reply handle, a native ``ReplySlot``. Submissions queue in an inbox that the
loop empties in one callback, so a burst of jobs costs one loop wake-up, not one per job.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from .context import CURRENT

__all__ = ["Attempt", "EventLoopThread"]


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
    fn: Callable[..., Awaitable[Any]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    done: _Done,
    fields: tuple[Any, ...] | None,
) -> None:
    if fields is not None:
        # Each task runs in a copy of the context: no reset needed.
        CURRENT.set(fields)
    try:
        value = await fn(*args, **kwargs)
    except BaseException as exc:
        _report(done, done.error, exc)
    else:
        _report(done, done.ok, value)


def _report(done: _Done, method: Callable[[Any], None], arg: Any) -> None:
    """Hands the outcome to the native side; if that fails, reports the failure instead,
    so the waiting worker always gets an answer."""
    try:
        method(arg)
    except BaseException as exc:
        # If even that fails, the native side answers when ``done`` is dropped.
        with contextlib.suppress(BaseException):
            done.error(RuntimeError(f"the handler bridge could not report this attempt: {exc!r}"))


class Attempt:
    """One submitted ``async def`` attempt; :meth:`cancel` may be called from any thread."""

    __slots__ = ("_args", "_cancelled", "_fields", "_fn", "_kwargs", "_loop", "_task", "done")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        done: _Done,
        fields: tuple[Any, ...] | None = None,
    ) -> None:
        self._loop = loop
        self._fn, self._args, self._kwargs = fn, args, kwargs
        self._fields = fields
        self.done = done
        self._task: asyncio.Task[None] | None = None
        self._cancelled = False

    def _start(self) -> None:
        # On the loop thread.
        if self._cancelled:
            self.done.error(asyncio.CancelledError())
        else:
            self._task = self._loop.create_task(
                _run(self._fn, self._args, self._kwargs, self.done, self._fields)
            )

    def _cancel_here(self) -> None:
        self._cancelled = True
        if self._task is not None:
            self._task.cancel()

    def cancel(self) -> None:
        """Cancels the attempt: before it starts, or by cancelling its task."""
        self._loop.call_soon_threadsafe(self._cancel_here)


class EventLoopThread:
    """An asyncio event loop (uvloop when installed) running on a daemon thread."""

    def __init__(self, name: str = "spikard-tasks-asyncio") -> None:
        self.loop = _new_loop()
        self._inbox: collections.deque[Attempt] = collections.deque()
        self._inbox_lock = threading.Lock()
        self._wake_pending = False
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(
        self,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        done: _Done,
        fields: tuple[Any, ...] | None = None,
    ) -> Attempt:
        """Schedules ``fn(*args, **kwargs)`` on the loop; the outcome goes to ``done``.
        ``fields`` (the job's, for ``current_job()``) are set in the attempt's context.

        Raises ``RuntimeError`` when the loop is closed.
        """
        attempt = Attempt(self.loop, fn, args, kwargs, done, fields)
        self._inbox.append(attempt)
        with self._inbox_lock:
            if self._wake_pending:
                return attempt
            self._wake_pending = True
        try:
            self.loop.call_soon_threadsafe(self._empty_inbox)
        except RuntimeError:
            with self._inbox_lock:
                self._wake_pending = False
            raise
        return attempt

    def _empty_inbox(self) -> None:
        # Reset the flag first: a submission appended after it schedules a new call.
        with self._inbox_lock:
            self._wake_pending = False
        inbox = self._inbox
        while inbox:
            inbox.popleft()._start()

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
            # Submissions the loop never started end as cancelled attempts.
            while self._inbox:
                self._inbox.popleft().done.error(asyncio.CancelledError())
