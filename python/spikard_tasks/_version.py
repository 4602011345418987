"""``spikard_tasks.__version__``: the installed distribution's version (its metadata), or
the engine's when the package runs from a source tree that was never installed."""

from __future__ import annotations

from importlib import metadata

from . import _native

__all__ = ["__version__"]


def _version() -> str:
    try:
        return metadata.version("spikard-tasks")
    except metadata.PackageNotFoundError:
        return _native.__version__


__version__: str = _version()
