"""Checks and descriptions of what users hand a ``BackgroundRuntime``: its options,
job options and callables (async or not, default job name), and the text of errors and
jobs in messages.

Split out of :mod:`spikard_tasks.runtime` to keep the runtime's scheduling code and these
small helpers each in a module of its own.
"""

from __future__ import annotations

import functools
import inspect
import math
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .runtime_job import RuntimeJob

_CO_COROUTINE = inspect.CO_COROUTINE


def _is_async_callable(fn: Callable[..., Any]) -> bool:
    """Return whether calling ``fn`` returns a coroutine (an ``async def`` function)."""
    while True:
        if type(fn) is types.FunctionType:
            return bool(fn.__code__.co_flags & _CO_COROUTINE)
        if isinstance(fn, types.MethodType):
            fn = fn.__func__
        elif isinstance(fn, functools.partial):
            fn = fn.func
        else:
            break
    if inspect.iscoroutinefunction(fn):
        return True
    # An instance whose class defines ``async def __call__``.
    return inspect.iscoroutinefunction(type(fn).__call__)


def _callable_name(fn: Callable[..., Any]) -> str:
    name = getattr(fn, "__qualname__", None)
    if isinstance(name, str):
        return name
    if isinstance(fn, functools.partial):
        return _callable_name(fn.func)
    return type(fn).__qualname__


def _error_text(exc: BaseException) -> str:
    """Format ``exc`` as ``"ExcType: message"`` (just ``"ExcType"`` without a message)."""
    try:
        message = str(exc)
    except Exception:  # a broken __str__ must not break failure reporting
        message = "<unprintable exception>"
    kind = type(exc).__name__
    return f"{kind}: {message}" if message else kind


def _describe(job: RuntimeJob[Any]) -> str:
    return f"{job.name} ({job.id})"


def _check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _check_timeout(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a non-negative number of seconds, got {value!r}")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{name} must be a finite, non-negative number of seconds, got {value!r}")
    return seconds


def _no_op() -> None:
    """A placeholder callable."""


def _check_priority(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"priority must be an int, got {value!r}")
    return value


def _optional_seconds(name: str, value: object) -> float | None:
    return None if value is None else _check_timeout(name, value)
