"""The in-process, non-durable fast path: :class:`BackgroundRuntime`.

A :class:`BackgroundRuntime` runs callables in this process, with no persistence. It owns
an asyncio event loop on a daemon thread, so it can be used from plain synchronous code
and from inside another running event loop alike:

.. code-block:: python

    from spikard_tasks import BackgroundRuntime

    with BackgroundRuntime(max_queue_size=1024, max_concurrent_tasks=128) as rt:
        job = rt.submit(send_email, "a@example.com", subject="hi")
        job.result(timeout=10.0)

``async def`` handlers run on the runtime's loop; plain functions run on a
:class:`concurrent.futures.ThreadPoolExecutor` of ``max_concurrent_tasks`` threads, so
they never block the loop. ``submit`` also takes a registered
:class:`~spikard_tasks.Task` and runs its function. ``TaskQueue("inprocess://")`` runs a
queue's tasks on a runtime of its own (see :mod:`spikard_tasks.inprocess`).

Bound and concurrency
    At most ``max_concurrent_tasks`` handlers run at once (sync and async together). Until
    it finishes, every accepted job holds either one of the ``max_concurrent_tasks``
    execution slots or one of the ``max_queue_size`` places in the queue: a job waiting
    for a slot (queued, or behind a full set of running jobs) always counts against
    ``max_queue_size``, and running jobs never do. So exactly
    ``max_queue_size + max_concurrent_tasks`` jobs can be accepted at once when handlers
    block, and one more :meth:`~BackgroundRuntime.submit` raises
    :class:`~spikard_tasks.exceptions.QueueFull` at once; it never blocks. The check is
    made under a lock at submit time, so it is exact with concurrent submitters. Jobs
    waiting for a ``delay`` or for a retry are unfinished too and count the same way.

Order, delays and timeouts (``submit_with``)
    Queued jobs start in ``priority`` order (higher first), first come first served among
    equal priorities. A job submitted with ``delay`` is ``"scheduled"`` and never starts
    before that many seconds have passed (checked against the wall clock). A job with a
    ``timeout`` fails with ``TimeoutError`` when an attempt runs longer: an ``async def``
    handler is cancelled at the deadline; a sync handler cannot be interrupted, so its
    attempt fails when it returns late (its return value is discarded).

Outcomes
    A handler's return value makes its job ``"succeeded"``. Any exception (including
    ``SystemExit`` and ``KeyboardInterrupt``) makes it ``"failed"``: the failure is logged
    with its traceback on the ``spikard_tasks.runtime`` logger and does not affect other
    jobs. Raising :class:`~spikard_tasks.exceptions.Cancel` (or ``CancelledError`` from
    an async handler) ends the job ``"cancelled"``, and so does :meth:`RuntimeJob.cancel`.
    By default there are no retries: a :class:`~spikard_tasks.exceptions.Retry` raised
    here counts as a failure. A job submitted with a ``retry`` policy
    (:data:`RetryPolicy`) is ``"retrying"`` after a failed attempt for as long as the
    policy says, then runs again; every failed attempt is kept in
    :attr:`RuntimeJob.errors`.

Shutdown
    :meth:`~BackgroundRuntime.shutdown` stops accepting jobs, lets queued and running jobs
    (and scheduled ones whose time comes within the drain timeout) finish for up to the
    drain timeout, then cancels what is left and returns a :class:`DrainReport`. Jobs
    whose time or next attempt falls after the drain deadline end ``"cancelled"`` at once;
    jobs still queued at the deadline end ``"cancelled"`` without starting; running async
    handlers are cancelled; running sync handlers cannot be interrupted, so they are
    reported unfinished and keep their thread until they return (their job then ends
    normally). A runtime still running at interpreter exit is shut down the same way from
    an :mod:`atexit` hook, bounded by its ``drain_timeout``.
"""

from .inprocess.runtime import (
    BackgroundRuntime,
    DrainReport,
    RetryPolicy,
    RuntimeJob,
    RuntimeJobStatus,
    RuntimeStats,
)

__all__ = [
    "BackgroundRuntime",
    "DrainReport",
    "RetryPolicy",
    "RuntimeJob",
    "RuntimeJobStatus",
    "RuntimeStats",
]
