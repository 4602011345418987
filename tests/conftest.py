"""Shared fixtures: every backend URL the conformance tests run on."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from spikard_tasks import Backoff, TaskQueue

#: Backends every conformance test runs on. A new backend is added here.
BACKENDS = ["sqlite", "memory"]


def _url(backend: str, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.db'}"
    if backend == "memory":
        return "memory://"
    raise AssertionError(backend)


@pytest.fixture(params=BACKENDS)
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh backend URL (one per conformance backend)."""
    return _url(request.param, tmp_path)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite file URL (for tests that cross processes)."""
    return f"sqlite:///{tmp_path / 'jobs.db'}"


@pytest.fixture
def make_queue(backend_url: str) -> Iterator[Callable[..., TaskQueue]]:
    """Builds queues on the current backend with test-friendly timings."""
    made: list[TaskQueue] = []

    def make(**overrides: Any) -> TaskQueue:
        options: dict[str, Any] = {
            "poll_interval": 0.01,
            "backoff": Backoff(initial=0.01, max=0.05, jitter=0.0),
            "queue": f"q-{uuid.uuid4().hex[:8]}",
            "drain_timeout": 5.0,
        }
        options.update(overrides)
        q = TaskQueue(backend_url, **options)
        made.append(q)
        return q

    yield make


@pytest.fixture
def queue(make_queue: Callable[..., TaskQueue]) -> TaskQueue:
    """A fresh queue on the current backend."""
    return make_queue()


def pytest_report_header() -> str:
    return f"spikard-tasks backends: {', '.join(BACKENDS)}; cwd={os.getcwd()}"
