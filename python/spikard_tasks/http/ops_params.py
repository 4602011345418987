"""Parameters of the operations routes (:mod:`.ops_routes`), checked before the queue is
asked: a job filter from a query string (400 when wrong) or a JSON body (422), a page
size and cursor, a purge age. Each problem names the parameter and what it accepts."""

from __future__ import annotations

import datetime as dt
import math
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

from ..status import JobStatus
from .wire import HTTPError

__all__ = [
    "DEFAULT_LIMIT",
    "FILTER_FIELDS",
    "MAX_LIMIT",
    "STATUSES",
    "body_filter",
    "list_query",
    "parse_statuses",
    "parse_time",
    "query_pairs",
]

#: Jobs per page unless ``limit`` says otherwise, and the most one page holds.
DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
#: The state names a filter accepts.
STATUSES = tuple(s.value for s in JobStatus)
#: The fields of a job filter (query parameters and body keys alike).
FILTER_FIELDS = ("status", "task", "queue", "since", "until")
_LIST_FIELDS = (*FILTER_FIELDS, "limit", "cursor")
#: Seconds since the epoch accepted as a time: up to the year 9999.
_MAX_EPOCH = 253402300799


def query_pairs(scope: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The ``(name, value)`` pairs of a request's query string (none when the scope
    has no ``query_string``)."""
    raw = scope.get("query_string") or b""
    text = raw.decode("latin-1") if isinstance(raw, bytes) else str(raw)
    return urllib.parse.parse_qsl(text, keep_blank_values=True)


def parse_statuses(value: Any, where: str, status: int) -> list[str] | None:
    """``"failed"``, ``"failed,cancelled"`` or a list of names → the names (``None``
    for none); an unknown name is refused with ``status``, naming the valid ones."""
    if value is None:
        return None
    if isinstance(value, str):
        items: Sequence[Any] = value.split(",")
    elif isinstance(value, list):
        items = value
    else:
        raise HTTPError(status, f"{where} must be a state name or a list of them")
    names: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise HTTPError(status, f"{where} must hold state names, not {item!r}")
        name = item.strip().lower()
        if not name:
            continue
        if name not in STATUSES:
            raise HTTPError(
                status, f"unknown {where} {item!r}; valid states: {', '.join(STATUSES)}"
            )
        if name not in names:
            names.append(name)
    return names or None


def parse_time(value: Any, where: str, status: int) -> dt.datetime | None:
    """An ISO-8601 date-time (naive = UTC) or seconds since the epoch → an aware UTC
    datetime; ``None`` for none."""
    if value is None or value == "":
        return None
    seconds: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            try:
                when = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
            except ValueError:
                raise HTTPError(
                    status,
                    f"{where} must be an ISO-8601 date-time or seconds since the epoch, "
                    f"got {value!r}",
                ) from None
            if when.tzinfo is None:
                when = when.replace(tzinfo=dt.timezone.utc)
            return when.astimezone(dt.timezone.utc)
    else:
        raise HTTPError(status, f"{where} must be an ISO-8601 date-time or epoch seconds")
    if not math.isfinite(seconds) or not 0 <= seconds <= _MAX_EPOCH:
        raise HTTPError(status, f"{where} is out of range: {value!r}")
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc)


def _filter(values: Mapping[str, Any], status: int, kind: str) -> dict[str, Any]:
    task, queue = values.get("task"), values.get("queue")
    for name, text in (("task", task), ("queue", queue)):
        if text is not None and not isinstance(text, str):
            raise HTTPError(status, f"{kind} {name} must be a string")
    since = parse_time(values.get("since"), f"{kind} since", status)
    until = parse_time(values.get("until"), f"{kind} until", status)
    if since is not None and until is not None and since > until:
        raise HTTPError(status, f"{kind} since must not be after until")
    return {
        "status": parse_statuses(values.get("status"), f"{kind} status", status),
        "task": task or None,
        "queue": queue or None,
        "since": since,
        "until": until,
    }


def _single(query: Sequence[tuple[str, str]]) -> dict[str, str]:
    known = set(_LIST_FIELDS)
    values: dict[str, str] = {}
    for key, value in query:
        if key not in known:
            raise HTTPError(
                400, f"unknown query parameter {key!r}; known: {', '.join(_LIST_FIELDS)}"
            )
        if key == "status" and key in values:  # ?status=a&status=b is a list too
            values[key] += "," + value
        elif key in values:
            raise HTTPError(400, f"query parameter {key!r} is given twice")
        else:
            values[key] = value
    return values


def list_query(query: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """The keyword arguments of ``TaskQueue.list_jobs`` from a query string's pairs:
    the filter, ``limit`` (1 to 1000, default 50) and ``cursor``. 400 when wrong."""
    values = _single(query)
    found = _filter(values, 400, "query parameter")
    text = values.get("limit", "").strip()
    limit = DEFAULT_LIMIT
    if text:
        if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
            raise HTTPError(400, f"query parameter limit must be 1 to {MAX_LIMIT}, got {text!r}")
        limit = int(text)
    found["limit"] = limit
    found["cursor"] = values.get("cursor") or None
    return found


def body_filter(body: Any, *, purge: bool = False) -> dict[str, Any]:
    """The keyword arguments of ``retry_jobs``/``cancel_jobs`` (or ``purge``, with
    ``older_than`` in seconds, default 0) from a JSON body. 422 when wrong."""
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise HTTPError(422, "body must be a JSON object (the filter)")
    allowed = (*FILTER_FIELDS, "older_than") if purge else FILTER_FIELDS
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise HTTPError(422, f"unknown field {unknown[0]!r}; known: {', '.join(allowed)}")
    found = _filter(body, 422, "body")
    if purge:
        age = body.get("older_than", 0)
        if (
            isinstance(age, bool)
            or not isinstance(age, (int, float))
            or not math.isfinite(age)
            or age < 0
        ):
            raise HTTPError(422, "older_than must be a number of seconds >= 0")
        found["older_than"] = float(age)
    return found
