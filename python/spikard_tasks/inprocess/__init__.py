"""``inprocess://``: the fast path of ``TaskQueue`` — the same tasks, run in this process.

``TaskQueue("inprocess://?max_queue_size=1024&max_concurrent_tasks=128&drain_timeout=30")``
runs the queue's ``@queue.task`` handlers on a :class:`~spikard_tasks.BackgroundRuntime`
owned by the queue and started on first use. ``.delay()``, ``.enqueue()``,
``queue.enqueue(name, ...)`` and ``enqueue_many`` hand the job to the runtime at once; no
worker is needed. Nothing is persisted: jobs exist only in this process, and jobs not
finished when it exits are lost (the runtime drains for ``drain_timeout`` at exit).

URL options (all optional; an unknown key or a bad number raises ``ConfigError``):

``max_queue_size`` (1024)
    Unfinished jobs beyond the running ones that the queue accepts; one more enqueue
    raises :class:`~spikard_tasks.QueueFull` at once (never blocks). Scheduled and
    retrying jobs count too.
``max_concurrent_tasks`` (128)
    Handlers running at once (sync ones run on a thread pool of this size, ``async def``
    ones on the runtime's event loop). The worker's ``concurrency`` does not apply here.
``drain_timeout`` (the config's ``drain_timeout``, 30 s)
    How long stopping the worker (or exiting the process) waits for unfinished jobs.
``keep_results`` (10000)
    How many of the latest jobs stay findable by id (``queue.get_job``,
    ``queue.cancel``) after they finished; a job is also findable while any ``Job``
    handle of it is alive, and always while it is unfinished.

What each enqueue option does here (the same checks as on the durable path apply first):

* ``priority`` — honoured: higher runs first among queued jobs.
* ``delay`` / ``run_at`` — honoured with a timer on the runtime's loop: the job is
  ``scheduled`` and never starts before its time; it is lost if the process ends first.
* ``max_attempts`` (and the config's ``max_attempts`` and ``backoff``, and
  ``raise Retry(after=...)``) — honoured within this process: a failed attempt makes the
  job ``retrying`` and it runs again after its backoff. A retry cannot outlive the
  process (there is no retry after a restart).
* ``timeout`` — honoured: an ``async def`` handler is cancelled at the deadline; a sync
  handler cannot be interrupted (on either path), so its attempt fails with
  ``TimeoutError`` when it returns late.
* ``unique_key`` — honoured among the jobs of this process: while a job with that key is
  unfinished, enqueueing the key again returns that job.
* ``queue`` — recorded on the job (``job.info().queue``); every job of an
  ``inprocess://`` queue runs on its one runtime, whatever its queue name.
* ``strict=False`` with a task this process does not register raises ``UnknownTask``: no
  other process could run it.

The operations of ``TaskQueue`` (``stats``, ``list_jobs``, ``retry``, ``cancel_jobs``,
``purge``, ``pause``, ``workers``; see :mod:`spikard_tasks.operations`) work on the jobs
this process keeps (the unfinished ones and the latest ``keep_results``): ``pause(name)``
keeps the runtime from starting that queue name's jobs (they stay ``pending``; running
ones finish; a drain cancels them), ``retry`` runs a failed or cancelled job again under
its id with a fresh attempt budget and its errors kept, ``purge`` forgets finished jobs,
and ``workers()`` lists the queue's running ``InProcessWorker``.

Flow control holds within this process: a task's ``rate_limit`` and ``max_running`` and
``queue.limit(name, ...)`` hold jobs ``pending`` (a token bucket of one token, a cap on
running jobs; no attempt used, never failed for it), and the numbers of
``queue.worker(queues={"emails": 4})`` cap that queue name's running jobs while the worker
runs (see :mod:`spikard_tasks.inprocess.limits`).

Arguments and results follow the durable path's JSON rules: a non-JSON argument raises
``SerializationError`` at the enqueue call, handlers receive JSON-decoded copies (tuples
become lists), and a result that is not JSON fails the job without a retry.
"""

from typing import TYPE_CHECKING, Any

from .runtime import BackgroundRuntime, DrainReport, RuntimeJob, RuntimeStats

if TYPE_CHECKING:
    from .backend import InProcessBackend
    from .rules import backoff_delay, retry_policy
    from .settings import InProcessSettings
    from .worker import InProcessWorker

__all__ = [
    "BackgroundRuntime",
    "DrainReport",
    "InProcessBackend",
    "InProcessSettings",
    "InProcessWorker",
    "RuntimeJob",
    "RuntimeStats",
    "backoff_delay",
    "retry_policy",
]

#: What is imported on first use only: a durable program never loads the fast path's
#: backend (``import spikard_tasks`` stays as light as the runtime needs).
_LAZY = {
    "InProcessBackend": "backend",
    "InProcessSettings": "settings",
    "InProcessWorker": "worker",
    "backoff_delay": "rules",
    "retry_policy": "rules",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
