"""``close()`` / ``aclose()`` and the context managers: a closed queue holds no
connection, stops what it started, and says so when used again."""

from __future__ import annotations

import os
import urllib.parse
import uuid

import pytest

from spikard_tasks import RuntimeShutDown, TaskQueue

from .procs import wait_for

pytestmark = pytest.mark.timeout(180)

QUEUES = 20


def _own_connections(port: int) -> set[str]:
    """Established TCP connections of this process to ``port`` (any address), by socket
    inode (other tests' unclosed queues may close theirs at any time, so the test looks
    for the sockets it opened, not at a count)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found: set[str] = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with open(table) as fh:
            next(fh)
            for line in fh:
                fields = line.split()
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                if remote_port == port and fields[3] == "01" and fields[9] in inodes:
                    found.add(fields[9])
    return found


def _port(url: str) -> int:
    parsed = urllib.parse.urlsplit(url)
    return parsed.port or {"postgres": 5432, "mysql": 3306, "redis": 6379}[parsed.scheme]


@pytest.fixture(params=["postgres", "mysql", "redis"])
def server(request: pytest.FixtureRequest) -> str:
    from .conftest import server_url

    return server_url(str(request.param))


def test_closed_queues_hold_no_connection(server: str) -> None:
    port = _port(server)
    before = _own_connections(port)
    held = []
    for _ in range(QUEUES):
        queue = TaskQueue(server, queue=f"close-{uuid.uuid4().hex[:8]}")

        @queue.task(name="noop")
        def noop() -> int:
            return 1

        job = noop.delay()
        with queue.worker(concurrency=2):
            assert job.result(timeout=30) == 1
        held.append(len(_own_connections(port) - before))
        queue.close()
        queue.close()  # idempotent
        # (A driver may shut a socket down on its own task: allow it a moment.)
        wait_for(lambda: not _own_connections(port) - before, timeout=2, what="no connection")
    assert min(held) > 0, "a queue holds its connections until it is closed"
    print(f"\n[{server.split(':')[0]}] connections held by a queue after its worker: {held[0]}")


def test_context_managers_close_and_stop_their_workers(backend_url: str) -> None:
    with TaskQueue(backend_url, queue=f"close-{uuid.uuid4().hex[:8]}") as queue:

        @queue.task(name="noop")
        def noop() -> int:
            return 1

        worker = queue.worker(concurrency=1).start()
        assert noop.delay().result(timeout=30) == 1
        assert worker.running
    assert not worker.running, "close() stopped the worker it started"
    with pytest.raises(RuntimeShutDown, match="closed"):
        noop.delay()
    with pytest.raises(RuntimeShutDown):
        queue.counts()


async def test_async_with_closes(backend_url: str) -> None:
    async with TaskQueue(backend_url, queue=f"close-{uuid.uuid4().hex[:8]}") as queue:

        @queue.task(name="noop")
        async def noop() -> int:
            return 1

        async with queue.worker(concurrency=1):
            job = await noop.adelay()
            assert await job.wait(timeout=30) == 1
    with pytest.raises(RuntimeShutDown):
        await queue.aenqueue("noop")
    await queue.aclose()  # idempotent


def test_closing_an_unused_queue_opens_nothing(backend_url: str) -> None:
    queue = TaskQueue(backend_url)
    queue.close()
    queue.close()


def test_inprocess_close_drains() -> None:
    ran: list[int] = []
    with TaskQueue("inprocess://") as queue:

        @queue.task(name="work")
        def work(n: int) -> None:
            ran.append(n)

        for n in range(50):
            work.delay(n)
    assert sorted(ran) == list(range(50)), "close() let queued jobs finish"
