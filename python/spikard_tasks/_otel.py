"""OpenTelemetry: the enqueuing span's W3C trace context travels with the job, and the
worker runs the handler inside a consumer span whose parent is that context.

Only when ``opentelemetry-api`` is installed (looked up once); without it nothing here
runs beyond one flag check per enqueue. The context is stored as ``traceparent``, then
``;`` and the ``tracestate`` when there is one (the engine keeps it as opaque text).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

__all__ = ["available", "current_trace_context", "traced"]

_AVAILABLE: bool | None = None


def available() -> bool:
    """Whether ``opentelemetry-api`` can be imported (checked once)."""
    global _AVAILABLE
    if _AVAILABLE is None:
        try:
            _AVAILABLE = importlib.util.find_spec("opentelemetry.trace") is not None
        except (ImportError, ValueError):
            _AVAILABLE = False
    return _AVAILABLE


def current_trace_context() -> str | None:
    """The active span's context as stored with a job, or ``None`` (no valid span)."""
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    if not trace.get_current_span().get_span_context().is_valid:
        return None  # the common case without tracing, at the cost of one lookup
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    parent = carrier.get("traceparent")
    if not parent:
        return None
    state = carrier.get("tracestate")
    return f"{parent};{state}" if state else parent


def _parent(trace_context: str | None) -> Any:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    if not trace_context:
        return None
    parent, _, state = trace_context.partition(";")
    carrier = {"traceparent": parent}
    if state:
        carrier["tracestate"] = state
    return TraceContextTextMapPropagator().extract(carrier)


def _span(job: Any) -> Any:
    from opentelemetry import trace

    tracer = trace.get_tracer("spikard_tasks")
    return tracer.start_as_current_span(
        f"{job.task} process",
        context=_parent(getattr(job, "trace_context", None)),
        kind=trace.SpanKind.CONSUMER,
        attributes={
            "messaging.system": "spikard_tasks",
            "messaging.operation": "process",
            "messaging.operation.type": "process",
            "messaging.destination.name": job.queue,
            "messaging.message.id": job.id,
            "spikard_tasks.task": job.task,
            "spikard_tasks.attempt": job.attempt,
        },
        record_exception=True,
        set_status_on_exception=True,
    )


def _tracing_on() -> bool:
    """Whether a tracer provider that records is installed. Without one (only
    ``opentelemetry-api`` installed, or a no-op provider) a span would cost ~15 µs per
    job for nothing, so the handler runs bare."""
    from opentelemetry import trace

    return not isinstance(
        trace.get_tracer_provider(), (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
    )


def traced(fn: Callable[..., Any], is_async: bool, job_of: Callable[[], Any]) -> Callable[..., Any]:
    """``fn`` run inside a consumer span for the current job (``job_of()``), when a
    tracer provider is installed (looked up per job: one may be set after the worker
    started)."""
    if is_async:

        async def run_async(*args: Any, **kwargs: Any) -> Any:
            if not _tracing_on():
                return await fn(*args, **kwargs)
            with _span(job_of()):
                return await fn(*args, **kwargs)

        return run_async

    def run(*args: Any, **kwargs: Any) -> Any:
        if not _tracing_on():
            return fn(*args, **kwargs)
        with _span(job_of()):
            return fn(*args, **kwargs)

    return run
