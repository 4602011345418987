"""Request bodies of the HTTP enqueue app (:mod:`spikard_tasks.asgi`) turned into
validated enqueue calls. Every problem is an :class:`~spikard_tasks.http.wire.HTTPError`
(422, or 404 for an unknown task, 415 for a non-JSON ``Content-Type``)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import inspect
from collections.abc import Callable
from typing import Any

from ..options import build_options
from ..task import Task
from .wire import HTTPError, Scope, header

__all__ = ["OPTIONS", "Call", "Lookup", "check_content_type", "parse_call"]

#: Enqueue options accepted in a request's ``options`` object.
OPTIONS = ("priority", "delay", "run_at", "max_attempts", "unique_key", "timeout")

#: ``lookup(name) -> (allowed, task)``: whether the app accepts the task, and its
#: ``Task`` when it is registered in this process.
Lookup = Callable[[str], "tuple[bool, Task[Any, Any] | None]"]

_CALL_FIELDS = frozenset({"args", "kwargs", "options"})
_ITEM_FIELDS = _CALL_FIELDS | {"task"}


@dataclasses.dataclass(frozen=True)
class Call:
    """One validated enqueue call."""

    name: str
    task: Task[Any, Any] | None
    args: list[Any]
    kwargs: dict[str, Any]
    options: dict[str, Any]


def check_content_type(scope: Scope) -> None:
    """Refuses (415) a ``Content-Type`` other than ``application/json`` or
    ``application/*+json``; a request without one is read as JSON."""
    value = header(scope, b"content-type")
    if value is None:
        return
    mime = value.split(b";", 1)[0].strip().lower()
    if mime != b"application/json" and not (
        mime.startswith(b"application/") and mime.endswith(b"+json")
    ):
        raise HTTPError(415, "Content-Type must be application/json")


@functools.lru_cache(maxsize=512)
def _signature(fn: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):
        return None


def _parse_time(value: Any, where: str) -> dt.datetime:
    problem = f"{where}.options.run_at must be an ISO-8601 date-time with a timezone"
    if not isinstance(value, str):
        raise HTTPError(422, problem)
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise HTTPError(422, f"{problem}, got {value!r}") from None
    if when.tzinfo is None or when.utcoffset() is None:
        raise HTTPError(422, f"{problem} (e.g. 2030-01-01T09:00:00Z), got {value!r}")
    return when


def _parse_options(raw: Any, where: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise HTTPError(422, f"{where}.options must be an object")
    unknown = sorted(set(raw) - set(OPTIONS))
    if unknown:
        raise HTTPError(
            422, f"{where}.options: unknown option(s) {unknown}; allowed: {list(OPTIONS)}"
        )
    options = {k: v for k, v in raw.items() if v is not None}
    if "run_at" in options:
        if "delay" in options:
            raise HTTPError(422, f"{where}.options: give delay or run_at, not both")
        options["run_at"] = _parse_time(options["run_at"], where)
    try:
        build_options(dict(options))
    except (ValueError, TypeError, OverflowError) as exc:
        raise HTTPError(422, f"{where}.options: {exc}") from None
    return options


def parse_call(obj: Any, where: str, lookup: Lookup, name: str | None = None) -> Call:
    """Validates one call: ``{"args", "kwargs", "options"}`` for the task ``name``, or
    a batch item that names its ``task``. ``where`` prefixes every error message
    (``"body"``, ``"tasks[2]"``). The arguments must bind to the handler's signature
    when the task is registered here."""
    if not isinstance(obj, dict):
        raise HTTPError(422, f"{where} must be a JSON object")
    fields = _CALL_FIELDS if name is not None else _ITEM_FIELDS
    unknown = sorted(set(obj) - fields)
    if unknown:
        raise HTTPError(422, f"{where}: unknown field(s) {unknown}; expected {sorted(fields)}")
    if name is None:
        name = obj.get("task")
        if not isinstance(name, str) or not name:
            raise HTTPError(422, f"{where}.task must be a task name")
    found, task = lookup(name)
    if not found:
        raise HTTPError(404, f"{where}: unknown task {name!r}")
    args = obj.get("args")
    args = [] if args is None else args
    kwargs = obj.get("kwargs")
    kwargs = {} if kwargs is None else kwargs
    if not isinstance(args, list):
        raise HTTPError(422, f"{where}.args must be an array")
    if not isinstance(kwargs, dict):
        raise HTTPError(422, f"{where}.kwargs must be an object")
    options = _parse_options(obj.get("options"), where)
    signature = _signature(task.fn) if task is not None else None
    if signature is not None:
        try:
            signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise HTTPError(422, f"{where}: arguments do not fit task {name!r}: {exc}") from None
    return Call(name, task, args, kwargs, options)
