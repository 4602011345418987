"""Type stubs of the native extension (rust/spikard-tasks-py)."""

from collections.abc import Callable, Sequence
from typing import Any, Final, final

__all__ = [
    "FEATURES",
    "NativeQueue",
    "NativeScheduler",
    "NativeWorker",
    "ReplySlot",
    "__version__",
    "backend_kind",
    "backoff_delay",
    "check_config",
    "default_config_json",
    "metrics_text",
    "next_attempt_delay",
    "redact_url",
    "start_log_forwarding",
    "stop_log_forwarding",
    "to_json",
    "validate_schedule",
]

__version__: Final[str]
FEATURES: Final[list[str]]

def redact_url(url: str) -> str:
    """Masks the password of a URL."""

def backend_kind(url: str) -> str:
    """The backend a URL selects; raises ConfigError for a malformed URL or a backend
    not compiled in."""

def to_json(obj: object) -> str:
    """JSON text of ``obj`` under the strict argument rules (SerializationError)."""

def default_config_json() -> str:
    """The engine's default configuration as JSON."""

def start_log_forwarding(emit: Callable[..., Any], level: Callable[[], int]) -> None:
    """Hands the engine's log events to ``emit(records, dropped)`` (see ``_logging``)."""

def stop_log_forwarding() -> None:
    """Hands over what is queued and stops forwarding log events."""

def metrics_text() -> str:
    """The job metrics of this process in the Prometheus text exposition format 0.0.4:
    ``spikard_tasks_jobs_{enqueued,started,succeeded,failed,retried,cancelled}_total``
    and the ``spikard_tasks_job_duration_seconds`` histogram by ``task`` and ``queue``,
    and the ``spikard_tasks_job_start_latency_seconds`` histogram by ``queue``. At most
    1000 (task, queue) pairs get series of their own; later ones are counted under
    ``task="_other",queue="_other"``."""

def check_config(config_json: str) -> None:
    """Validates a configuration as the engine does (``ConfigError``)."""

def backoff_delay(
    initial: float, max: float, multiplier: float, jitter: float, failed_attempts: int
) -> float:
    """Seconds to wait after ``failed_attempts`` failures (the engine's formula)."""

def next_attempt_delay(
    initial: float,
    max: float,
    multiplier: float,
    jitter: float,
    attempt: int,
    max_attempts: int,
    retry_after: float | None,
    retryable: bool,
) -> float | None:
    """The engine's retry decision: seconds until the next attempt, or ``None``."""

@final
class NativeQueue:
    """A connection to one task queue."""

    def __new__(cls, config_json: str) -> NativeQueue: ...
    @property
    def url(self) -> str: ...
    @property
    def queue(self) -> str: ...
    def enqueue(
        self, jobs: Sequence[tuple[str, Any, Any, dict[str, Any] | None]]
    ) -> list[tuple[str, bool]]: ...
    def get(self, job_id: str) -> dict[str, Any] | None: ...
    def cancel(self, job_id: str) -> bool: ...
    def set_progress(self, job_id: str, fraction: float, message: str | None = None) -> bool:
        """Stores ``{"fraction", "message", "at_ms"}`` with a running job (the record's
        ``"progress"``); ``False`` when the job is not running. ``ConfigError`` for a
        fraction that is not finite or not from 0.0 to 1.0, or a message longer than
        1,000 characters or with a NUL."""
    def wait(self, job_id: str, timeout: float | None = None) -> dict[str, Any] | None: ...
    def close(self) -> None: ...
    def counts(self, queue: str | None = None) -> dict[str, int]: ...
    def save_schedule(self, definition: str) -> None: ...
    def schedules(self) -> list[dict[str, Any]]: ...
    def remove_schedule(self, name: str) -> bool: ...
    def start_scheduler(self) -> NativeScheduler: ...
    def stats(self) -> dict[str, Any]:
        """Figures per queue: ``{"now_ms": int, "queues": [{"queue": str, "counts":
        {state: int}, "oldest_ready_ms": int | None, "succeeded_last_minute": int,
        "failed_last_minute": int, "paused": bool}], "limits": [as limits() returns]}``
        (every queue with a job or paused; ``now_ms`` is the store's clock)."""
    def list_jobs(self, filter_json: str, limit: int, cursor: str | None = None) -> dict[str, Any]:
        """A page of jobs matching ``filter_json`` (a ``JobFilter``: ``{"statuses":
        [...], "task", "queue", "since_ms", "until_ms", "ids": [...]}``, absent = any),
        newest first: ``{"jobs": [record as get() returns], "next_cursor": str | None}``.
        ``ConfigError`` for a limit outside 1..=1000, a malformed cursor or filter, or
        ``since_ms`` after ``until_ms``."""
    def retry(self, job_id: str) -> bool:
        """Puts a failed or cancelled job back to pending, due now, with a fresh attempt
        budget (its errors kept); ``False`` for any other or unknown job."""
    def retry_jobs(self, filter_json: str) -> int:
        """Retries every failed or cancelled job matching the filter (its statuses
        narrowed to those two); returns how many went back to pending."""
    def cancel_jobs(self, filter_json: str) -> int:
        """Cancels every matching job that has not started and asks running ones to
        stop; returns how many of both."""
    def purge(self, filter_json: str, older_than: float) -> int:
        """Deletes matching finished jobs that finished more than ``older_than`` seconds
        ago (>= 0, finite, else ``ConfigError``); returns how many."""
    def pause(self, queue: str) -> bool:
        """Pauses a queue: no worker claims from it (each notices within its poll
        interval); enqueueing still works. ``False`` if it was paused already."""
    def resume(self, queue: str) -> bool:
        """Resumes a paused queue; ``False`` if it was not paused."""
    def set_limit(
        self,
        scope: str,
        name: str,
        rate: str | None = None,
        max_running: int | None = None,
    ) -> bool:
        """Stores the limit of a task or queue (``scope`` ``"task"`` or ``"queue"``): a
        rate such as ``"100/s"``, ``"600/m"``, ``"10/h"`` or ``"5/d"`` (starts spaced
        evenly) and/or a cap on running jobs across every worker; with neither it removes
        the stored limit. Returns whether anything changed. ``ConfigError`` for a bad
        scope, rate, cap (< 1) or name."""
    def limits(self) -> list[dict[str, Any]]:
        """Every stored limit: ``{"scope", "name", "rate": str | None, "max_running":
        int | None, "running": int, "next_start_ms": int}``, by scope and name."""
    def paused(self) -> list[str]:
        """The paused queues, by name."""
    def workers(self) -> list[dict[str, Any]]:
        """The live workers (missed fewer than two heartbeats): ``name``, ``host``,
        ``pid``, ``queues``, ``concurrency``, ``started_at_ms``, ``heartbeat_at_ms``,
        ``heartbeat_interval_ms``, ``jobs_held``, ``version``."""
    def start_worker(
        self,
        handlers: dict[str, tuple[Callable[..., Any], bool]],
        options: dict[str, Any],
        async_submit: Callable[..., Any] | None = None,
        job_context: tuple[Any, Any] | None = None,
    ) -> NativeWorker: ...

@final
class NativeWorker:
    """A worker running on the native runtime."""

    @property
    def name(self) -> str: ...
    def in_flight(self) -> int: ...
    def request_stop(self) -> None: ...
    def join(self, timeout: float | None = None) -> dict[str, int] | None: ...
    def is_running(self) -> bool: ...
    def runs_scheduler(self) -> bool: ...
    def stats(self) -> dict[str, int]: ...

@final
class ReplySlot:
    """The reply handle of one async handler attempt: the coroutine's value or exception
    goes back to the waiting worker through it (used by spikard_tasks._bridge)."""

    def ok(self, value: object) -> None: ...
    def error(self, exc: BaseException) -> None: ...

def validate_schedule(definition: str, after_ms: int, stored: bool = False) -> int | None:
    """Validates a schedule (JSON); returns its next tick after ``after_ms``. Refuses one
    that never fires from now on unless it was ``stored`` (read back from storage)."""

@final
class NativeScheduler:
    """A running cron scheduler."""

    def stop(self) -> None: ...
