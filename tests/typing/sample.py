"""Calls a type checker must accept, and calls it must refuse (each marked ``# E``).

``tests/test_typing.py`` runs mypy and pyright over this file and checks that exactly
the lines marked ``# E`` are reported. Never executed.
"""

from __future__ import annotations

from spikard_tasks import AsyncTask, Job, Task, TaskQueue

queue = TaskQueue("memory://")


@queue.task
def add(a: int, b: int) -> int:
    return a + b


@queue.task(max_attempts=5, timeout=30.0)
def send_email(to: str, subject: str = "hi") -> dict[str, bool]:
    return {"sent": True}


@queue.task(name="fetch")
async def fetch(url: str) -> bytes:
    return b""


@queue.task(rate_limit="10/s", max_running=2)
def limited(n: int) -> str:
    return str(n)


# -- accepted --------------------------------------------------------------------------
t1: Task[[int, int], int] = add
t2: AsyncTask[[str], bytes] = fetch
j1: Job[int] = add.delay(1, 2)
j2: Job[dict[str, bool]] = send_email.delay("a@example.com", subject="welcome")
j3: Job[bytes] = fetch.delay("https://example.com")
j4: Job[str] = limited.delay(3)
n: int = add(1, 2)
r1: int = add.delay(1, b=2).result(timeout=1)
r2: bytes = fetch.delay("u").result()
job_any = queue.enqueue("fetch", args=["u"])
anything = job_any.result()


async def waits() -> None:
    r3: int = await add.delay(1, 2).wait()
    r4: bytes = await fetch("u")
    job = await add.adelay(1, 2)
    r5: int = job.result()
    print(r3, r4, r5)


# -- refused ---------------------------------------------------------------------------
send_email.delay(123, subject=456)  # E
add.delay("x")  # E
add.delay(1, 2, 3)  # E
add.delay(1)  # E
x: str = add(1, 2)  # E
y: str = add.delay(1, 2).result()  # E
fetch.delay(url=1)  # E
z: bytes = fetch("u")  # E
limited.delay("3")  # E
queue.task(rate_limit=10)  # E
queue.task(max_running="2")  # E


async def waits_wrong() -> None:
    w: str = await add.delay(1, 2).wait()  # E
    print(w)
