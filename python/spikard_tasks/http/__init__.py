"""HTTP: the enqueue app (:mod:`spikard_tasks.asgi` is its public path), its OpenAPI
document, and ``spikard-tasks serve``. Built on Starlette and pydantic, the ``http``
extra (``pip install 'spikard-tasks[http]'``); ``import spikard_tasks`` never imports
this package. The operations routes (stats, job list, retry, purge, pause, workers) and
the web dashboard live here too (``create_app(queue, dashboard=True)`` or
``dashboard_app(queue)``)."""

try:
    import pydantic  # noqa: F401
    import starlette  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess
    missing = exc.name or "starlette or pydantic"
    raise ImportError(
        f"the HTTP enqueue app needs Starlette and pydantic ({missing} is not installed): "
        "pip install 'spikard-tasks[http]'",
        name=exc.name,
    ) from exc

from .app import AuthHook, AuthResult, TasksApp, create_app, job_view
from .standalone import dashboard_app

__all__ = ["AuthHook", "AuthResult", "TasksApp", "create_app", "dashboard_app", "job_view"]
