"""``TaskQueueConfig`` and ``Backoff``: the configuration DTOs, mirrored from Rust."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from typing import Any

from . import _native
from ._limits import check_seconds
from ._text import check_text
from .exceptions import ConfigError

__all__ = ["DEFAULT_URL", "Backoff", "TaskQueueConfig"]

#: The embedded default: a SQLite file in the current directory.
DEFAULT_URL = "sqlite:///spikard_tasks.db"

_ENV_PREFIX = "SPIKARD_TASKS_"


@dataclasses.dataclass(frozen=True)
class Backoff:
    """Exponential backoff between failed attempts.

    The delay after the n-th failed attempt is ``min(max, initial * multiplier**(n-1))``,
    spread by ``± jitter`` (a fraction of the delay). All values are seconds.
    """

    initial: float = 1.0
    max: float = 300.0
    multiplier: float = 2.0
    jitter: float = 0.1

    @classmethod
    def coerce(cls, value: Backoff | Mapping[str, Any]) -> Backoff:
        """Accepts a ``Backoff`` or an equivalent dict."""
        if isinstance(value, Backoff):
            return value
        if isinstance(value, Mapping):
            try:
                return cls(**value)
            except TypeError as exc:
                raise ConfigError(f"invalid backoff {dict(value)!r}: {exc}") from None
        raise ConfigError(f"backoff must be a Backoff or a dict, not {type(value).__name__}")


@dataclasses.dataclass(frozen=True, repr=False)
class TaskQueueConfig:
    """Configuration of one task queue. Durations are seconds.

    Its ``repr``, ``str`` and :meth:`to_dict` show the URL with its password masked
    (``url`` itself is the URL as given).

    Attributes:
        url: backend URL: ``sqlite:///relative.db``, ``sqlite:////abs/path.db``,
            ``sqlite::memory:``, ``memory://``, ``postgres://…``, ``mysql://…``,
            ``redis://…``, ``inprocess://``.
        queue: queue name jobs go to and workers consume.
        concurrency: jobs one worker runs at once.
        max_attempts: attempts per job unless the task or the enqueue call says otherwise.
        backoff: delays between failed attempts.
        default_priority: priority of jobs that set none (higher runs first).
        poll_interval: how often an idle worker checks for jobs from other processes.
        lease: how long a running job's lease lasts without a heartbeat; a job whose
            worker died runs again once its lease expired.
        heartbeat: how often a worker renews the leases of its running jobs.
        result_ttl: how long finished jobs and results are kept (``None``: forever).
        drain_timeout: how long a stopping worker waits for in-flight jobs.
    """

    url: str = DEFAULT_URL
    queue: str = "default"
    concurrency: int = 16
    max_attempts: int = 3
    backoff: Backoff = dataclasses.field(default_factory=Backoff)
    default_priority: int = 0
    poll_interval: float = 0.05
    lease: float = 30.0
    heartbeat: float = 5.0
    result_ttl: float | None = 7 * 24 * 3600.0
    drain_timeout: float = 30.0

    def __post_init__(self) -> None:
        if not isinstance(self.url, str):
            raise ConfigError(f"url must be a string, not {type(self.url).__name__}")
        # Not shown: the URL may hold a password.
        check_text("url", self.url)
        if isinstance(self.queue, str):
            check_text("queue name", self.queue)
        object.__setattr__(self, "backoff", Backoff.coerce(self.backoff))
        # Named errors for durations that are not numbers of seconds in range (the
        # engine checks them too, but NaN and infinity would not even reach it as JSON).
        for name in ("poll_interval", "drain_timeout", "lease", "heartbeat", "result_ttl"):
            value = getattr(self, name)
            if value is not None or name != "result_ttl":
                check_seconds(name, value, zero_ok=name not in ("lease", "heartbeat"))
        for name in ("initial", "max"):
            check_seconds(f"backoff {name}", getattr(self.backoff, name))

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> TaskQueueConfig:
        """Builds a config from ``SPIKARD_TASKS_*`` variables (e.g. ``SPIKARD_TASKS_URL``,
        ``SPIKARD_TASKS_CONCURRENCY``, ``SPIKARD_TASKS_BACKOFF='{"initial": 2}'``), then
        applies ``overrides``."""
        values = cls.env_values(environ)
        values.update(overrides)
        return cls.from_dict(values)

    @classmethod
    def env_values(cls, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
        """The fields set by ``SPIKARD_TASKS_<FIELD>`` variables (of ``os.environ`` by
        default), parsed; ``ConfigError`` names a variable that does not parse."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            raw = env.get(_ENV_PREFIX + field.name.upper())
            if raw is None:
                continue
            values[field.name] = _parse_env(field.name, raw)
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TaskQueueConfig:
        """Builds a config from a dict; unknown keys raise ``ConfigError``."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(f"unknown configuration keys: {', '.join(unknown)}")
        return cls(**values)

    def replace(self, **changes: Any) -> TaskQueueConfig:
        """A copy with ``changes`` applied."""
        return self.from_dict({**dataclasses.asdict(self), **changes})

    def to_dict(self) -> dict[str, Any]:
        """The config as plain data, the URL's password masked (for showing it)."""
        return {**dataclasses.asdict(self), "url": _native.redact_url(self.url)}

    def to_json(self) -> str:
        """The config as JSON with the real URL: the form the native engine reads."""
        return json.dumps(dataclasses.asdict(self))

    def __repr__(self) -> str:
        shown = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        shown["url"] = _native.redact_url(self.url)
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in shown.items())})"


def describe_url(url: str) -> str:
    """The redacted URL, plus the absolute path of a SQLite file (what a worker started
    from another directory would otherwise silently open instead)."""
    shown = _native.redact_url(url)
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        path = url[len("sqlite:///") :].split("?", 1)[0]
        return f"{shown} ({os.path.abspath(path)})"
    return shown


def _parse_env(name: str, raw: str) -> Any:
    if name in ("url", "queue"):
        return raw
    if name == "backoff":
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{_ENV_PREFIX}BACKOFF is not JSON: {exc}") from None
    if name == "result_ttl" and raw.strip().lower() in ("", "none", "null"):
        return None
    try:
        return (
            int(raw) if name in ("concurrency", "max_attempts", "default_priority") else float(raw)
        )
    except ValueError:
        raise ConfigError(f"{_ENV_PREFIX}{name.upper()}={raw!r} is not a number") from None
