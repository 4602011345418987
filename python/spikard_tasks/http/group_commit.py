"""Group commit for the HTTP enqueue app: single-job requests that arrive while a write
is in flight are enqueued together in the next write (one transaction), so concurrent
clients share the cost of a commit. A request still gets its 202 only once its own job
is stored; an idle server writes each job at once (no added delay)."""

from __future__ import annotations

import asyncio
import dataclasses
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from .calls import Call
from .wire import HTTPError

__all__ = ["GroupCommit"]

T = TypeVar("T")
#: Runs a blocking function off the event loop.
Runner = Callable[..., Awaitable[Any]]


@dataclasses.dataclass
class _LoopState:
    pending: list[tuple[Call, asyncio.Future[str]]] = dataclasses.field(default_factory=list)
    writer: asyncio.Task[None] | None = None


class GroupCommit:
    """Coalesces concurrent single-job enqueues into one ``write(calls)``.

    ``write`` is blocking and all-or-nothing (it raises ``HTTPError``); ``run`` runs it
    off the event loop. When a group is refused for a reason that is not the backend
    (422/404: one bad job), each job of the group is written on its own, so one
    request's bad input never refuses another's.
    """

    def __init__(
        self, write: Callable[[list[Call]], list[str]], run: Runner, max_group: int = 256
    ) -> None:
        self._write = write
        self._run = run
        self._max_group = max_group
        self._states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = (
            weakref.WeakKeyDictionary()
        )

    async def submit(self, call: Call) -> str:
        """Enqueues one job; returns its id once it is stored."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not asyncio (e.g. trio): write it alone
            return self._write([call])[0]
        state = self._states.get(loop)
        if state is None:
            state = self._states[loop] = _LoopState()
        future: asyncio.Future[str] = loop.create_future()
        state.pending.append((call, future))
        if state.writer is None:
            state.writer = loop.create_task(self._drain(state))
        return await future

    def _write_each(self, calls: list[Call]) -> list[str | HTTPError]:
        out: list[str | HTTPError] = []
        for call in calls:
            try:
                out.append(self._write([call])[0])
            except HTTPError as exc:
                out.append(exc)
        return out

    async def _drain(self, state: _LoopState) -> None:
        group: list[tuple[Call, asyncio.Future[str]]] = []
        try:
            while state.pending:
                group = state.pending[: self._max_group]
                del state.pending[: self._max_group]
                calls = [call for call, _ in group]
                results: list[str | BaseException]
                try:
                    results = list(await self._run(self._write, calls))
                except HTTPError as exc:
                    if exc.status == 503 or len(calls) == 1:
                        results = [exc] * len(calls)
                    else:
                        results = list(await self._run(self._write_each, calls))
                except Exception as exc:
                    results = [exc] * len(calls)
                if len(results) != len(group):
                    results = [RuntimeError("enqueue returned a wrong number of ids")] * len(group)
                for (_, future), result in zip(group, results, strict=True):
                    if future.done():  # the request went away
                        continue
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
                group = []
        finally:
            state.writer = None
            for _, future in group + state.pending:  # left over only when cancelled
                if not future.done():
                    future.cancel()
            state.pending.clear()
