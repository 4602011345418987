"""HTTP: the enqueue app (:mod:`spikard_tasks.asgi` is its public path), its OpenAPI
document, and ``spikard-tasks serve``. The home of the dashboard to come."""

from .app import AuthHook, AuthResult, TasksApp, create_app, job_view

__all__ = ["AuthHook", "AuthResult", "TasksApp", "create_app", "job_view"]
