"""``spikard-tasks serve`` and ``spikard-tasks dashboard``: the HTTP enqueue app
(:mod:`spikard_tasks.asgi`) and the web dashboard on uvicorn."""

from __future__ import annotations

from .._targets import import_target
from ..exceptions import ConfigError
from ..queue import TaskQueue
from .app import DEFAULT_MAX_BODY_BYTES, TasksApp, create_app
from .health import metrics_app, with_health
from .standalone import dashboard_app

__all__ = ["load_app", "serve", "serve_dashboard"]


def load_app(
    target: str | TaskQueue | TasksApp,
    *,
    prefix: str | None = None,
    max_body_bytes: int | None = None,
) -> TasksApp:
    """The app for ``target``: a ``TaskQueue`` (an app is built for it with ``prefix``
    and ``max_body_bytes``), an app from ``create_app()``, or ``"module:attribute"``
    naming either."""
    obj = import_target(target) if isinstance(target, str) else target
    if isinstance(obj, TaskQueue):
        return create_app(
            obj,
            prefix="/tasks" if prefix is None else prefix,
            max_body_bytes=DEFAULT_MAX_BODY_BYTES if max_body_bytes is None else max_body_bytes,
        )
    if isinstance(obj, TasksApp):
        if prefix is not None or max_body_bytes is not None:
            raise ConfigError(
                "--prefix and --max-body-bytes apply to a TaskQueue target; "
                f"{target} is an app from create_app(), which sets them itself"
            )
        return obj
    raise ConfigError(f"{target} is a {type(obj).__name__}, not a TaskQueue or a TasksApp")


def serve(
    target: str | TaskQueue | TasksApp,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    prefix: str | None = None,
    max_body_bytes: int | None = None,
    root_path: str = "",
    log_level: str = "info",
    access_log: bool = True,
) -> None:
    """Serves the app for ``target`` (see :func:`load_app`) with uvicorn until
    SIGINT/SIGTERM, with ``/metrics``, ``/healthz`` and ``/readyz`` at the root. Needs
    the ``serve`` extra (``pip install 'spikard-tasks[serve]'``); raises ``ConfigError``
    saying so when uvicorn is missing."""
    try:
        import uvicorn
    except ImportError:
        raise ConfigError(
            "serving over HTTP needs uvicorn: pip install 'spikard-tasks[serve]'"
        ) from None
    app = load_app(target, prefix=prefix, max_body_bytes=max_body_bytes)
    # /metrics, /healthz and /readyz next to the enqueue routes.
    served = with_health(app, metrics_app(app.queue))
    uvicorn.run(
        served,
        host=host,
        port=port,
        root_path=root_path,
        log_level=log_level,
        access_log=access_log,
        lifespan="on",
    )


def serve_dashboard(
    queue: TaskQueue,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    read_only: bool = False,
    log_level: str = "info",
    access_log: bool = False,
) -> None:
    """Serves the web dashboard of ``queue`` (:func:`~spikard_tasks.http.dashboard_app`:
    the page at ``/``, its API below ``/api``) with uvicorn until SIGINT/SIGTERM, with
    ``/metrics``, ``/healthz`` and ``/readyz``. Needs the ``serve`` extra."""
    try:
        import uvicorn
    except ImportError:
        raise ConfigError(
            "serving the dashboard needs uvicorn: pip install 'spikard-tasks[serve]'"
        ) from None
    app = dashboard_app(queue, read_only=read_only)
    uvicorn.run(
        with_health(app, metrics_app(queue)),
        host=host,
        port=port,
        log_level=log_level,
        access_log=access_log,
        lifespan="on",
    )
