"""``spikard-tasks bench`` (the public path of :mod:`spikard_tasks.cli.bench`, which
documents how each figure is taken)."""

from .cli.bench import (
    FIGURES,
    BenchSizes,
    add_arguments,
    main,
    ratios,
    register_tasks,
    run,
    run_durable,
    run_fast_path,
    wait_succeeded,
)

__all__ = [
    "FIGURES",
    "BenchSizes",
    "add_arguments",
    "main",
    "ratios",
    "register_tasks",
    "run",
    "run_durable",
    "run_fast_path",
    "wait_succeeded",
]
