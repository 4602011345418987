"""The worker process pool: one supervisor process running N worker child processes.

``spikard-tasks worker APP --processes N`` and ``queue.run_worker(processes=N)`` start a
:class:`~spikard_tasks.pool.supervisor.Supervisor`; each child re-runs the command line
(``python -m spikard_tasks.cli.pool_child``) and imports the app the way ``worker`` does, with
its own engine and threads. ``--processes 1`` (the default) runs no supervisor.

- ``supervisor``: starts, watches and restarts the children (exponential backoff), forwards
  SIGTERM/SIGINT for a graceful drain; a second signal stops them at once.
- ``launch``: the children's command lines, and finding ``module:attribute`` of a queue
  object for ``run_worker(processes=N)``.
- ``recycle``: inside a child, stops claiming after ``max_jobs`` jobs or above
  ``max_memory`` MB of RSS (the supervisor replaces it at once), and drains when the
  supervisor is gone.

The children's entry point is ``spikard_tasks.cli.pool_child``; the supervisor side of the
``worker`` command is ``spikard_tasks.cli.worker_pool``.
"""
