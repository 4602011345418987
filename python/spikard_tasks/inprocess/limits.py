"""Flow control of an ``inprocess://`` queue, in this process: the rate limits and caps on
running jobs of its tasks (``@queue.task(rate_limit=, max_running=)``) and of its queue
names (``queue.limit``), and the per-queue concurrency of its worker (``queues={"emails":
4}``), checked by the runtime before it starts a job.

The rules are the durable path's: a rate is a token bucket of one token refilled at the
rate (starts spaced evenly), ``max_running`` counts the jobs running now, a job held back
stays ``pending`` (no attempt used, never failed for its limit), and among the jobs the
limits allow the highest priority starts first, so a limited task never blocks the others.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .._flow import rate_interval
from ..ops_types import LimitInfo
from .meta import JobMeta
from .runtime_job import RuntimeJob, _utc

if TYPE_CHECKING:
    from .executor import Executor

__all__ = ["LocalLimits", "gate"]

#: ``("task", name)`` or ``("queue", name)``.
Key = tuple[str, str]


class _Limit:
    """One stored limit: its rate (and the spacing of starts it means) and its cap."""

    __slots__ = ("cap", "interval", "rate")

    def __init__(self, rate: str | None, cap: int | None) -> None:
        self.rate = rate
        self.interval = None if rate is None else rate_interval(rate)
        self.cap = cap

    def same(self, rate: str | None, cap: int | None) -> bool:
        return self.rate == rate and self.cap == cap


class LocalLimits:
    """The limits of one ``inprocess://`` queue and the jobs running under them.

    :meth:`admit` and :meth:`ended` run under the runtime's lock (the executor calls them
    when it takes a job and when an attempt ends); they take this object's own lock too,
    so that several runtimes of the queue (one draining, a new one) share the counts.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._limits: dict[Key, _Limit] = {}
        self._local: dict[str, int] = {}  # the worker's own per-queue concurrency
        self._running: dict[Key, int] = {}
        self._next: dict[Key, float] = {}  # when each rate allows its next start
        self._held: dict[int, tuple[Key, Key]] = {}  # id(job) of the jobs counted
        # Per runtime (its executor): when the wake-up armed on its loop is due.
        self._timers: weakref.WeakKeyDictionary[Executor, float] = weakref.WeakKeyDictionary()

    @property
    def active(self) -> bool:
        """Whether any limit or per-queue concurrency applies."""
        return bool(self._limits or self._local)

    # -- what is limited ---------------------------------------------------------------

    def set(self, scope: str, name: str, rate: str | None, cap: int | None) -> bool:
        """Stores (or with neither, removes) the limit of ``scope`` ``name``; whether
        that changed anything. A rate's bucket is kept while the rate stays."""
        key = (scope, name)
        with self._lock:
            old = self._limits.get(key)
            if rate is None and cap is None:
                if old is None:
                    return False
                del self._limits[key]
                self._next.pop(key, None)
                return True
            if old is not None and old.same(rate, cap):
                return False
            self._limits[key] = _Limit(rate, cap)
            if rate is None or (old is not None and old.rate != rate):
                self._next.pop(key, None)
            return True

    def set_local(self, caps: dict[str, int]) -> None:
        """The running worker's per-queue concurrency (``{}`` when it stops)."""
        with self._lock:
            self._local = dict(caps)

    def infos(self, now: float) -> list[LimitInfo]:
        """Every limit with the jobs running under it and its next start."""
        with self._lock:
            out = []
            for key, lim in self._limits.items():
                due = self._next.get(key, 0.0)
                out.append(
                    LimitInfo(
                        scope=key[0],
                        name=key[1],
                        rate_limit=lim.rate,
                        max_running=lim.cap,
                        running=self._running.get(key, 0),
                        next_start=_utc(due) if lim.rate and due > now else None,
                    )
                )
        return sorted(out, key=lambda lim: (lim.scope, lim.name))

    # -- the runtime's side --------------------------------------------------------------

    def count_running(self, slots: Iterable[RuntimeJob[Any] | None]) -> None:
        """Counts the jobs running when the limits start to apply (the runtime's lock
        held): they started without being counted."""
        with self._lock:
            for job in slots:
                if job is not None and id(job) not in self._held:
                    self._start_locked(job)

    def admit(self, job: RuntimeJob[Any], now: float, ex: Executor) -> bool:
        """Whether ``job`` may start now; if so it is counted and takes its rates' tokens
        (the runtime's lock held). A job a rate holds back gets the runtime woken when
        the rate allows the next start."""
        meta = job._meta
        if not isinstance(meta, JobMeta):
            return True
        keys = (("task", meta.task), ("queue", meta.queue))
        with self._lock:
            wake: float | None = None
            for key in keys:
                lim = self._limits.get(key)
                if lim is None:
                    continue
                if lim.cap is not None and self._running.get(key, 0) >= lim.cap:
                    return False
                if lim.interval is not None:
                    due = self._next.get(key, 0.0)
                    if now < due:
                        wake = due if wake is None else min(wake, due)
            local = self._local.get(meta.queue)
            if local is not None and self._running.get(keys[1], 0) >= local:
                return False
            if wake is not None:
                self._arm_locked(ex, wake, now)
                return False
            for key in keys:
                lim = self._limits.get(key)
                if lim is not None and lim.interval is not None:
                    self._next[key] = max(self._next.get(key, 0.0), now) + lim.interval
            self._start_locked(job)
        return True

    def ended(self, job: RuntimeJob[Any]) -> None:
        """An attempt of ``job`` ended (the runtime's lock held): it no longer counts."""
        if not self._held:
            return
        with self._lock:
            keys = self._held.pop(id(job), None)
            if keys is None:
                return
            for key in keys:
                left = self._running.get(key, 0) - 1
                if left > 0:
                    self._running[key] = left
                else:
                    self._running.pop(key, None)

    def _start_locked(self, job: RuntimeJob[Any]) -> None:
        meta = job._meta
        if not isinstance(meta, JobMeta):
            return
        keys = (("task", meta.task), ("queue", meta.queue))
        self._held[id(job)] = keys
        for key in keys:
            self._running[key] = self._running.get(key, 0) + 1

    def _arm_locked(self, ex: Executor, at: float, now: float) -> None:
        """Wakes ``ex``'s idle workers at ``at`` (on its loop thread, where the runtime
        takes jobs), unless an earlier wake-up is due."""
        armed = self._timers.get(ex)
        if armed is not None and armed <= at:
            return
        loop = ex._loop
        if loop is None:
            return
        self._timers[ex] = at
        loop.call_later(max(0.0, at - now), self._fire, ex)

    def _fire(self, ex: Executor) -> None:
        with self._lock:
            self._timers.pop(ex, None)
        ex._wake()


def gate(
    limits: LocalLimits, paused: frozenset[str], ex: Executor, now: Callable[[], float]
) -> Callable[[RuntimeJob[Any]], bool] | None:
    """What ``ex`` asks before it starts a job: ``None`` when no queue name is paused and
    no limit applies (the runtime's fast path)."""
    active = limits.active
    if not paused and not active:
        return None

    def may_start(job: RuntimeJob[Any]) -> bool:
        meta = job._meta
        if isinstance(meta, JobMeta) and meta.queue in paused:
            return False
        return not active or limits.admit(job, now(), ex)

    return may_start
