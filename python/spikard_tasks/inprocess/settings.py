"""The options of an ``inprocess://`` URL, and the config checks of the fast path."""

from __future__ import annotations

import dataclasses
import math
from typing import Any
from urllib.parse import unquote

from .. import _native
from ..config import TaskQueueConfig
from ..exceptions import ConfigError

__all__ = ["SCHEME", "InProcessSettings", "check_config"]

SCHEME = "inprocess://"
_SCHEME = SCHEME


@dataclasses.dataclass(frozen=True)
class InProcessSettings:
    """The options of an ``inprocess://`` URL (see the module documentation)."""

    max_queue_size: int = 1024
    max_concurrent_tasks: int = 128
    drain_timeout: float = 30.0
    keep_results: int = 10_000

    @classmethod
    def from_url(cls, url: str, drain_timeout: float = 30.0) -> InProcessSettings:
        """Parses ``inprocess://[?key=value&...]``; ``ConfigError`` names a bad part.

        ``drain_timeout`` is the default when the URL does not set one.
        """
        if not url.startswith(_SCHEME):
            raise ConfigError(f"an in-process URL is written {_SCHEME}[?key=value&...]")
        where, _, query = url[len(_SCHEME) :].partition("?")
        if where:
            shown = _native.redact_url(url)
            raise ConfigError(f"{_SCHEME} takes no host or path, got {shown!r}")
        names = [f.name for f in dataclasses.fields(cls)]
        values: dict[str, Any] = {"drain_timeout": drain_timeout}
        seen: set[str] = set()
        for item in query.split("&") if query else ():
            raw_key, sep, raw_value = item.partition("=")
            key, value = unquote(raw_key), unquote(raw_value)
            if not sep or not key:
                raise ConfigError(f"malformed option {item!r} in {_SCHEME} URL (want key=value)")
            if key not in names:
                raise ConfigError(f"unknown {_SCHEME} option {key!r} (known: {', '.join(names)})")
            if key in seen:
                raise ConfigError(f"{_SCHEME} option {key!r} is given twice")
            seen.add(key)
            values[key] = _parse_option(key, value)
        return cls(**values)


def _parse_option(key: str, value: str) -> int | float:
    if key == "drain_timeout":
        try:
            seconds = float(value)
        except ValueError:
            seconds = math.nan
        if not math.isfinite(seconds) or seconds < 0:
            raise ConfigError(
                f"{_SCHEME} option drain_timeout={value!r} must be a non-negative number of seconds"
            )
        return seconds
    low = 0 if key == "keep_results" else 1
    try:
        number = int(value)
    except ValueError:
        number = low - 1
    if number < low:
        kind = "a non-negative" if low == 0 else "a positive"
        raise ConfigError(f"{_SCHEME} option {key}={value!r} must be {kind} integer")
    return number


def check_config(config: TaskQueueConfig) -> None:
    """The engine's own checks of a config (``ConfigError``), made by the engine."""
    _native.check_config(config.to_json())
