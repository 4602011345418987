"""Starting a pool: the children's command lines, their environment, ``module:attribute``
of a queue object, and ``run_pool`` behind ``TaskQueue.run_worker(processes=N)``.

A child runs ``python -m spikard_tasks.cli.pool_child --index I --report-fd FD [--parent PID]
[--max-jobs N] [--max-memory MB] worker APP [worker options]``. The backend URL, when the
pool names one, travels in the ``SPIKARD_POOL_CHILD_URL`` variable: a URL may hold a
password, which a command line shows to every user of the machine.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._flow import QueuesArg, format_queues, queue_caps
from .._targets import import_target
from ..exceptions import ConfigError
from .supervisor import Command, Supervisor

__all__ = [
    "URL_VARIABLE",
    "child_command",
    "child_env",
    "find_target",
    "processes_count",
    "run_pool",
]

log = logging.getLogger("spikard_tasks.pool")

#: The environment variable carrying the backend URL to the children.
URL_VARIABLE = "SPIKARD_POOL_CHILD_URL"


def processes_count(value: int | str) -> int:
    """``processes`` as a number: an integer of at least 1, or ``"auto"`` (the CPU count)."""
    if value == "auto":
        return os.cpu_count() or 1
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"processes must be a whole number of at least 1 or 'auto', got {value!r}"
        )
    return value


def child_command(
    worker_args: Sequence[str],
    *,
    name: str | None = None,
    metrics_port: int | None = None,
    max_jobs: int | None = None,
    max_memory_mb: float | None = None,
) -> Command:
    """The argv of child ``index`` writing its report to ``fd``: ``worker_args`` (``worker
    APP ...``, without ``--name`` and ``--metrics-port``) plus ``--name NAME-INDEX`` and
    ``--metrics-port PORT+INDEX`` (a port of 0 stays 0: each child takes a free one)."""
    parent = os.getpid()

    def command(index: int, fd: int) -> list[str]:
        argv = [sys.executable, "-m", "spikard_tasks.cli.pool_child", "--index", str(index)]
        argv += ["--report-fd", str(fd), "--parent", str(parent)]
        if max_jobs is not None:
            argv += ["--max-jobs", str(max_jobs)]
        if max_memory_mb is not None:
            argv += ["--max-memory", f"{max_memory_mb:g}"]
        argv += list(worker_args)
        if name is not None:
            argv += ["--name", f"{name}-{index}"]
        if metrics_port is not None:
            argv += ["--metrics-port", str(metrics_port + index if metrics_port else 0)]
        return argv

    return command


def child_env(url: str | None) -> dict[str, str]:
    """The children's environment: this one, the directory of the script that runs (the
    first entry of ``sys.path``) importable, and the URL if any."""
    env = dict(os.environ)
    env.pop(URL_VARIABLE, None)
    if url is not None:
        env[URL_VARIABLE] = url
    first = sys.path[0] if sys.path else ""
    if first and os.path.isdir(first):
        paths = [first, *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


def _main_name(module: Any) -> str | None:
    """The importable name of ``__main__``: its ``-m`` name, or its script's file name."""
    spec = getattr(module, "__spec__", None)
    if spec is not None and spec.name:
        return str(spec.name)
    path = getattr(module, "__file__", None)
    stem = Path(path).stem if path else ""
    return stem if stem.isidentifier() else None


def find_target(queue: object) -> str | None:
    """``module:attribute`` of a module-level global holding ``queue`` (the module that
    is not ``__main__`` first), or ``None``."""
    main: str | None = None
    for module_name, module in list(sys.modules.items()):
        if module is None or module_name == "__mp_main__":
            continue
        try:
            names = [n for n, v in list(vars(module).items()) if v is queue]
        except TypeError:
            continue
        names = [n for n in names if not n.startswith("_")] or names
        if not names:
            continue
        if module_name != "__main__":
            return f"{module_name}:{names[0]}"
        importable = _main_name(module)
        if importable is not None:
            main = f"{importable}:{names[0]}"
    return main


def _level_name() -> str:
    """The ``--log-level`` of the children: the ``spikard_tasks`` loggers' level here."""
    level = logging.getLogger("spikard_tasks").getEffectiveLevel()
    for name, at_least in (("ERROR", 40), ("WARNING", 30), ("INFO", 20)):
        if level >= at_least:
            return name
    return "DEBUG"


def run_pool(
    queue: Any,
    processes: int,
    *,
    app: str | None = None,
    concurrency: int | None = None,
    queues: QueuesArg | None = None,
    name: str | None = None,
    drain_timeout: float | None = None,
    scheduler: bool = True,
    max_jobs_per_child: int | None = None,
    max_memory_per_child: float | None = None,
) -> dict[str, int]:
    """Runs ``processes`` worker children of ``queue`` (imported by each child from
    ``app``, or from the module-level global found holding it) until SIGINT/SIGTERM;
    returns their summed report (see :class:`~spikard_tasks.pool.supervisor.Supervisor`)."""
    if not queue.is_durable:
        raise ConfigError(
            "processes > 1 needs a durable backend: an inprocess:// queue lives in one process"
        )
    if app is not None:
        import_target(app)  # a wrong target fails here, once, not in every child
    target = app or find_target(queue)
    if target is None:
        raise ConfigError(
            "run_worker(processes=N) imports the queue in each worker process, but no "
            "module-level global holds this one: pass app='module:queue'"
        )
    if queues is not None:
        queue_caps(queues)  # a wrong value fails here, not in every child
    worker_args = ["worker", target]
    if concurrency is not None:
        worker_args += ["--concurrency", str(concurrency)]
    if queues is not None:
        worker_args += ["--queues", format_queues(queues)]
    if drain_timeout is not None:
        worker_args += ["--drain-timeout", repr(float(drain_timeout))]
    if not scheduler:
        worker_args.append("--no-scheduler")
    worker_args += ["--log-level", _level_name()]
    command = child_command(
        worker_args, name=name, max_jobs=max_jobs_per_child, max_memory_mb=max_memory_per_child
    )
    result = Supervisor(command, processes, env=child_env(queue.config.url)).run()
    if result.code == 2:
        raise ConfigError("a worker child exited with a configuration error (see its log)")
    return result.report
