"""``CronSchedule``: recurring jobs, validated at construction.

Expressions have 5 fields (``minute hour day month weekday``, as in Unix cron), 6 fields
(seconds first) or 7 (with a year), or are aliases (``@yearly``, ``@monthly``,
``@weekly``, ``@daily``, ``@hourly``). Weekday numbers follow Unix cron (0 and 7 are
Sunday, 1 is Monday); names (``MON-FRI``) work too. Ticks are computed in the schedule's
IANA ``timezone``: a local time skipped by a DST change does not fire that day, and a
local time repeated by a DST change fires once (its first occurrence). An expression that
matches no time from now on (``0 0 30 2 *``, February 30) is refused: it would never fire.

Any number of schedulers may run (every worker runs one unless started with
``--no-scheduler``; ``spikard-tasks scheduler module:queue`` runs one alone): each tick
is claimed in the backend together with its job, so exactly one job is enqueued per tick.

Missed ticks (no scheduler running at the time) follow ``missed``: ``"latest"`` (the
default) enqueues one job for the most recent missed tick, never a burst; ``"skip"``
enqueues nothing for them; ``"all"`` enqueues one per missed tick (at most 1000).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
from typing import TYPE_CHECKING, Any, Literal

from . import _native
from .exceptions import ConfigError
from .options import build_options

if TYPE_CHECKING:
    from .task import Task

__all__ = ["CronSchedule", "MissedTicks", "ScheduleState"]

MissedTicks = Literal["latest", "skip", "all"]


@dataclasses.dataclass(frozen=True)
class CronSchedule:
    """One job of ``task`` on every tick of ``expr`` in ``timezone``.

    ``name`` defaults to the task name; scheduling again under the same name replaces
    the schedule (so ``queue.schedule(...)`` at import time is safe in every process).
    ``priority``, ``max_attempts``, ``timeout`` and ``queue`` apply to the jobs.
    Raises ``ConfigError`` for an invalid expression, timezone or option, and for an
    expression that would never fire.
    """

    expr: str
    task: str | Task[Any, Any] = ""
    args: list[Any] = dataclasses.field(default_factory=list)
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    timezone: str = "UTC"
    name: str | None = None
    enabled: bool = True
    missed: MissedTicks = "latest"
    priority: int | None = None
    max_attempts: int | None = None
    timeout: float | None = None
    queue: str | None = None
    #: Read back from storage: checked, but not refused for having no next run (its
    #: last years may have passed since it was created).
    _stored: dataclasses.InitVar[bool] = False

    def __post_init__(self, _stored: bool) -> None:
        task: object = self.task
        if not isinstance(task, str):
            task = getattr(task, "name", None)
            if not isinstance(task, str):
                raise ConfigError("task must be a task name or a Task")
            object.__setattr__(self, "task", task)
        if not task:
            raise ConfigError("a CronSchedule needs task=")
        if self.name is None:
            object.__setattr__(self, "name", task)
        if self.missed not in ("latest", "skip", "all"):
            raise ConfigError(f"missed must be 'latest', 'skip' or 'all', not {self.missed!r}")
        if not isinstance(self.args, (list, tuple)) or not isinstance(self.kwargs, dict):
            raise ConfigError("args must be a list and kwargs a dict")
        object.__setattr__(self, "args", list(self.args))
        # Expression, timezone and options, checked by the engine.
        _native.validate_schedule(self.to_json(), int(time.time() * 1000), _stored)

    @property
    def expression(self) -> str:
        """The cron expression (alias of ``expr``)."""
        return self.expr

    def to_dict(self) -> dict[str, Any]:
        """The engine's form of the schedule."""
        options = build_options(
            {
                k: v
                for k, v in {
                    "priority": self.priority,
                    "max_attempts": self.max_attempts,
                    "timeout": self.timeout,
                    "queue": self.queue,
                }.items()
                if v is not None
            }
        )
        return {
            "name": self.name,
            "expression": self.expr,
            "task": self.task,
            "args": self.args,
            "kwargs": self.kwargs,
            "timezone": self.timezone,
            "enabled": self.enabled,
            "missed": self.missed,
            "options": options,
        }

    def to_json(self) -> str:
        """JSON of :meth:`to_dict` (arguments must be JSON: ``SerializationError``)."""
        return _native.to_json(self.to_dict())

    def next_run(self, after: dt.datetime | None = None) -> dt.datetime | None:
        """The first tick after ``after`` (default: now), as an aware UTC datetime."""
        after_ms = int(time.time() * 1000) if after is None else int(after.timestamp() * 1000)
        if after is not None and after.tzinfo is None:
            raise ConfigError("after must be timezone-aware")
        nxt = _native.validate_schedule(self.to_json(), after_ms, stored=True)
        return None if nxt is None else dt.datetime.fromtimestamp(nxt / 1000, dt.timezone.utc)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CronSchedule:
        """Builds a schedule from the engine's form (as ``queue.schedules()`` returns)."""
        options = data.get("options") or {}
        return cls(
            expr=data["expression"],
            task=data["task"],
            args=data.get("args") or [],
            kwargs=data.get("kwargs") or {},
            timezone=data.get("timezone", "UTC"),
            name=data.get("name"),
            enabled=data.get("enabled", True),
            missed=data.get("missed", "latest"),
            priority=options.get("priority"),
            max_attempts=options.get("max_attempts"),
            timeout=options.get("timeout"),
            queue=options.get("queue"),
            _stored=True,
        )

    def __str__(self) -> str:
        return json.dumps(self.to_dict())


def _time(ms: int | None) -> dt.datetime | None:
    return None if ms is None else dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc)


@dataclasses.dataclass(frozen=True)
class ScheduleState:
    """A stored schedule and when it last ran and runs next (aware UTC datetimes)."""

    schedule: CronSchedule
    last_run: dt.datetime | None
    next_run: dt.datetime | None
    updated_at: dt.datetime | None

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> ScheduleState:
        """Builds the state from the engine's record."""
        return cls(
            schedule=CronSchedule.from_dict(rec["schedule"]),
            last_run=_time(rec.get("last_tick_ms")),
            next_run=_time(rec.get("next_run_ms")),
            updated_at=_time(rec.get("updated_at_ms")),
        )
