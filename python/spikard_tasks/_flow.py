"""The values of flow control, checked at the call with the engine's rules: a rate
(``"100/s"``, ``"600/m"``, ``"10/h"``, ``"5/d"``), a cap on running jobs
(``max_running``), and the queues of one worker with their own concurrency
(``{"emails": 4, "reports": None}``, ``"emails=4,reports"`` on the command line).

A rate is a token bucket of one token refilled at the rate: starts are spaced evenly
(``"100/s"``: at most one start every 10 ms). The engine stores and enforces it; these
checks only make a wrong value fail where it is written, with a clear ``ConfigError``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from ._text import check_text
from .exceptions import ConfigError

__all__ = [
    "MAX_RATE_PER_SECOND",
    "MAX_RUNNING",
    "QueuesArg",
    "check_max_running",
    "check_rate",
    "format_queues",
    "parse_queues",
    "queue_caps",
    "rate_interval",
]

#: The most starts per second a rate may allow (the engine's limit).
MAX_RATE_PER_SECOND = 1_000_000
#: The largest ``max_running`` (the engine stores a 32-bit unsigned count).
MAX_RUNNING = 2**32 - 1

#: What ``queues=`` takes: names, or names with their concurrency in this worker
#: (``None``: no cap of its own).
QueuesArg = Sequence[str] | Mapping[str, int | None]

_UNITS = {
    "s": ("s", 1),
    "sec": ("s", 1),
    "second": ("s", 1),
    "m": ("m", 60),
    "min": ("m", 60),
    "minute": ("m", 60),
    "h": ("h", 3600),
    "hour": ("h", 3600),
    "d": ("d", 86400),
    "day": ("d", 86400),
}
_RATE = re.compile(r"^\s*([0-9]+)\s*/\s*([a-z]+)\s*$")


def _bad_rate(text: object, why: str) -> ConfigError:
    return ConfigError(
        f'rate_limit {text!r} {why}; write it as N/s, N/m, N/h or N/d (e.g. "100/s")'
    )


def check_rate(value: object, field: str = "rate_limit") -> str | None:
    """``value`` as the engine writes it (``"100/s"``), or ``None`` for ``None``;
    ``ConfigError`` for anything but ``N/s``, ``N/m``, ``N/h`` or ``N/d`` with a whole
    ``N`` of at least 1 and at most 1,000,000 per second."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(
            f'{field} must be text like "100/s", "600/m", "10/h" or "5/d", '
            f"not {type(value).__name__}"
        )
    if "/" not in value:
        raise _bad_rate(value, "has no '/'")
    match = _RATE.match(value)
    if match is None:
        count_text = value.split("/", 1)[0].strip()
        if not count_text.isdigit() or not count_text.isascii():
            raise _bad_rate(value, "does not start with a whole number")
        raise _bad_rate(value, "has an unknown unit")
    count = int(match.group(1))
    unit = _UNITS.get(match.group(2))
    if unit is None:
        raise _bad_rate(value, "has an unknown unit")
    if count == 0:
        raise _bad_rate(value, "allows nothing (0)")
    letter, seconds = unit
    if count > MAX_RUNNING:
        raise _bad_rate(value, f"counts more than {MAX_RUNNING} starts")
    if count > MAX_RATE_PER_SECOND * seconds:
        raise _bad_rate(value, "is above 1,000,000 per second")
    return f"{count}/{letter}"


def rate_interval(rate: str) -> float:
    """Seconds between two starts of a checked rate (``"100/s"`` → 0.01)."""
    count, unit = rate.split("/")
    return _UNITS[unit][1] / int(count)


def check_max_running(value: object, field: str = "max_running") -> int | None:
    """``value`` if it is a whole number from 1 to 2**32 - 1 (``bool`` refused), or
    ``None``; ``ConfigError`` otherwise."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{field} must be a whole number of at least 1, got {value!r}")
    if value < 1:
        raise ConfigError(
            f"{field} must be at least 1, got {value} (pause the queue to stop it instead)"
        )
    if value > MAX_RUNNING:
        raise ConfigError(f"{field} must be at most {MAX_RUNNING}, got {value}")
    return value


def queue_caps(queues: QueuesArg | None) -> tuple[list[str] | None, dict[str, int]]:
    """``queues=`` as the names to consume (``None``: the queue's own) and the
    concurrency of each queue that has one in this worker. A mapping gives both (a
    value of ``None``: no cap of its own); a sequence gives names only."""
    if queues is None:
        return None, {}
    if isinstance(queues, str):
        raise ConfigError(
            f"queues takes a list of names or a mapping of name to concurrency, not the "
            f"text {queues!r} (write [{queues!r}])"
        )
    if isinstance(queues, Mapping):
        names: list[str] = []
        caps: dict[str, int] = {}
        for name, cap in queues.items():
            names.append(_queue_name(name))
            checked = check_max_running(cap, f"the concurrency of queue {name!r}")
            if checked is not None:
                caps[name] = checked
        return names, caps
    return [_queue_name(name) for name in queues], {}


def _queue_name(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise ConfigError(f"a queue name must be a non-empty string, got {name!r}")
    return check_text("queue name", name)


def parse_queues(text: str) -> dict[str, int | None]:
    """``--queues`` text: ``"a,b"``, ``"a=4,b=1"`` or mixed (``"a,b=2"``: ``a`` has no
    cap of its own); ``ConfigError`` for an empty list, an empty name or a bad number."""
    out: dict[str, int | None] = {}
    for part in text.split(","):
        item = part.strip()
        if not item:
            continue
        name, sep, number = item.partition("=")
        name = name.strip()
        if not name:
            raise ConfigError(f"--queues item {item!r} has no queue name")
        cap: int | None = None
        if sep:
            number = number.strip()
            if not number.isdigit() or not number.isascii():
                raise ConfigError(
                    f"--queues item {item!r}: the concurrency after '=' must be a whole "
                    f"number of at least 1"
                )
            cap = check_max_running(int(number), f"the concurrency of queue {name!r}")
        out[name] = cap
    if not out:
        raise ConfigError("--queues needs at least one queue name")
    return out


def format_queues(queues: QueuesArg) -> str:
    """``queues=`` as ``--queues`` text (``{"a": 4, "b": None}`` → ``"a=4,b"``)."""
    if isinstance(queues, Mapping):
        return ",".join(name if cap is None else f"{name}={cap}" for name, cap in queues.items())
    return ",".join(queues)
