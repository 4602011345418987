"""Enqueue options: their names, their checks, and their conversion to the engine's form
(the same on every backend)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ._limits import MAX_ATTEMPTS, MAX_INSTANT_MS, check_seconds
from ._text import check_text
from .exceptions import ConfigError

__all__ = ["INTERNAL_OPTION_NAMES", "MAX_TRACE_CONTEXT", "OPTION_NAMES", "build_options"]

#: Option names accepted by every enqueue call.
OPTION_NAMES = frozenset(
    {"priority", "delay", "run_at", "max_attempts", "unique_key", "timeout", "queue"}
)

#: Options the library sets itself, accepted too but not offered to users:
#: ``trace_context``, the W3C trace context of the span that enqueues the job
#: (``traceparent``, then ``;`` and the ``tracestate``), stored with the job so the
#: worker's span of each attempt is its child.
INTERNAL_OPTION_NAMES = frozenset({"trace_context"})

#: The longest ``trace_context`` (ASCII characters), as the engine allows.
MAX_TRACE_CONTEXT = 512


def _seconds(
    name: str, value: float | dt.timedelta | None, *, zero_ok: bool = True
) -> float | None:
    if value is None:
        return None
    return check_seconds(name, value, zero_ok=zero_ok)


_INT_RANGES = {"priority": (-(2**31), 2**31 - 1), "max_attempts": (1, MAX_ATTEMPTS)}


def build_options(options: dict[str, Any]) -> dict[str, Any]:
    """Validates enqueue options and converts them to the engine's form.

    The same checks apply on every backend, so a bad option raises ``ConfigError`` at
    the enqueue call whether the queue is durable or ``inprocess://``.
    """
    if not options:
        return {}
    unknown = sorted(set(options) - OPTION_NAMES - INTERNAL_OPTION_NAMES)
    if unknown:
        raise ConfigError(f"unknown enqueue options: {', '.join(unknown)}")
    out: dict[str, Any] = {}
    for key, (low, high) in _INT_RANGES.items():
        value = options.get(key)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{key} must be an integer")
            if not low <= value <= high:
                raise ConfigError(f"{key} must be between {low} and {high}")
            out[key] = value
    delay = _seconds("delay", options.get("delay"))
    if delay is not None:
        out["delay"] = delay
    timeout = _seconds("timeout", options.get("timeout"), zero_ok=False)
    if timeout is not None:
        out["timeout"] = timeout
    run_at = options.get("run_at")
    if run_at is not None:
        if not isinstance(run_at, dt.datetime):
            raise ConfigError("run_at must be a datetime")
        if run_at.tzinfo is None or run_at.utcoffset() is None:
            raise ConfigError(
                "run_at must be timezone-aware (e.g. datetime.now(timezone.utc)); "
                "a naive datetime is ambiguous"
            )
        if delay is not None:
            raise ConfigError("give delay or run_at, not both")
        # Rounded up (never early), but datetime.max stays within the year 9999.
        out["run_at_ms"] = min(int(-(-run_at.timestamp() * 1000 // 1)), MAX_INSTANT_MS)
    for key in ("unique_key", "queue"):
        value = options.get(key)
        if value is not None:
            if not isinstance(value, str):
                raise ConfigError(f"{key} must be a string")
            out[key] = check_text("queue name" if key == "queue" else key, value)
    unique_key = out.get("unique_key")
    if unique_key is not None and not 1 <= len(unique_key.encode()) <= 512:
        raise ConfigError("unique_key must be 1 to 512 bytes")
    queue = out.get("queue")
    if queue is not None and not 1 <= len(queue) <= 200:
        raise ConfigError("queue name must be 1 to 200 characters")
    trace_context = options.get("trace_context")
    if trace_context is not None:
        out["trace_context"] = _trace_context(trace_context)
    return out


def _trace_context(value: Any) -> str:
    """``value`` if the engine stores it as a trace context, else ``ConfigError``."""
    if not isinstance(value, str):
        raise ConfigError("trace_context must be a string")
    if len(value) > MAX_TRACE_CONTEXT or not value.isascii():
        raise ConfigError(f"trace_context must be at most {MAX_TRACE_CONTEXT} ASCII characters")
    return check_text("trace_context", value)
