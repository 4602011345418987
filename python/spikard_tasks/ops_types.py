"""What the operations of a ``TaskQueue`` return (see :mod:`spikard_tasks.operations`):
``Stats`` and ``QueueStats`` (counts and throughput per queue), ``LimitInfo`` (a stored
flow-control limit and how it stands), ``JobPage`` (one page of the job list) and
``WorkerInfo`` (a live worker). Each has ``to_dict()``, a JSON-ready
form (times as ISO-8601 UTC text) used by the CLI's ``--json`` and the HTTP routes."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Iterator, Mapping
from typing import Any

from ._limits import from_ms
from .job import JobInfo

__all__ = [
    "STATES",
    "JobPage",
    "LimitInfo",
    "QueueStats",
    "Stats",
    "WorkerInfo",
    "job_to_dict",
]

#: Every job state, in the order tables show them.
STATES = ("pending", "scheduled", "running", "retrying", "succeeded", "failed", "cancelled")


def _jsonable(value: Any) -> Any:
    """``value`` with datetimes as ISO-8601 text and enums as their values."""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def job_to_dict(info: JobInfo) -> dict[str, Any]:
    """A job snapshot as a JSON-ready dict (the fields of :class:`JobInfo`)."""
    out: dict[str, Any] = _jsonable(dataclasses.asdict(info))
    return out


def _counts(raw: Mapping[str, Any] | None) -> dict[str, int]:
    """Counts with every state present (0 for those missing), in :data:`STATES` order."""
    raw = raw or {}
    return {state: int(raw.get(state, 0) or 0) for state in STATES}


@dataclasses.dataclass(frozen=True)
class QueueStats:
    """One queue's figures at the time of :meth:`TaskQueue.stats`."""

    queue: str
    """The queue's name."""
    counts: dict[str, int]
    """Jobs per state (all seven states, ``scheduled`` apart from ``pending``)."""
    oldest_ready_age: float | None
    """Seconds the oldest ready job (``pending`` or ``retrying``, due) has waited since
    it became due; ``None`` when no job is ready."""
    succeeded_last_minute: int
    """Jobs that finished ``succeeded`` in the minute before."""
    failed_last_minute: int
    """Jobs that finished ``failed`` in the minute before."""
    paused: bool
    """Whether the queue is paused (no worker starts its jobs)."""

    @classmethod
    def from_record(cls, rec: Mapping[str, Any], now_ms: int) -> QueueStats:
        """Builds it from the engine's dict (``oldest_ready_ms`` becomes an age)."""
        oldest = rec.get("oldest_ready_ms")
        age = None if oldest is None else max(0.0, (now_ms - int(oldest)) / 1000.0)
        return cls(
            queue=str(rec["queue"]),
            counts=_counts(rec.get("counts")),
            oldest_ready_age=age,
            succeeded_last_minute=int(rec.get("succeeded_last_minute", 0)),
            failed_last_minute=int(rec.get("failed_last_minute", 0)),
            paused=bool(rec.get("paused", False)),
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of its fields."""
        out: dict[str, Any] = _jsonable(dataclasses.asdict(self))
        return out


@dataclasses.dataclass(frozen=True)
class LimitInfo:
    """A flow-control limit kept in the store (see ``TaskQueue.limit`` and
    ``@queue.task(rate_limit=, max_running=)``) and how it stands now."""

    scope: str
    """``"task"`` (every job of one task, in any queue) or ``"queue"`` (every job of one
    queue)."""
    name: str
    """The task's or the queue's name."""
    rate_limit: str | None
    """Starts allowed, spaced evenly (``"100/s"``); ``None``: no rate limit."""
    max_running: int | None
    """Jobs under it ``running`` at once across every worker, at most; ``None``: no cap."""
    running: int
    """Jobs under it ``running`` now (claimed ahead included)."""
    next_start: dt.datetime | None
    """The earliest time its rate lets the next job start (aware, UTC); ``None`` when a
    job may start now (or it has no rate)."""

    @classmethod
    def from_record(cls, rec: Mapping[str, Any], now_ms: int) -> LimitInfo:
        """Builds it from the engine's dict (``next_start_ms`` of 0 or before ``now_ms``
        becomes ``None``)."""
        next_ms = int(rec.get("next_start_ms") or 0)
        cap = rec.get("max_running")
        rate = rec.get("rate")
        return cls(
            scope=str(rec["scope"]),
            name=str(rec["name"]),
            rate_limit=None if rate is None else str(rate),
            max_running=None if cap is None else int(cap),
            running=int(rec.get("running", 0) or 0),
            next_start=from_ms(next_ms) if next_ms > now_ms else None,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of its fields."""
        out: dict[str, Any] = _jsonable(dataclasses.asdict(self))
        return out


@dataclasses.dataclass(frozen=True)
class Stats:
    """Figures of every queue of a store (every queue with a job or paused), read at
    ``at`` (the store's clock, UTC)."""

    at: dt.datetime
    """When the figures were read (aware, UTC)."""
    queues: list[QueueStats]
    """One entry per queue, by name."""
    limits: list[LimitInfo] = dataclasses.field(default_factory=list)
    """Every stored flow-control limit with its running count, by scope and name."""

    @classmethod
    def from_record(cls, rec: Mapping[str, Any]) -> Stats:
        """Builds it from the engine's ``{"now_ms", "queues", "limits"}`` dict."""
        now_ms = int(rec["now_ms"])
        at = from_ms(now_ms)
        assert at is not None
        queues = [QueueStats.from_record(q, now_ms) for q in rec.get("queues") or []]
        limits = [LimitInfo.from_record(lim, now_ms) for lim in rec.get("limits") or []]
        return cls(
            at=at,
            queues=sorted(queues, key=lambda q: q.queue),
            limits=sorted(limits, key=lambda lim: (lim.scope, lim.name)),
        )

    @property
    def counts(self) -> dict[str, int]:
        """Jobs per state summed over every queue (every state present)."""
        total = dict.fromkeys(STATES, 0)
        for queue in self.queues:
            for state, count in queue.counts.items():
                total[state] = total.get(state, 0) + count
        return total

    def queue(self, name: str) -> QueueStats | None:
        """The figures of queue ``name``, or ``None`` if it has no job and is not paused."""
        for queue in self.queues:
            if queue.queue == name:
                return queue
        return None

    def limit(self, scope: str, name: str) -> LimitInfo | None:
        """The stored limit of ``scope`` (``"task"`` or ``"queue"``) ``name``, or ``None``."""
        for found in self.limits:
            if found.scope == scope and found.name == name:
                return found
        return None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ``at``, ``counts`` (summed), ``queues`` and ``limits``."""
        return {
            "at": self.at.isoformat(),
            "counts": self.counts,
            "queues": [q.to_dict() for q in self.queues],
            "limits": [lim.to_dict() for lim in self.limits],
        }


@dataclasses.dataclass(frozen=True)
class JobPage:
    """One page of :meth:`TaskQueue.list_jobs`, newest first. Iterating it yields its
    jobs; ``next_cursor`` (``None`` on the last page) asks for the next page."""

    jobs: list[JobInfo]
    """The jobs of this page."""
    next_cursor: str | None
    """Pass it as ``cursor=`` for the next page; ``None`` when there is none."""

    def __iter__(self) -> Iterator[JobInfo]:
        return iter(self.jobs)

    def __len__(self) -> int:
        return len(self.jobs)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ``jobs`` (as :func:`job_to_dict`) and ``next_cursor``."""
        return {"jobs": [job_to_dict(j) for j in self.jobs], "next_cursor": self.next_cursor}


@dataclasses.dataclass(frozen=True)
class WorkerInfo:
    """A live worker, as it registered itself and last beat (times aware, UTC)."""

    name: str
    """Its unique name (jobs it holds carry it)."""
    host: str
    """The host name of its machine."""
    pid: int
    """Its process id."""
    queues: list[str]
    """The queues it claims from."""
    concurrency: int
    """How many jobs it runs at once."""
    started_at: dt.datetime
    """When it started."""
    last_heartbeat: dt.datetime
    """Its latest heartbeat (a worker that misses two is gone from the list)."""
    jobs_held: int
    """Jobs it held (running or claimed ahead) at its latest heartbeat."""
    version: str
    """The engine version it runs."""

    @classmethod
    def from_record(cls, rec: Mapping[str, Any]) -> WorkerInfo:
        """Builds it from the engine's dict (times in ms since the epoch)."""
        started = from_ms(int(rec["started_at_ms"]))
        beat = from_ms(int(rec["heartbeat_at_ms"]))
        assert started is not None and beat is not None
        return cls(
            name=str(rec["name"]),
            host=str(rec.get("host", "")),
            pid=int(rec.get("pid", 0)),
            queues=[str(q) for q in rec.get("queues") or []],
            concurrency=int(rec.get("concurrency", 0)),
            started_at=started,
            last_heartbeat=beat,
            jobs_held=int(rec.get("jobs_held", 0)),
            version=str(rec.get("version", "")),
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of its fields."""
        out: dict[str, Any] = _jsonable(dataclasses.asdict(self))
        return out
