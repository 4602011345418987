"""Checking a job's arguments against its handler's signature at the enqueue call.

A missing or unexpected argument raises ``InvalidArguments`` (a ``TypeError``) before
anything is written, instead of failing every attempt in the worker. The common case —
positional-or-keyword parameters only, called positionally — is checked without
``inspect.Signature.bind`` (it costs ~2 µs; a bulk enqueue writes a job in ~4 µs).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .exceptions import InvalidArguments

__all__ = ["ArgumentCheck"]

_PLAIN = inspect.Parameter.POSITIONAL_OR_KEYWORD


class ArgumentCheck:
    """The signature of one handler, ready to check calls against."""

    __slots__ = ("_max", "_min", "_name", "_signature")

    def __init__(self, name: str, fn: Callable[..., Any]) -> None:
        self._name = name
        try:
            signature: inspect.Signature | None = inspect.signature(fn)
        except (TypeError, ValueError):  # builtins and some C callables have none
            signature = None
        self._signature = signature
        # Positional calls of at least _min and at most _max arguments bind without a
        # look at the signature (-1: always ask it).
        self._min = self._max = -1
        if signature is not None:
            params = list(signature.parameters.values())
            if all(p.kind is _PLAIN for p in params):
                required = [i for i, p in enumerate(params) if p.default is p.empty]
                self._min = required[-1] + 1 if required else 0
                self._max = len(params)

    @property
    def signature(self) -> inspect.Signature | None:
        """The handler's signature (``None``: it has none to check against)."""
        return self._signature

    def check(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        """Raises ``InvalidArguments`` unless ``handler(*args, **kwargs)`` binds."""
        if not kwargs and self._min <= len(args) <= self._max:
            return
        signature = self._signature
        if signature is None:
            return
        try:
            signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise InvalidArguments(
                f"task {self._name!r} cannot take these arguments: {exc} "
                f"(signature: {self._name}{signature}); nothing was enqueued"
            ) from None
