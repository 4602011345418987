"""``python -m tests.secret_probe URL QUEUE``: does with a queue URL what a program does
(config, queue, open, enqueue, a worker, reads) and prints every text that could show
the URL's password: reprs, ``to_dict()``, and each exception's ``str``, ``repr``,
``args``, chained causes and formatted traceback. The engine logs to stderr (run it
with ``SPIKARD_TASKS_LOG=trace``). Prints ``PROBE DONE`` at the end; an exception that
is not a ``SpikardTasksError`` escapes (a bare exception is a failure too)."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

from spikard_tasks import SpikardTasksError, TaskQueue, TaskQueueConfig

T = TypeVar("T")


def exception_texts(exc: BaseException) -> list[str]:
    """Every text of ``exc`` and of the exceptions chained to it."""
    texts: list[str] = []
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        texts += [str(current), repr(current), repr(current.args)]
        texts += [str(arg) for arg in current.args]
        todo += [current.__cause__, current.__context__]
    texts.append("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    return texts


def attempt(what: str, fn: Callable[[], T]) -> T | None:
    """``fn()``, printing its outcome: ``what: ok`` or ``what: ErrorType`` and its texts."""
    try:
        value = fn()
    except SpikardTasksError as exc:
        print(f"{what}: {type(exc).__name__}")
        for text in exception_texts(exc):
            print(text)
        return None
    print(f"{what}: ok")
    return value


def probe(url: str, queue_name: str) -> None:
    config = attempt("config", lambda: TaskQueueConfig(url=url, queue=queue_name))
    if config is not None:
        print(repr(config), str(config), config.to_dict(), sep="\n")
    queue = attempt("queue", lambda: TaskQueue(url, queue=queue_name, poll_interval=0.01))
    if queue is None:
        return
    print(repr(queue), str(queue), repr(queue.config), queue.config.to_dict(), sep="\n")

    @queue.task(name="echo")
    def echo(x: Any) -> Any:
        return x

    if not attempt("open", lambda: queue.open() or True):
        return
    print(repr(queue.native))
    job = attempt("enqueue", lambda: echo.delay(7))
    if job is None:
        return
    with queue.worker(concurrency=1) as worker:
        print(repr(worker))
        print("result", attempt("result", lambda: job.result(timeout=30)))
    print(attempt("info", job.info))
    print(attempt("counts", queue.counts))


if __name__ == "__main__":
    probe(sys.argv[1], sys.argv[2])
    print("PROBE DONE", flush=True)
