"""``JobStatus``: the one job-state enum."""

from __future__ import annotations

import enum

__all__ = ["JobStatus"]


class JobStatus(str, enum.Enum):
    """The state of a job. Transitions (and only these) happen:

    * ``pending``: ready to run. In: enqueued without delay; a ``scheduled`` job's time
      came; a worker shutting down released it. Out: claimed (``running``) or
      ``cancel()`` (``cancelled``).
    * ``scheduled``: enqueued with ``delay``/``run_at`` and waiting for that time.
      Out: the time comes (``pending``) or ``cancel()``.
    * ``running``: a worker holds its lease and runs an attempt. Out: the handler
      returns (``succeeded``), raises with attempts left (``retrying``), raises with
      none left (``failed``), raises ``Cancel`` or is cancelled (``cancelled``); the
      worker dies and the lease expires (``retrying``, or ``failed`` if no attempts are
      left).
    * ``retrying``: an attempt failed; the next one waits for its backoff. Out: claimed
      again (``running``) or ``cancel()``.
    * ``succeeded``: finished; the return value is stored. Final.
    * ``failed``: every attempt failed (the dead state); errors are stored. Final.
    * ``cancelled``: cancelled before or while running. Final.
    """

    PENDING = "pending"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_finished(self) -> bool:
        """True for the final states: ``succeeded``, ``failed`` and ``cancelled``."""
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)

    def __str__(self) -> str:
        return self.value
