"""Shared fixtures: every backend URL the conformance tests run on, and disposable
servers for the tests that stop, restart or reconfigure one."""

from __future__ import annotations

import os
import socket
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from spikard_tasks import Backoff, TaskQueue, _native

from . import services

#: Backends every conformance test runs on. A new backend is added here.
BACKENDS = ["sqlite", "memory", "postgres", "mysql", "redis"]

#: Server backends: (environment variable overriding the URL, default URL on this machine).
SERVERS = {
    "postgres": ("SPIKARD_TASKS_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432/test"),
    "mysql": ("SPIKARD_TASKS_TEST_MYSQL", "mysql://root@127.0.0.1:3306/test"),
    "redis": ("SPIKARD_TASKS_TEST_REDIS", "redis://127.0.0.1:6379/0"),
}

REQUIRE_BACKENDS = os.environ.get("SPIKARD_TASKS_REQUIRE_BACKENDS") == "1"


def reachable(url: str) -> bool:
    parsed = urllib.parse.urlsplit(url)
    port = parsed.port or {"postgres": 5432, "mysql": 3306, "redis": 6379}.get(parsed.scheme, 0)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def server_url(backend: str) -> str:
    """The URL of a server backend, or skip (fail with SPIKARD_TASKS_REQUIRE_BACKENDS=1)
    when it is not compiled in or its server does not answer."""
    var, default = SERVERS[backend]
    url = os.environ.get(var, default)
    problem = None
    if backend not in _native.FEATURES:
        problem = f"{backend} backend not compiled into this build"
    elif not reachable(url):
        problem = f"no {backend} server at {_native.redact_url(url)} (set {var})"
    if problem:
        skip_or_fail(problem)
    return url


def skip_or_fail(problem: str) -> NoReturn:
    """Skips the test, or fails it with SPIKARD_TASKS_REQUIRE_BACKENDS=1."""
    if REQUIRE_BACKENDS:
        pytest.fail(f"{problem}, and SPIKARD_TASKS_REQUIRE_BACKENDS=1")
    pytest.skip(problem)


def require_disposable(backend: str) -> None:
    """Skips (or fails, see :func:`skip_or_fail`) unless a disposable ``backend`` server
    can run here and the backend is compiled in."""
    if backend not in _native.FEATURES:
        skip_or_fail(f"{backend} backend not compiled into this build")
    problem = services.missing(backend)
    if problem:
        skip_or_fail(problem)


@pytest.fixture(params=["postgres", "mysql", "redis"])
def disposable_server(request: pytest.FixtureRequest) -> Iterator[services.Server]:
    """A PostgreSQL, MariaDB or Redis of this test's own (a free port, a temporary data
    directory, an empty ``test`` database), for tests that stop, restart or reconfigure
    a server; destroyed afterwards, also when the test fails."""
    require_disposable(request.param)
    with services.disposable(request.param) as server:
        yield server


def _url(backend: str, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.db'}"
    if backend == "memory":
        return "memory://"
    return server_url(backend)


@pytest.fixture(params=BACKENDS)
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh backend URL (one per conformance backend)."""
    return _url(request.param, tmp_path)


@pytest.fixture(params=["sqlite", "postgres", "mysql", "redis"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A backend URL several processes can share (every backend but memory://)."""
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


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-slow",
        action="store_true",
        default=os.environ.get("SPIKARD_TASKS_RUN_SLOW") == "1",
        help="also run the tests marked slow (process kills, outages, cron runs, benchmarks)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow (CI and the README command do)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
