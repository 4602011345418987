"""Time of the HTTP enqueue app's 202 path in process, without a server or a socket:
``POST /tasks/add {"args": [1, 2]}`` driven through the ASGI callable N times,
sequentially, on a ``memory://`` store. Prints microseconds per request (best of 5).

    PYTHONPATH=OLD_TREE python benches/http/asgi_overhead.py   # an old package
    python benches/http/asgi_overhead.py                        # the installed one
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from spikard_tasks import TaskQueue
from spikard_tasks.asgi import create_app

N = int(sys.argv[1]) if len(sys.argv) > 1 else 3000

queue = TaskQueue("memory://")


@queue.task(name="add")
def add(a: int, b: int) -> int:
    return a + b


app = create_app(queue)
SCOPE = {
    "type": "http",
    "asgi": {"version": "3.0", "spec_version": "2.4"},
    "http_version": "1.1",
    "method": "POST",
    "scheme": "http",
    "path": "/tasks/add",
    "raw_path": b"/tasks/add",
    "root_path": "",
    "query_string": b"",
    "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                (b"content-length", b"14")],
    "server": ("127.0.0.1", 8000),
    "client": ("127.0.0.1", 5000),
}  # fmt: skip
BODY = {"type": "http.request", "body": b'{"args":[1,2]}', "more_body": False}


async def one() -> int:
    status = 0

    async def receive() -> dict[str, Any]:
        return BODY

    async def send(message: Any) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(dict(SCOPE), receive, send)
    return status


async def main() -> None:
    assert await one() == 202
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(N):
            await one()
        best = min(best, (time.perf_counter() - start) / N)
    print(f"{best * 1e6:.1f} us/request ({sys.modules['spikard_tasks'].__file__})")


asyncio.run(main())
