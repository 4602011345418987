"""HTTP: the enqueue app (:mod:`spikard_tasks.asgi` is its public path), its OpenAPI
document, and ``spikard-tasks serve``. Built on Starlette and pydantic, the ``http``
extra (``pip install 'spikard-tasks[http]'``); ``import spikard_tasks`` never imports
this package. The home of the dashboard to come."""

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

__all__ = ["AuthHook", "AuthResult", "TasksApp", "create_app", "job_view"]
