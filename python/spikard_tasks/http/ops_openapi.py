"""The operations routes (:mod:`.ops_routes`) in the OpenAPI 3.1 document: their paths,
parameters and response schemas."""

from __future__ import annotations

from typing import Any

from ..status import JobStatus
from .ops_params import DEFAULT_LIMIT, MAX_LIMIT

__all__ = ["OPS_SCHEMAS", "ops_paths"]

_STATES = [s.value for s in JobStatus]
_TIME = {"type": ["string", "null"], "format": "date-time"}
_COUNTS = {
    "type": "object",
    "description": "jobs per state (every state present)",
    "properties": {s: {"type": "integer", "minimum": 0} for s in _STATES},
}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(properties)}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_FILTER_PROPERTIES: dict[str, Any] = {
    "status": {
        "description": "one state or a list of them (any when absent)",
        "oneOf": [
            {"enum": _STATES},
            {"type": "array", "items": {"enum": _STATES}},
        ],
    },
    "task": {"type": "string", "description": "exact task name"},
    "queue": {"type": "string"},
    "since": {
        "type": ["string", "number"],
        "description": "enqueued at or after: ISO-8601 (naive = UTC) or epoch seconds",
    },
    "until": {
        "type": ["string", "number"],
        "description": "enqueued before: ISO-8601 (naive = UTC) or epoch seconds",
    },
}

OPS_SCHEMAS: dict[str, Any] = {
    "JobFilter": {
        "type": "object",
        "additionalProperties": False,
        "properties": _FILTER_PROPERTIES,
    },
    "PurgeFilter": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            **_FILTER_PROPERTIES,
            "older_than": {
                "type": "number",
                "minimum": 0,
                "description": "seconds since the job finished (default 0)",
            },
        },
    },
    "QueueStats": _object(
        {
            "queue": {"type": "string"},
            "counts": _COUNTS,
            "oldest_ready_age": {
                "type": ["number", "null"],
                "description": "seconds the oldest ready job has waited",
            },
            "succeeded_last_minute": {"type": "integer"},
            "failed_last_minute": {"type": "integer"},
            "paused": {"type": "boolean"},
        }
    ),
    "LimitInfo": _object(
        {
            "scope": {"enum": ["task", "queue"]},
            "name": {"type": "string", "description": "the task's or the queue's name"},
            "rate_limit": {
                "type": ["string", "null"],
                "description": "starts allowed, spaced evenly: N/s, N/m, N/h or N/d",
            },
            "max_running": {
                "type": ["integer", "null"],
                "minimum": 1,
                "description": "jobs running at once across every worker, at most",
            },
            "running": {"type": "integer", "minimum": 0, "description": "jobs running now"},
            "next_start": {
                **_TIME,
                "description": "when the rate allows the next start (null: now)",
            },
        }
    ),
    "Stats": _object(
        {
            "at": {"type": "string", "format": "date-time"},
            "counts": _COUNTS,
            "queues": {"type": "array", "items": _ref("QueueStats")},
            "limits": {"type": "array", "items": _ref("LimitInfo")},
        }
    ),
    "JobRecord": _object(
        {
            "task_id": {"type": "string"},
            "task": {"type": "string"},
            "queue": {"type": "string"},
            "status": {"enum": _STATES},
            "attempts": {"type": "integer"},
            "max_attempts": {"type": "integer"},
            "priority": {"type": "integer"},
            "args": {"type": "array"},
            "kwargs": {"type": "object"},
            "result": {"description": "the handler's return value once succeeded"},
            "errors": {
                "type": "array",
                "items": _object(
                    {
                        "attempt": {"type": "integer"},
                        "error": {"type": "string"},
                        "traceback": {"type": ["string", "null"]},
                        "at": _TIME,
                    }
                ),
            },
            "progress": {"type": ["object", "null"]},
            "unique_key": {"type": ["string", "null"]},
            "cancel_reason": {"type": ["string", "null"]},
            "run_at": _TIME,
            "enqueued_at": _TIME,
            "started_at": _TIME,
            "finished_at": _TIME,
        }
    ),
    "JobPage": _object(
        {
            "jobs": {"type": "array", "items": _ref("JobRecord")},
            "next_cursor": {
                "type": ["string", "null"],
                "description": "pass as cursor for the next page (null on the last)",
            },
        }
    ),
    "QueueState": _object(
        {"queue": {"type": "string"}, "paused": {"type": "boolean"}, "counts": _COUNTS}
    ),
    "Paused": _object(
        {
            "queue": {"type": "string"},
            "paused": {"type": "boolean"},
            "changed": {"type": "boolean"},
        }
    ),
    "Worker": _object(
        {
            "name": {"type": "string"},
            "host": {"type": "string"},
            "pid": {"type": "integer"},
            "queues": {"type": "array", "items": {"type": "string"}},
            "concurrency": {"type": "integer"},
            "started_at": {"type": "string", "format": "date-time"},
            "last_heartbeat": {"type": "string", "format": "date-time"},
            "jobs_held": {"type": "integer"},
            "version": {"type": "string"},
        }
    ),
}

_READ = {
    "401": {"$ref": "#/components/responses/Unauthorized"},
    "403": {"$ref": "#/components/responses/Forbidden"},
    "503": {"$ref": "#/components/responses/Unavailable"},
}
_ERROR = {"content": {"application/json": {"schema": _ref("Error")}}}


def _write() -> dict[str, Any]:
    forbidden = "the auth hook forbade it, the app is read-only, or it came from another origin"
    return {
        **_READ,
        "403": {"description": forbidden, **_ERROR},
        "415": {"description": "Content-Type is not application/json", **_ERROR},
        "422": {"description": "a body that is not the expected JSON", **_ERROR},
    }


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


def ops_paths(prefix: str, *, read_only: bool) -> dict[str, Any]:
    """The path items of the operations routes under ``prefix``."""
    write = _write()
    suffix = " (refused: this app is read-only)" if read_only else ""
    bad_query = {"400": {"description": "a query parameter is wrong", **_ERROR}}
    job_id = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
    name = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    no_job = {"404": {"description": "no job with this id", **_ERROR}}
    conflict = {"409": {"description": "the job is not in a state that allows it", **_ERROR}}

    def post(op: str, summary: str, ok: dict[str, Any], body: str | None) -> dict[str, Any]:
        item: dict[str, Any] = {
            "operationId": op,
            "summary": summary + suffix,
            "tags": ["operations"],
            "responses": {"200": ok, **write},
        }
        if body is not None:
            item["requestBody"] = {
                "required": False,
                "content": {"application/json": {"schema": _ref(body)}},
            }
        return {"post": item}

    def count(key: str) -> dict[str, Any]:
        return _json(f"how many jobs were {key}", _object({key: {"type": "integer"}}))

    def get(op: str, summary: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {
            "get": {
                "operationId": op,
                "summary": summary,
                "tags": ["operations"],
                "responses": {"200": _json(summary, schema), **_READ},
            }
        }

    jobs = get("list_jobs", "jobs, newest first (keyset pages)", _ref("JobPage"))
    jobs["get"]["parameters"] = [
        _query("status", "states, comma-separated or repeated", {"type": "string"}),
        _query("task", "exact task name", {"type": "string"}),
        _query("queue", "queue name", {"type": "string"}),
        _query("since", "enqueued at or after (ISO-8601 or epoch seconds)", {"type": "string"}),
        _query("until", "enqueued before (ISO-8601 or epoch seconds)", {"type": "string"}),
        _query(
            "limit",
            "jobs per page",
            {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
        ),
        _query("cursor", "next_cursor of the previous page", {"type": "string"}),
    ]
    jobs["get"]["responses"].update(bad_query)
    retried = _object({"task_id": {"type": "string"}, "retried": {"const": True}})
    cancelled = _object({"task_id": {"type": "string"}, "cancelled": {"const": True}})
    one_retry = post(
        "retry_job", "retry a failed or cancelled job", _json("retried", retried), None
    )
    one_cancel = post(
        "cancel_job_post", "cancel a job that has not finished", _json("cancelled", cancelled), None
    )
    for item in (one_retry, one_cancel):
        item["parameters"] = [job_id]
        item["post"]["responses"].update({**no_job, **conflict})
    pause = post(
        "pause_queue", "stop workers claiming from the queue", _json("paused", _ref("Paused")), None
    )
    resume = post(
        "resume_queue",
        "let workers claim from the queue again",
        _json("resumed", _ref("Paused")),
        None,
    )
    for item in (pause, resume):
        item["parameters"] = [name]
    return {
        f"{prefix}/stats": get(
            "stats", "counts per queue and state, throughput, limits", _ref("Stats")
        ),
        f"{prefix}/jobs": jobs,
        f"{prefix}/jobs/retry": post(
            "retry_jobs",
            "retry every failed or cancelled job matching",
            count("retried"),
            "JobFilter",
        ),
        f"{prefix}/jobs/cancel": post(
            "cancel_jobs", "cancel every unfinished job matching", count("cancelled"), "JobFilter"
        ),
        f"{prefix}/jobs/purge": post(
            "purge_jobs",
            "delete finished jobs matching, finished over older_than seconds ago",
            count("purged"),
            "PurgeFilter",
        ),
        f"{prefix}/jobs/{{id}}/retry": one_retry,
        f"{prefix}/jobs/{{id}}/cancel": one_cancel,
        f"{prefix}/queues": get(
            "list_queues",
            "queues with their paused flag and counts",
            _object({"queues": {"type": "array", "items": _ref("QueueState")}}),
        ),
        f"{prefix}/queues/{{name}}/pause": pause,
        f"{prefix}/queues/{{name}}/resume": resume,
        f"{prefix}/workers": get(
            "list_workers",
            "live workers (gone after two missed heartbeats)",
            _object({"workers": {"type": "array", "items": _ref("Worker")}}),
        ),
    }
