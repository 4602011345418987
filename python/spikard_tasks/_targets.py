"""Importing ``module:attribute`` targets named on the command line."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from .exceptions import ConfigError

__all__ = ["import_target"]


def import_target(target: str) -> Any:
    """Imports ``module:attr`` (``attr`` may be dotted) with the current directory on
    ``sys.path``; ``ConfigError`` names what is missing."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"expected MODULE:ATTRIBUTE (e.g. myapp.tasks:queue), got {target!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import {module_name!r}: {exc}") from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"{module_name!r} has no attribute {attr!r}") from None
    return obj
