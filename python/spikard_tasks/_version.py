"""The installed distribution's version (its metadata), or the engine's when the package
runs from a source tree that was never installed."""

from __future__ import annotations

import functools

from . import _native

__all__ = ["installed_version"]


@functools.cache
def installed_version() -> str:
    """``spikard-tasks``' version from its installed metadata (read once)."""
    from importlib import metadata

    try:
        return metadata.version("spikard-tasks")
    except metadata.PackageNotFoundError:
        return _native.__version__
