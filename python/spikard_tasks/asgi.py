"""HTTP enqueue: an ASGI app whose endpoints enqueue durable jobs and answer 202.

The public path of :mod:`spikard_tasks.http.app` (documented there): ``create_app(queue)``
returns an ASGI application to serve alone (``spikard-tasks serve module:queue``) or to
mount in Starlette, FastAPI or Litestar.
"""

from .http.app import (
    DEFAULT_MAX_BODY_BYTES,
    OPTIONS,
    RESERVED,
    AuthHook,
    AuthResult,
    TasksApp,
    create_app,
    job_view,
)
from .http.health import MetricsApp, metrics_app

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "OPTIONS",
    "RESERVED",
    "AuthHook",
    "AuthResult",
    "MetricsApp",
    "TasksApp",
    "create_app",
    "job_view",
    "metrics_app",
]
