"""Names and keys (task and queue names, ``unique_key``): text that every backend
stores the same way. A lone surrogate is not Unicode (no backend can store it) and
PostgreSQL text cannot hold a NUL character, so neither is taken anywhere; the checks
run at the call, before anything is written, with the same words as the engine's."""

from __future__ import annotations

from .exceptions import ConfigError

__all__ = ["check_text"]


def check_text(field: str, value: str) -> str:
    """``value`` if it is valid Unicode without a NUL character, else ``ConfigError``
    naming ``field`` (the value itself is not shown)."""
    if "\0" in value:
        raise ConfigError(f"{field} must not contain a NUL character (\\0)")
    if not value.isascii() and not _is_unicode(value):
        raise ConfigError(f"{field} holds a lone surrogate (not valid Unicode)")
    return value


def _is_unicode(value: str) -> bool:
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True
