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
    """403 for a request a browser sent from another site. Operations such as retry or
    purge take no body, so without this a page elsewhere could post them with the
    user's cookies. A browser says where a request comes from: ``Sec-Fetch-Site``
    (refused unless ``same-origin`` or ``none``), or else ``Origin`` (refused unless it
    names the request's ``Host`` or ``X-Forwarded-Host``). Clients that send neither
    (curl, scripts) are not concerned."""
    site = header(scope, b"sec-fetch-site")
    if site is not None:
        if site.strip().lower() not in (b"same-origin", b"none"):
            raise HTTPError(403, "cross-origin request refused (Sec-Fetch-Site)")
        return
    origin = header(scope, b"origin")
    if origin is None:
        return
    text = origin.decode("latin-1").strip().lower()
    sent = text.split("://", 1)[1] if "://" in text else text
    hosts = {
        value.decode("latin-1").split(",", 1)[0].strip().lower()
        for value in (header(scope, b"host"), header(scope, b"x-forwarded-host"))
        if value is not None
    }
    if text == "null" or sent not in hosts:
        raise HTTPError(403, "cross-origin request refused (Origin does not match Host)")
