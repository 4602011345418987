"""``python -m tests.apps.traced_worker URL QUEUE SPANS_FILE``: a worker process with the
OpenTelemetry SDK, writing every finished span to SPANS_FILE as one JSON line (for
tests/test_tracing.py). Runs until SIGINT."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from spikard_tasks import TaskQueue, current_job


class FileExporter(SpanExporter):
    def __init__(self, path: str) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with open(self.path, "a") as out:
            for span in spans:
                parent = span.parent
                out.write(
                    json.dumps(
                        {
                            "name": span.name,
                            "kind": span.kind.name,
                            "trace_id": f"{span.context.trace_id:032x}",
                            "span_id": f"{span.context.span_id:016x}",
                            "parent_span_id": f"{parent.span_id:016x}" if parent else None,
                            "attributes": dict(span.attributes or {}),
                            "status": span.status.status_code.name,
                        }
                    )
                    + "\n"
                )
        return SpanExportResult.SUCCESS


provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(FileExporter(sys.argv[3])))
trace.set_tracer_provider(provider)

queue = TaskQueue(sys.argv[1], queue=sys.argv[2], poll_interval=0.01)


@queue.task(name="traced")
def traced(n: int) -> str:
    span = trace.get_current_span()  # the handler runs inside the consumer span
    return f"{span.get_span_context().span_id:016x}:{current_job().id}:{n}"


@queue.task(name="traced-async", max_attempts=1)
async def traced_async() -> None:
    raise RuntimeError("traced failure")


if __name__ == "__main__":
    print("READY", flush=True)
    queue.run_worker(concurrency=2, scheduler=False)
