"""Normalizing what users pass to ``TaskQueue``: handlers to register, and the jobs,
arguments and options of an enqueue call."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from .exceptions import ConfigError
from .options import build_options
from .task import TaskHandler

__all__ = ["as_args", "as_kwargs", "handler_callable", "job_items", "merge_options"]


def handler_callable(target: Any) -> tuple[Callable[..., Any], str]:
    if isinstance(target, type):
        if not callable(getattr(target, "handle", None)):
            raise ConfigError(f"class {target.__qualname__} needs a handle() method")
        instance = target()
        return instance.handle, f"{target.__module__}.{target.__qualname__}"
    if isinstance(target, TaskHandler):
        cls = type(target)
        return target.handle, f"{cls.__module__}.{cls.__qualname__}"
    if not callable(target):
        raise ConfigError(f"a task must be callable, not {type(target).__name__}")
    module = getattr(target, "__module__", None) or "__main__"
    qualname = getattr(target, "__qualname__", None) or type(target).__qualname__
    return target, f"{module}.{qualname}"


def job_items(jobs: Any) -> Iterator[Any]:
    """The items of ``enqueue_many``'s argument; ``ConfigError`` when it is not iterable."""
    try:
        return iter(jobs)
    except TypeError:
        raise ConfigError(
            f"enqueue_many takes an iterable of jobs (dicts or tuples), not {type(jobs).__name__}"
        ) from None


def merge_options(defaults: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """The task's default options overridden by the call's (validated) options. Without
    call options this is ``defaults`` itself (backends treat option dicts as read-only)."""
    return {**defaults, **build_options(options)} if options else defaults


def as_args(args: Any) -> list[Any]:
    if type(args) is list:
        return args[:]
    if args is None:
        return []
    if isinstance(args, (list, tuple)):
        return list(args)
    raise ConfigError(f"args must be a list or tuple, not {type(args).__name__}")


def as_kwargs(kwargs: Any) -> dict[str, Any]:
    if kwargs is None:
        return {}
    if type(kwargs) is dict:
        return kwargs.copy()
    if isinstance(kwargs, Mapping):
        return dict(kwargs)
    raise ConfigError(f"kwargs must be a dict, not {type(kwargs).__name__}")
