"""Running ``python -m spikard_tasks`` as a user does, from any directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .procs import REPO


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a command: ``tests.apps`` importable from any directory."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


def cli(
    *args: str, cwd: Path = REPO, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Runs ``python -m spikard_tasks ARGS`` to the end."""
    return subprocess.run(
        [sys.executable, "-m", "spikard_tasks", *args],
        cwd=cwd,
        env=env or cli_env(),
        capture_output=True,
        text=True,
        timeout=110,
    )


def cli_process(
    *args: str, cwd: Path = REPO, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """Starts ``python -m spikard_tasks ARGS`` (a worker, usually) in the background."""
    return subprocess.Popen(
        [sys.executable, "-m", "spikard_tasks", *args],
        cwd=cwd,
        env=env or cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_until(proc: subprocess.Popen[str], text: str) -> str:
    """Reads the process' stderr until a line holding ``text``; returns what it read."""
    assert proc.stderr is not None
    seen: list[str] = []
    while line := proc.stderr.readline():
        seen.append(line)
        if text in line:
            return "".join(seen)
    raise AssertionError(f"stderr ended before {text!r}:\n" + "".join(seen))
