"""Stopping and starting the local database servers for fault tests.

Every helper is idempotent; :func:`outage` restarts the server even when the body fails,
and :func:`ensure_all_up` brings back any server a crashed test left down. Only the
servers on 127.0.0.1 that ``.ci/services.sh`` manages are touched.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PORTS = {"postgres": 5432, "mysql": 3306, "redis": 6379}


def _pg_version() -> str:
    return sorted(os.listdir("/etc/postgresql"))[0]


def port_open(port: int) -> bool:
    """True if something accepts TCP connections on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _run(*cmd: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def is_ready(backend: str) -> bool:
    """True once the server answers a real request (not just its port)."""
    if not port_open(PORTS[backend]):
        return False
    if backend == "postgres":
        probe = _run("pg_isready", "-h", "127.0.0.1", "-p", "5432", "-d", "test", timeout=10)
    elif backend == "mysql":
        probe = _run("mariadb", "-uroot", "-h127.0.0.1", "-e", "SELECT 1", "test", timeout=10)
    else:
        # A Redis loading its snapshot answers PING with a LOADING error (exit code 0).
        probe = _run("redis-cli", "-h", "127.0.0.1", "ping", timeout=10)
        return probe.returncode == 0 and probe.stdout.strip() == "PONG"
    return probe.returncode == 0


#: The server process of each backend on this machine.
PROCESSES = {"postgres": "postgres", "mysql": "mariadbd", "redis": "redis-server"}


def _running(backend: str) -> bool:
    """True while the server process exists. MariaDB closes its port early in a shutdown
    and may still finish statements on open connections; "down" means the process is gone."""
    return _run("pgrep", "-x", PROCESSES[backend]).returncode == 0


def _wait(backend: str, up: bool, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = is_ready(backend) if up else port_open(PORTS[backend]) or _running(backend)
        if state == up:
            return
        time.sleep(0.1)
    raise RuntimeError(f"{backend} did not come {'up' if up else 'down'} within {timeout}s")


#: Where the local Redis keeps its snapshot (``--dir /var/lib/redis``, default file name).
REDIS_SNAPSHOT = Path("/var/lib/redis/dump.rdb")


def stop(backend: str, *, keep_data: bool = False) -> None:
    """Stops the server (no-op when it is down); returns once its port is closed.

    The local Redis runs without persistence, so it forgets everything when it stops.
    ``keep_data=True`` stops it with ``SHUTDOWN SAVE`` instead: it writes a snapshot
    that the next start loads, as a Redis configured with RDB or AOF would. The SQL
    servers always keep their data.
    """
    if not port_open(PORTS[backend]):
        return
    if backend == "postgres":
        _run("pg_ctlcluster", "--skip-systemctl-redirect", _pg_version(), "main", "stop")
    elif backend == "mysql":
        _run("mariadb-admin", "-uroot", "-h127.0.0.1", "shutdown")
    else:
        _run("redis-cli", "-h", "127.0.0.1", "shutdown", "save" if keep_data else "nosave")
    _wait(backend, up=False)


def start(backend: str) -> None:
    """Starts the server (no-op when it runs); returns once it answers requests."""
    if is_ready(backend):
        return
    if not port_open(PORTS[backend]):
        if backend == "postgres":
            _run("pg_ctlcluster", "--skip-systemctl-redirect", _pg_version(), "main", "start")
        elif backend == "mysql":
            _run(
                "start-stop-daemon",
                "--start",
                "--oknodo",
                "--background",
                "--exec",
                "/usr/sbin/mariadbd",
            )
        else:
            _run(
                "redis-server",
                "--daemonize",
                "yes",
                "--bind",
                "127.0.0.1",
                "-::1",
                "--port",
                "6379",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                "/var/lib/redis",
                "--logfile",
                "/var/log/redis/ci.log",
            )
    _wait(backend, up=True)


def ensure_all_up() -> None:
    """Starts every server that is down (call after tests that stop servers)."""
    for backend in PORTS:
        start(backend)


@contextmanager
def outage(backend: str, *, keep_data: bool = True) -> Iterator[None]:
    """The server is down inside the block and up again after it, whatever happens.

    With ``keep_data`` (the default) Redis comes back with its data (see :func:`stop`);
    the snapshot file is removed once loaded, so later restarts stay empty as before.
    """
    own_snapshot = backend == "redis" and keep_data and not REDIS_SNAPSHOT.exists()
    try:
        stop(backend, keep_data=keep_data)
        yield
    finally:
        try:
            start(backend)
        finally:
            if own_snapshot:
                REDIS_SNAPSHOT.unlink(missing_ok=True)


def sql(backend: str, statement: str) -> str:
    """Runs one statement with the server's CLI (psql / mariadb) on the test database
    and returns its output (tab-separated, no headers)."""
    if backend == "postgres":
        cmd = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-tAX", "-F", "\t"]
        out = _run(*cmd, "-v", "ON_ERROR_STOP=1", "-c", statement)
    elif backend == "mysql":
        out = _run("mariadb", "-uroot", "-h127.0.0.1", "-N", "-B", "test", "-e", statement)
    else:
        raise ValueError(backend)
    if out.returncode != 0:
        raise RuntimeError(f"{backend} CLI failed: {out.stderr.strip()}")
    return out.stdout


def redis_cli(*args: str) -> str:
    """Runs one ``redis-cli`` command on db 0 and returns its output."""
    out = _run("redis-cli", "-h", "127.0.0.1", "-n", "0", *args)
    if out.returncode != 0 or out.stdout.startswith("ERR"):
        raise RuntimeError(f"redis-cli {args[0]} failed: {out.stdout}{out.stderr}")
    return out.stdout
