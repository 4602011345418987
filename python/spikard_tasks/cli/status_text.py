"""``spikard-tasks status`` for people: times as ISO-8601 UTC with how long ago (or how
soon) they are, tracebacks as the multi-line text Python printed, progress if reported."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from .._limits import from_ms

__all__ = ["format_job", "format_time", "relative"]


def relative(delta_s: float) -> str:
    """``"5 s ago"`` / ``"in 3 min"`` for a signed distance from now, in seconds."""
    size = abs(delta_s)
    for unit, length in (("d", 86_400.0), ("h", 3_600.0), ("min", 60.0)):
        if size >= length:
            amount = f"{int(size // length)} {unit}"
            break
    else:
        amount = f"{int(size)} s"
    if size < 1:
        return "now"
    return f"{amount} ago" if delta_s < 0 else f"in {amount}"


def format_time(ms: int | None, now_ms: int | None = None) -> str:
    """``2025-01-02T03:04:05Z (2 s ago)``; ``-`` for no time."""
    if ms is None:
        return "-"
    when = from_ms(ms)
    assert when is not None
    now = int(time.time() * 1000) if now_ms is None else now_ms
    stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{stamp} ({relative((ms - now) / 1000)})"


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _progress(value: Any, now_ms: int) -> str | None:
    """The ``progress`` entry (``{"fraction", "message", "at_ms"}``), if the job has one."""
    if not isinstance(value, Mapping):
        return None
    parts: list[str] = []
    fraction = value.get("fraction")
    if isinstance(fraction, (int, float)) and not isinstance(fraction, bool):
        parts.append(f"{fraction * 100:.0f}%")
    message = value.get("message")
    if message:
        parts.append(str(message))
    at_ms = value.get("at_ms")
    if isinstance(at_ms, int) and not isinstance(at_ms, bool):
        parts.append(f"(reported {format_time(at_ms, now_ms)})")
    return " ".join(parts) or "-"


def _indent(text: str, prefix: str) -> str:
    return "\n".join(prefix + line for line in text.rstrip("\n").splitlines())


def format_job(rec: Mapping[str, Any], now_ms: int | None = None) -> str:
    """A stored job (the engine's record) as lines of text."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    rows: list[tuple[str, str]] = [
        ("job", str(rec.get("id"))),
        ("task", str(rec.get("task"))),
        ("queue", str(rec.get("queue"))),
        ("status", str(rec.get("status"))),
        ("attempts", f"{rec.get('attempts')} of {rec.get('max_attempts')}"),
        ("priority", str(rec.get("priority"))),
        ("enqueued", format_time(rec.get("enqueued_at_ms"), now)),
        ("run at", format_time(rec.get("run_at_ms"), now)),
        ("started", format_time(rec.get("started_at_ms"), now)),
        ("finished", format_time(rec.get("finished_at_ms"), now)),
    ]
    if rec.get("unique_key") is not None:
        rows.append(("unique key", str(rec["unique_key"])))
    progress = _progress(rec.get("progress"), now)
    if progress is not None:
        rows.append(("progress", progress))
    rows.append(("args", _json(rec.get("args", []))))
    rows.append(("kwargs", _json(rec.get("kwargs", {}))))
    if rec.get("status") == "succeeded" or rec.get("result") is not None:
        rows.append(("result", _json(rec.get("result"))))
    if rec.get("cancel_reason"):
        rows.append(("cancelled", str(rec["cancel_reason"])))
    width = max(len(label) for label, _ in rows)
    lines = [f"{label:<{width}}  {value}" for label, value in rows]
    errors = rec.get("errors") or []
    if errors:
        lines.append(f"errors ({len(errors)}):")
        for entry in errors:
            at = format_time(entry.get("at_ms"), now)
            lines.append(f"  attempt {entry.get('attempt')}, {at}:")
            # A traceback ends with the error itself, so it is shown once, as printed.
            text = entry.get("traceback") or entry.get("error")
            lines.append(_indent(str(text), "    "))
    return "\n".join(lines)
