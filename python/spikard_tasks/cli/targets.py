"""Finding the queue a command works on: ``MODULE:QUEUE`` imports, the SQLite file a URL
names, and the one-line errors of the command line."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator

from .._targets import import_target
from ..cron import CronSchedule
from ..exceptions import ConfigError
from ..queue import TaskQueue

__all__ = ["CliError", "load_queue", "require_database", "schedules_noted", "sqlite_path"]


class CliError(ConfigError):
    """A command-line mistake: printed as one line, exit code 2."""


def load_queue(target: str) -> TaskQueue:
    """Imports ``module:attribute`` (attribute may be dotted) and returns the TaskQueue."""
    obj = import_target(target)
    if not isinstance(obj, TaskQueue):
        raise ConfigError(f"{target} is a {type(obj).__name__}, not a TaskQueue")
    return obj


def sqlite_path(url: str) -> str | None:
    """The absolute path of a SQLite file URL (``sqlite:///rel.db``,
    ``sqlite:////abs.db``); ``None`` for in-memory SQLite and other backends."""
    if not url.startswith("sqlite:///") or url.startswith("sqlite:///:memory:"):
        return None
    path = url[len("sqlite:///") :].split("?", 1)[0]
    return os.path.abspath(path) if path else None


def require_database(queue: TaskQueue) -> None:
    """Refuses (``CliError``) a queue on a SQLite file that does not exist."""
    path = sqlite_path(queue.config.url)
    if path is not None and not os.path.exists(path):
        raise CliError(f"no database at {path}")


@contextlib.contextmanager
def schedules_noted(noted: list[tuple[TaskQueue, CronSchedule]]) -> Iterator[None]:
    """While an app is imported, ``TaskQueue.schedule`` appends ``(queue, schedule)`` to
    ``noted`` instead of storing it: storing would open (even create) the database
    before the command has decided which database and whether to write at all."""
    original = TaskQueue.schedule

    def note(self: TaskQueue, schedule: CronSchedule, *, strict: bool = True) -> CronSchedule:
        self._check_task(str(schedule.task), strict)
        if schedule.queue is None:
            schedule = dataclasses.replace(schedule, queue=self.config.queue)
        noted.append((self, schedule))
        return schedule

    TaskQueue.schedule = note  # type: ignore[method-assign]
    try:
        yield
    finally:
        TaskQueue.schedule = original  # type: ignore[method-assign]
