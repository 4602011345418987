"""``dashboard_app(queue)``: the web dashboard as an ASGI app of its own, with the
operations routes it calls (and no enqueue route)."""

from __future__ import annotations

from ..queue import TaskQueue
from .app import TasksApp
from .dashboard import DashboardApp
from .guard import AuthHook

__all__ = ["dashboard_app"]


def dashboard_app(
    queue: TaskQueue, *, read_only: bool = False, auth: AuthHook | None = None
) -> DashboardApp:
    """The dashboard of ``queue`` as an ASGI app of its own: the page at ``/`` and the
    operations routes it calls below ``/api`` (``/api/stats``, ``/api/jobs``, …; no
    enqueue route), each request checked by ``auth`` as in ``create_app``.
    ``read_only`` hides the actions and refuses them (403). Mount it anywhere, e.g.
    ``Mount("/ops", dashboard_app(queue))`` in Starlette."""
    api = TasksApp(queue, tasks=(), prefix="/api", auth=auth, read_only=read_only)
    return DashboardApp(auth=auth, read_only=read_only, api="api/", api_app=api)
