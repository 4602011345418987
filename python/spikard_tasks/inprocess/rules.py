"""The durable path's rules as the fast path applies them: JSON arguments and results,
and retries with backoff."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from .. import _native
from ..config import Backoff
from ..exceptions import Retry, SerializationError
from .runtime_job import RetryPolicy

__all__ = ["backoff_delay", "json_args", "json_kwargs", "json_runner", "retry_policy"]

_I64_MIN = -(2**63)
_U64_MAX = 2**64 - 1


# -- JSON: the durable path's rules --------------------------------------------------


#: Set on an exception that a retry cannot fix (a result that is not JSON).
_NO_RETRY = "_spikard_no_retry"


def _is_json_scalar(value: Any) -> bool:
    """A value that is its own JSON copy: ``None``, ``bool``, ``str``, a 64-bit ``int``
    or a finite ``float`` (exact types; subclasses take the full JSON path)."""
    kind = type(value)
    if (kind is str and value.isascii()) or kind is bool or value is None:
        return True
    if kind is int:
        return bool(_I64_MIN <= value <= _U64_MAX)
    return kind is float and math.isfinite(value)


def _roundtrip(what: str, value: Any) -> Any:
    """A JSON-decoded copy of ``value``; the error names ``what`` like the engine's."""
    try:
        text = _native.to_json(value)
    except SerializationError as exc:
        message = str(exc)
        if message.startswith("value"):
            message = what + message[len("value") :]
        error = SerializationError(message)
        if what == "result":
            setattr(error, _NO_RETRY, True)
        raise error from None
    return json.loads(text)


def json_args(args: list[Any]) -> list[Any]:
    """``args`` if every item is a JSON scalar (the list is already the caller's copy),
    else a JSON-decoded copy (``SerializationError`` for anything that is not JSON)."""
    for value in args:
        kind = type(value)
        # A non-ASCII str takes the full path: a lone surrogate is not JSON.
        if (
            (kind is str and value.isascii())
            or kind is bool
            or value is None
            or (kind is int and _I64_MIN <= value <= _U64_MAX)
            or (kind is float and math.isfinite(value))
        ):
            continue
        copied: list[Any] = _roundtrip("args", args)
        return copied
    return args


def json_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``kwargs`` under the same rules as :func:`json_args`."""
    if not kwargs:
        return {}
    for key, value in kwargs.items():
        if type(key) is not str or not key.isascii() or not _is_json_scalar(value):
            copied: dict[str, Any] = _roundtrip("kwargs", kwargs)
            return copied
    return dict(kwargs)


def _json_result(value: Any) -> Any:
    if _is_json_scalar(value):
        return value
    return _roundtrip("result", value)


def json_runner(fn: Callable[..., Any], is_async: bool) -> Callable[..., Any]:
    """Wraps a handler so that its result is checked and copied as JSON."""
    if is_async:

        async def run_async(*args: Any, **kwargs: Any) -> Any:
            return _json_result(await fn(*args, **kwargs))

        return run_async

    def run(*args: Any, **kwargs: Any) -> Any:
        return _json_result(fn(*args, **kwargs))

    return run


# -- retries --------------------------------------------------------------------------


def backoff_delay(backoff: Backoff, failed_attempts: int) -> float:
    """Seconds to wait after ``failed_attempts`` failures: the engine's formula
    ``min(max, initial * multiplier ** (n - 1))``, spread by ``± jitter``, computed by
    the engine itself."""
    b = backoff
    return _native.backoff_delay(b.initial, b.max, b.multiplier, b.jitter, failed_attempts)


def retry_policy(max_attempts: int, backoff: Backoff) -> RetryPolicy | None:
    """The engine's retry rule as a runtime retry policy (``None``: one attempt).

    The decision is the engine's own (``_native.next_attempt_delay``, the function the
    durable worker applies): ``Retry(after=...)`` waits that long; a result that is not
    JSON is not retried; any other exception waits for the backoff; no retry once
    ``max_attempts`` ran.
    """
    if max_attempts <= 1:
        return None

    b = backoff
    args = (b.initial, b.max, b.multiplier, b.jitter)

    def policy(exc: BaseException, attempt: int) -> float | None:
        after = exc.after if isinstance(exc, Retry) else None
        retryable = not getattr(exc, _NO_RETRY, False)
        return _native.next_attempt_delay(*args, attempt, max_attempts, after, retryable)

    return policy
