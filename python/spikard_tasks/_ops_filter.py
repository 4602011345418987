"""The one place the operations' arguments are checked: which jobs a filter selects
(states, task, queue, enqueue-time window), the page size, the list cursor and purge's
age. Every mistake is a ``ConfigError`` that says what is accepted."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

from ._limits import MAX_INSTANT_MS, check_seconds
from .exceptions import ConfigError
from .status import JobStatus

__all__ = [
    "FINISHED",
    "MAX_PAGE",
    "RETRYABLE",
    "JobFilter",
    "build_filter",
    "check_limit",
    "check_older_than",
    "parse_cursor",
]

#: Most jobs one page of ``list_jobs`` holds (the engine's ``MAX_PAGE``).
MAX_PAGE = 1000
#: The states ``retry``/``retry_jobs`` put back to ``pending``.
RETRYABLE = ("failed", "cancelled")
#: The states ``purge`` deletes.
FINISHED = ("succeeded", "failed", "cancelled")

_STATES = tuple(s.value for s in JobStatus)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_CURSOR = re.compile(r"^(-?\d{1,18}):(.+)$", re.DOTALL)


@dataclasses.dataclass(frozen=True)
class JobFilter:
    """Which jobs an operation concerns; every field narrows, the default matches all.
    ``statuses`` empty: any state; ``since_ms``/``until_ms``: enqueued at or after /
    strictly before (ms since the epoch)."""

    statuses: tuple[str, ...] = ()
    task: str | None = None
    queue: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None

    def to_json(self) -> str:
        """The engine's ``JobFilter`` as JSON (absent fields match anything)."""
        out: dict[str, Any] = {"statuses": list(self.statuses)}
        for key in ("task", "queue", "since_ms", "until_ms"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return json.dumps(out)

    def restricted(self, allowed: Sequence[str], operation: str) -> JobFilter:
        """This filter with its states limited to ``allowed`` (all of them when it names
        none); ``ConfigError`` for a state ``operation`` never touches."""
        wrong = [s for s in self.statuses if s not in allowed]
        if wrong:
            raise ConfigError(
                f"{operation} only touches {' or '.join(allowed)} jobs, not {', '.join(wrong)}"
            )
        return dataclasses.replace(self, statuses=self.statuses or tuple(allowed))


def _statuses(status: str | JobStatus | Iterable[str | JobStatus] | None) -> tuple[str, ...]:
    if status is None:
        return ()
    items = [status] if isinstance(status, (str, JobStatus)) else list(status)
    out: list[str] = []
    for item in items:
        name = item.value if isinstance(item, JobStatus) else item
        if not isinstance(name, str) or name not in _STATES:
            raise ConfigError(f"unknown job status {item!r}; valid: {', '.join(_STATES)}")
        if name not in out:
            out.append(name)
    return tuple(out)


def _text(what: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{what} must be a non-empty string or None, got {value!r}")
    return value


def _instant_ms(what: str, value: object) -> int | None:
    """A datetime as ms since the epoch; a naive one is taken as UTC."""
    if value is None:
        return None
    if not isinstance(value, dt.datetime):
        raise ConfigError(f"{what} must be a datetime or None, got {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    ms = (value - _EPOCH) // dt.timedelta(milliseconds=1)
    return max(-MAX_INSTANT_MS, min(MAX_INSTANT_MS, ms))


def build_filter(
    status: str | JobStatus | Iterable[str | JobStatus] | None = None,
    task: str | None = None,
    queue: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> JobFilter:
    """Checks the filter arguments of every operation and builds the filter: ``status``
    a state name (or several), ``since``/``until`` datetimes (naive ones are UTC) with
    ``since`` not after ``until``."""
    since_ms = _instant_ms("since", since)
    until_ms = _instant_ms("until", until)
    if since_ms is not None and until_ms is not None and since_ms > until_ms:
        raise ConfigError(f"since ({since}) is after until ({until})")
    return JobFilter(
        statuses=_statuses(status),
        task=_text("task", task),
        queue=_text("queue", queue),
        since_ms=since_ms,
        until_ms=until_ms,
    )


def check_limit(limit: object) -> int:
    """A page size: a whole number from 1 to :data:`MAX_PAGE`."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise ConfigError(f"limit must be a whole number from 1 to {MAX_PAGE}, got {limit!r}")
    return limit


def check_older_than(value: object) -> float:
    """Purge's age: seconds (or a ``timedelta``), finite and not negative."""
    if isinstance(value, float) and math.isnan(value):
        raise ConfigError(f"older_than must be a number of seconds, got {value!r}")
    return check_seconds("older_than", value)


def parse_cursor(cursor: object) -> tuple[int, str] | None:
    """A ``next_cursor`` of ``list_jobs`` as ``(enqueued_at_ms, id)``; ``None`` for none;
    ``ConfigError`` for text no page returned."""
    if cursor is None:
        return None
    match = _CURSOR.match(cursor) if isinstance(cursor, str) else None
    if match is None:
        raise ConfigError(
            f"malformed cursor {cursor!r}: pass the next_cursor of a page of list_jobs"
        )
    return int(match.group(1)), match.group(2)
