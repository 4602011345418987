"""Who may do what over HTTP: the ``auth`` hook every route calls, the read-only mode
and the same-origin rule for state-changing operations. Shared by the enqueue app
(:mod:`.app`), its operations routes (:mod:`.ops_routes`) and the dashboard."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

from .wire import HTTPError, Scope, header, reason

__all__ = [
    "WRITE_METHODS",
    "AuthHook",
    "AuthResult",
    "authorize",
    "refuse_cross_origin",
    "refuse_read_only",
]

#: What an auth hook returns: ``True`` lets the request through; ``False`` (or
#: ``None``) answers 401; a 4xx status answers that status. Raising
#: ``PermissionError`` answers 403 with the exception's text.
AuthResult = bool | int | None
#: ``auth(scope)``: sync or async, called with the ASGI scope before every request.
AuthHook = Callable[[Scope], AuthResult | Awaitable[AuthResult]]

#: Methods that change state: refused in read-only mode.
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


async def authorize(auth: AuthHook | None, scope: Scope) -> None:
    """Calls ``auth(scope)`` (when there is a hook) and raises the refusal it asks for
    (:data:`AuthResult`); a verdict of another type is a bug of the hook (``TypeError``)."""
    if auth is None:
        return
    try:
        verdict = auth(scope)
        if inspect.isawaitable(verdict):
            verdict = await verdict
    except PermissionError as exc:
        raise HTTPError(403, str(exc) or "forbidden") from None
    if verdict is True:
        return
    if verdict is False or verdict is None:
        raise HTTPError(401, "authentication required")
    if isinstance(verdict, int) and 400 <= verdict <= 499:
        raise HTTPError(verdict, reason(verdict))
    raise TypeError(f"auth hook returned {verdict!r}; expected True, False or a 4xx status")


def refuse_read_only(read_only: bool, scope: Scope) -> None:
    """403 for a state-changing request (:data:`WRITE_METHODS`) to a read-only app."""
    method = str(scope.get("method", "GET")).upper()
    if read_only and method in WRITE_METHODS:
        raise HTTPError(403, "this app is read-only")


def refuse_cross_origin(scope: Scope) -> None:
    """403 for a request a browser sent from another site: its ``Origin`` header names
    a host other than the request's ``Host``. Operations such as retry or purge take
    no body, so without this a page elsewhere could post them with the user's cookies.
    Clients that send no ``Origin`` (curl, scripts) are not concerned."""
    origin = header(scope, b"origin")
    if origin is None:
        return
    host = header(scope, b"host")
    text = origin.decode("latin-1").strip()
    sent = text.split("://", 1)[1] if "://" in text else text
    if host is None or text == "null" or sent.lower() != host.decode("latin-1").strip().lower():
        raise HTTPError(403, "cross-origin request refused (Origin does not match Host)")
