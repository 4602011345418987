"""The OpenAPI 3.1 document of the HTTP enqueue app (:mod:`spikard_tasks.asgi`).

One path per enqueueable task. The ``args``/``kwargs`` schema of a task comes from its
handler's signature, each parameter's annotation described by pydantic
(:mod:`.schemas`); named schemas (models, dataclasses, ``TypedDict``) go to
``components/schemas``.
"""

from __future__ import annotations

import copy
import functools
import inspect
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..status import JobStatus
from .ops_openapi import OPS_SCHEMAS, ops_paths
from .schemas import annotation_schema, call_schemas

if TYPE_CHECKING:
    from ..task import Task

__all__ = ["RESERVED", "annotation_schema", "build_openapi"]

#: Names under the prefix that are routes of their own, not tasks.
RESERVED = frozenset({"batch", "jobs", "openapi.json", "stats", "queues", "workers", "dashboard"})

Handlers = tuple[Callable[..., Any] | None, ...]


def _signature(fn: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):
        return None


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _ok(description: str, schema: str, **extra: Any) -> dict[str, Any]:
    content = {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}
    return {"description": description, "content": content, **extra}


_REFUSALS = {
    "401": {"$ref": "#/components/responses/Unauthorized"},
    "403": {"$ref": "#/components/responses/Forbidden"},
}
_WRITE_REFUSALS = {
    **_REFUSALS,
    "404": _error("unknown task (not registered or not allowed)"),
    "413": _error("request body over the size limit"),
    "415": _error("Content-Type is not application/json"),
    "422": _error("invalid JSON, wrong body shape, or arguments that do not fit the handler"),
    "503": {"$ref": "#/components/responses/Unavailable"},
}

_LOCATION = {
    "Location": {"description": "URL of the job view", "schema": {"type": "string"}},
}

_COMPONENTS: dict[str, Any] = {
    "schemas": {
        "Error": {
            "type": "object",
            "properties": {"error": {"type": "string"}},
            "required": ["error"],
        },
        "Accepted": {
            "type": "object",
            "properties": {"task_id": {"type": "string"}, "status": {"const": "queued"}},
            "required": ["task_id", "status"],
        },
        "BatchAccepted": {
            "type": "object",
            "properties": {
                "queued": {"type": "integer"},
                "status": {"const": "all_queued"},
                "task_ids": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["queued", "status", "task_ids"],
        },
        "JobView": {
            "type": "object",
            "properties": {
                "task_id": {"type": "string"},
                "task": {"type": "string"},
                "status": {"enum": [s.value for s in JobStatus]},
                "attempts": {"type": "integer"},
                "result": {"description": "the handler's return value once succeeded"},
                "error": {
                    "type": ["string", "null"],
                    "description": "error text of the latest failed attempt "
                    "(null if none failed or the job succeeded)",
                },
                "progress": {
                    "description": "what the handler last reported with "
                    "current_job().progress() (null if nothing)",
                    "oneOf": [
                        {"type": "null"},
                        {
                            "type": "object",
                            "properties": {
                                "fraction": {"type": "number", "minimum": 0, "maximum": 1},
                                "message": {"type": ["string", "null"]},
                                "at": {"type": ["string", "null"], "format": "date-time"},
                            },
                            "required": ["fraction", "message", "at"],
                        },
                    ],
                },
            },
            "required": ["task_id", "task", "status", "attempts", "result", "error", "progress"],
        },
        "Cancelled": {
            "type": "object",
            "properties": {"task_id": {"type": "string"}, "cancelled": {"const": True}},
            "required": ["task_id", "cancelled"],
        },
        "EnqueueOptions": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "priority": {"type": ["integer", "null"], "description": "higher runs first"},
                "delay": {"type": ["number", "null"], "minimum": 0, "description": "seconds"},
                "run_at": {
                    "type": ["string", "null"],
                    "format": "date-time",
                    "description": "ISO-8601 with a timezone; not together with delay",
                },
                "max_attempts": {"type": ["integer", "null"], "minimum": 1},
                "unique_key": {"type": ["string", "null"], "minLength": 1, "maxLength": 512},
                "timeout": {"type": ["number", "null"], "exclusiveMinimum": 0},
            },
        },
    },
    "responses": {
        "Unauthorized": _error("the auth hook refused the request"),
        "Forbidden": _error("the auth hook forbade the request"),
        "Unavailable": {
            **_error("the task backend is unavailable; retry later"),
            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
        },
    },
}


#: Names of the document's own schemas (a handler's named schema gets a suffix).
_TAKEN = frozenset(_COMPONENTS["schemas"]) | frozenset(OPS_SCHEMAS)


def _operation_id(name: str) -> str:
    return "enqueue_" + re.sub(r"\W+", "_", name).strip("_")


def _task_operation(
    name: str, task: Task[Any, Any] | None, arguments: dict[str, Any]
) -> dict[str, Any]:
    fn = task.fn if task is not None else None
    signature = _signature(fn) if fn is not None else None
    doc = inspect.getdoc(fn) if fn is not None else None
    description = f"Enqueues a job of task `{name}`."
    if signature is not None:
        description += f" Handler signature: `{name}{signature}`."
    if doc:
        description += "\n\n" + doc
    return {
        "post": {
            "operationId": _operation_id(name),
            "summary": f"enqueue {name}",
            "description": description,
            "tags": ["tasks"],
            "requestBody": {
                "required": False,
                "content": {"application/json": {"schema": _call_body(arguments)}},
            },
            "responses": {"202": _ok("queued", "Accepted", headers=_LOCATION), **_WRITE_REFUSALS},
        }
    }


def _call_body(arguments: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            **arguments,
            "options": {"$ref": "#/components/schemas/EnqueueOptions"},
        },
    }


@functools.lru_cache(maxsize=16)
def _cached_call_schemas(handlers: Handlers) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    return call_schemas(handlers, _TAKEN)


def _arguments_of(handlers: Handlers) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``call_schemas`` of the handlers (cached per set of handlers), as a copy."""
    try:
        found = _cached_call_schemas(handlers)
    except TypeError:  # an unhashable callable
        found = call_schemas(handlers, _TAKEN)
    return copy.deepcopy(found)


def build_openapi(
    tasks: Mapping[str, Task[Any, Any] | None],
    *,
    prefix: str,
    root_path: str = "",
    version: str = "0",
    read_only: bool = False,
) -> dict[str, Any]:
    """The OpenAPI 3.1 document for the routes of an app with these enqueueable
    ``tasks`` (name → ``Task``, or ``None`` for an allowed name not registered here)
    and its operations routes (``read_only``: their writes are marked refused)."""
    names = sorted(tasks)
    job = {
        "name": "id",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
    }
    not_found = {"404": _error("no job with this id")}
    paths: dict[str, Any] = {
        f"{prefix}/batch": {
            "post": {
                "operationId": "enqueue_batch",
                "summary": "enqueue several jobs at once (all or nothing)",
                "tags": ["jobs"],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["tasks"],
                                "properties": {
                                    "tasks": {
                                        "type": "array",
                                        "minItems": 1,
                                        "items": {
                                            "type": "object",
                                            "additionalProperties": False,
                                            "required": ["task"],
                                            "properties": {
                                                "task": {"enum": names},
                                                "args": {"type": "array"},
                                                "kwargs": {"type": "object"},
                                                "options": {
                                                    "$ref": "#/components/schemas/EnqueueOptions"
                                                },
                                            },
                                        },
                                    }
                                },
                            }
                        }
                    },
                },
                "responses": {"202": _ok("all queued", "BatchAccepted"), **_WRITE_REFUSALS},
            }
        },
        f"{prefix}/jobs/{{id}}": {
            "parameters": [job],
            "get": {
                "operationId": "get_job",
                "summary": "a job's status, attempts, result and error",
                "tags": ["jobs"],
                "parameters": [
                    {
                        "name": "view",
                        "in": "query",
                        "required": False,
                        "description": "full: the job's whole record (JobRecord)",
                        "schema": {"enum": ["full"]},
                    }
                ],
                "responses": {
                    "200": {
                        "description": "the job",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [
                                        {"$ref": "#/components/schemas/JobView"},
                                        {"$ref": "#/components/schemas/JobRecord"},
                                    ]
                                }
                            }
                        },
                    },
                    **_REFUSALS,
                    **not_found,
                },
            },
            "delete": {
                "operationId": "cancel_job",
                "summary": "cancel a job that has not finished",
                "tags": ["jobs"],
                "responses": {
                    "200": _ok("cancelled", "Cancelled"),
                    **_REFUSALS,
                    **not_found,
                    "409": _error("the job already finished"),
                },
            },
        },
        f"{prefix}/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "this document",
                "tags": ["meta"],
                "responses": {"200": {"description": "OpenAPI 3.1 document"}, **_REFUSALS},
            }
        },
    }
    paths.update(ops_paths(prefix, read_only=read_only))
    heads = ("jobs/", "queues/", "dashboard/")
    routed = [n for n in names if n not in RESERVED and not n.startswith(heads)]
    handlers = tuple(task.fn if (task := tasks[n]) is not None else None for n in routed)
    arguments, defs = _arguments_of(handlers)
    for name, call in zip(routed, arguments, strict=True):
        paths[f"{prefix}/{name}"] = _task_operation(name, tasks[name], call)
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "spikard-tasks HTTP enqueue",
            "version": version,
            "description": "Enqueue durable jobs over HTTP (202 Accepted) and follow them. "
            f"The names {', '.join(sorted(RESERVED))} are reserved under {prefix or '/'}.",
        },
        "paths": paths,
        "components": copy.deepcopy(_COMPONENTS),
    }
    doc["components"]["schemas"].update(copy.deepcopy(OPS_SCHEMAS))
    doc["components"]["schemas"].update(defs)
    if root_path:
        doc["servers"] = [{"url": root_path}]
    return doc
