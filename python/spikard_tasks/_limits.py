"""The limits every duration, instant and attempt count is checked against.

They are the engine's (``spikard_tasks::time`` and ``config``): durations from 0 to 100
years, instants in the years 1 to 9999, attempts from 1 to 2**31 - 1. The checks run at
the call, so no later arithmetic can overflow, wrap or hang a job.
"""

from __future__ import annotations

import datetime as dt
import math

from .exceptions import ConfigError

__all__ = ["MAX_ATTEMPTS", "MAX_INSTANT_MS", "MAX_SECONDS", "check_seconds", "from_ms"]

#: The longest duration accepted anywhere, in seconds: 100 years.
MAX_SECONDS = 100 * 365.25 * 86_400.0
#: The latest instant accepted (9999-12-31T23:59:59.999Z), ms since the epoch.
MAX_INSTANT_MS = 253_402_300_799_999
#: The most attempts a job may have.
MAX_ATTEMPTS = 2**31 - 1

_MIN = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
_MAX = dt.datetime.max.replace(tzinfo=dt.timezone.utc)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def check_seconds(name: str, value: object, *, zero_ok: bool = True) -> float:
    """``value`` as seconds if it is a finite number (or ``timedelta``) from 0 (more than
    0 unless ``zero_ok``) to :data:`MAX_SECONDS`; ``ConfigError`` naming the limit if not."""
    if isinstance(value, dt.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be seconds (a number) or a timedelta, got {value!r}")
    else:
        try:
            seconds = float(value)
        except OverflowError:
            seconds = math.inf
    low_ok = seconds >= 0 if zero_ok else seconds > 0
    if not (math.isfinite(seconds) and low_ok and seconds <= MAX_SECONDS):
        low = "0" if zero_ok else "more than 0"
        raise ConfigError(
            f"{name} must be a number of seconds from {low} to {MAX_SECONDS:.0f} "
            f"(100 years), got {value!r}"
        )
    return seconds


def from_ms(ms: int | None) -> dt.datetime | None:
    """An aware UTC datetime from ms since the epoch; instants outside the years 1 to
    9999 (written by an older release or by hand) become the nearest end of that range."""
    if ms is None:
        return None
    try:
        return _EPOCH + dt.timedelta(milliseconds=ms)
    except OverflowError:
        return _MAX if ms > 0 else _MIN
