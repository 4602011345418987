"""The disposable servers of the outage tests touch nothing else: stopping one leaves the
machine's shared server and any other server of the same program running (the same
run, the same pid), and none outlives the process that started it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import services
from .conftest import REQUIRE_BACKENDS, SERVERS, reachable, require_disposable, server_url
from .procs import REPO
from .server_clients import answers

pytestmark = pytest.mark.slow  # outages and process kills: run with --run-slow


def _shared_url(backend: str) -> str | None:
    """The shared server's URL, or None when there is none to watch (it is required
    with SPIKARD_TASKS_REQUIRE_BACKENDS=1)."""
    var, default = SERVERS[backend]
    url = os.environ.get(var, default)
    return server_url(backend) if REQUIRE_BACKENDS or reachable(url) else None


def _write_marker(server: services.Server) -> None:
    if server.backend == "redis":
        services.redis_cli(server, "SET", "marker", "42")
    else:
        services.sql(server, "CREATE TABLE marker (n INT); INSERT INTO marker VALUES (42)")


def _read_marker(server: services.Server) -> str:
    if server.backend == "redis":
        return services.redis_cli(server, "GET", "marker").strip()
    return services.sql(server, "SELECT n FROM marker").strip()


def test_outage_stops_only_its_own_server(disposable_server: services.Server) -> None:
    mine = disposable_server
    shared = _shared_url(mine.backend)
    shared_run = services.started_at(shared) if shared else None
    with services.disposable(mine.backend) as bystander:
        bystander_pid, bystander_run = bystander.pid, services.started_at(bystander)
        mine_pid, mine_run = mine.pid, services.started_at(mine)
        _write_marker(mine)
        with services.outage(mine):
            # Down means this pid is gone, although a server of the same program runs.
            assert not mine.running and not answers(mine.url)
            assert bystander.ready(), "the other server of the same program still answers"
            if shared:
                assert answers(shared), "the shared server still answers"
        assert mine.ready() and mine.pid != mine_pid, "the outage restarted this server"
        if mine.backend != "mysql":  # MariaDB's start time has whole seconds only
            assert services.started_at(mine) != mine_run
        assert _read_marker(mine) == "42", "it came back with its data"
        assert bystander.pid == bystander_pid
        assert services.started_at(bystander) == bystander_run, "the other server ran on"
    if shared and shared_run:
        after = services.started_at(shared)
        assert services.same_run(shared_run, after), (
            f"the shared {mine.backend} server was restarted: {shared_run} -> {after}"
        )


@pytest.fixture
def redis() -> Iterator[services.Server]:
    require_disposable("redis")
    with services.disposable("redis") as server:
        yield server


def test_outage_restarts_the_server_when_the_block_fails(redis: services.Server) -> None:
    with pytest.raises(ZeroDivisionError), services.outage(redis):
        assert not redis.running
        _ = 1 / 0
    assert redis.ready()


def test_redis_keeps_its_data_only_when_asked(redis: services.Server) -> None:
    _write_marker(redis)
    with services.outage(redis, keep_data=True):
        pass
    assert _read_marker(redis) == "42"
    with services.outage(redis, keep_data=False):
        pass
    assert _read_marker(redis) == "", "stopped without keep_data, it forgot everything"


def _gone(pid: int) -> bool:
    """True once ``pid`` no longer runs (a zombie waiting for init counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


LAUNCHER = """
import sys, time
from tests import services
server = services.launch(sys.argv[1])
print(server.pid, server.root, flush=True)
if sys.argv[2] == "hang":
    time.sleep(120)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="parent-death signals and /proc are Linux's")
@pytest.mark.parametrize("backend", ["postgres", "mysql", "redis"])
@pytest.mark.parametrize("end", ["exit", "sigkill"])
def test_no_server_outlives_its_process(backend: str, end: str) -> None:
    """A process that ends without destroying its server (atexit), or is SIGKILLed
    (parent-death signal), takes the server along."""
    require_disposable(backend)
    mode = "exit" if end == "exit" else "hang"
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, backend, mode],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert launcher.stdout is not None
    pid_text, root_text = launcher.stdout.readline().split()
    pid, root = int(pid_text), Path(root_text)
    try:
        if end == "sigkill":
            launcher.send_signal(signal.SIGKILL)
        launcher.wait(timeout=60)
        deadline = time.monotonic() + 10
        while not _gone(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _gone(pid), f"the {backend} server (pid {pid}) outlived its process"
        if end == "exit":
            assert not root.exists(), "atexit removed its directory"
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
        shutil.rmtree(root, ignore_errors=True)
