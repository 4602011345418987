"""The engine's log events in Python's ``logging``, and a JSON log format.

Every event of the Rust engine (workers, stores, the scheduler, the libraries they use)
is logged under ``spikard_tasks.engine`` and its children — ``spikard_tasks.engine.job``
for the line per job, ``spikard_tasks.engine.worker``, ``spikard_tasks.engine.store``,
``spikard_tasks.engine.sqlx``, … — with the event's fields as record attributes (the
``extra`` of a log call: ``job_id``, ``task``, ``queue``, ``attempt``, ``duration``, …)
and, for a job that failed for good, its traceback as the record's exception text. The
engine asks for events down to the effective level of ``spikard_tasks.engine``
(``WARNING`` unless configured), so lower levels cost nothing.

``SPIKARD_TASKS_LOG=debug`` (``error``, ``warning``, ``info``, ``debug``, ``trace``) sets
that level from the environment, and adds a stderr handler when logging has none.
"""

from __future__ import annotations

import atexit
import datetime as dt
import json
import logging
import os
import sys
from typing import Any

from . import _native

__all__ = ["ENGINE_LOGGER", "TRACE", "JsonFormatter", "install", "refresh"]

#: A level below ``DEBUG`` for the engine's most verbose events.
TRACE = 5
ENGINE_LOGGER = "spikard_tasks.engine"

_LEVELS = {1: logging.ERROR, 2: logging.WARNING, 3: logging.INFO, 4: logging.DEBUG, 5: TRACE}
_BY_NAME = {
    "error": logging.ERROR,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": TRACE,
}
_RESERVED = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
_names: dict[str, str] = {}
_installed = False


def _rank() -> int:
    """The most verbose engine level wanted, on the engine's scale (1 error … 5 trace)."""
    level = logging.getLogger(ENGINE_LOGGER).getEffectiveLevel()
    if level <= TRACE:
        return 5
    if level <= logging.DEBUG:
        return 4
    if level <= logging.INFO:
        return 3
    if level <= logging.WARNING:
        return 2
    return 1


def _logger_name(target: str) -> str:
    name = _names.get(target)
    if name is None:
        parts = target.split("::")
        if parts[0] in ("spikard_tasks", "spikard_tasks_py"):
            child = parts[1] if len(parts) > 1 else "core"
        else:
            child = parts[0]
        name = _names[target] = f"{ENGINE_LOGGER}.{child}"
    return name


def _shown(value: Any) -> str:
    text = str(value)
    return repr(text) if isinstance(value, str) and (not text or " " in text) else text


def _emit(records: list[tuple[str, int, str, dict[str, Any]]], dropped: int) -> None:
    """Logs a batch of engine events (called by the engine's forwarding thread)."""
    for target, rank, message, fields in records:
        name = _logger_name(target)
        logger = logging.getLogger(name)
        level = _LEVELS.get(rank, logging.ERROR)
        if not logger.isEnabledFor(level):
            continue
        traceback = fields.pop("traceback", None)
        if fields:
            message = f"{message} ({' '.join(f'{k}={_shown(v)}' for k, v in fields.items())})"
        extra = {(f"engine_{k}" if k in _RESERVED else k): v for k, v in fields.items()}
        record = logger.makeRecord(name, level, "(engine)", 0, message, (), None, extra=extra)
        if traceback:
            record.exc_text = str(traceback).rstrip("\n")
        logger.handle(record)
    if dropped:
        logging.getLogger(ENGINE_LOGGER).warning(
            "%d engine log events were dropped: the log was not read fast enough", dropped
        )


def install() -> None:
    """Starts handing the engine's events to ``logging`` (once per process)."""
    global _installed
    if _installed:
        return
    _installed = True
    logging.addLevelName(TRACE, "TRACE")
    wanted = os.environ.get("SPIKARD_TASKS_LOG", "").strip().lower()
    if wanted in _BY_NAME:
        logging.getLogger(ENGINE_LOGGER).setLevel(_BY_NAME[wanted])
        package = logging.getLogger("spikard_tasks")
        if not package.handlers and not logging.getLogger().handlers:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(
                logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
            )
            package.addHandler(handler)
    _native.start_log_forwarding(_emit, _rank)
    atexit.register(_native.stop_log_forwarding)


def refresh() -> None:
    """Tells the engine the current level of ``spikard_tasks.engine`` now (it reads it
    every half second anyway): call after changing logging's configuration when the
    next events matter, as a worker does when it starts."""
    if _installed:
        _native.start_log_forwarding(_emit, _rank)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts`` (ISO-8601 UTC), ``level``, ``logger``,
    ``message``, every ``extra`` attribute (``job_id``, ``task``, …) and ``exception``
    (the traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                out[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exception"] = record.exc_text
        return json.dumps(out, default=str)
