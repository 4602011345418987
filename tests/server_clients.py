"""Command-line clients (psql, mariadb, redis-cli) aimed at one server, named by its URL.

Every helper takes the server's URL (or anything with a ``.url``, such as a disposable
server), so nothing here is tied to the machine's shared servers.
"""

from __future__ import annotations

import os
import subprocess
import urllib.parse
from typing import Protocol


class HasUrl(Protocol):
    @property
    def url(self) -> str: ...


Target = HasUrl | str


def run(
    *cmd: str, env: dict[str, str] | None = None, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, check=False, env=full_env
    )


def _parts(target: Target) -> urllib.parse.SplitResult:
    return urllib.parse.urlsplit(target if isinstance(target, str) else target.url)


def sql(target: Target, statement: str) -> str:
    """Runs ``statement`` with psql / mariadb on the server at a ``postgres://`` or
    ``mysql://`` URL and returns its output (tab-separated rows, no headers)."""
    url = _parts(target)
    host, port = url.hostname or "127.0.0.1", str(url.port or "")
    user, database = urllib.parse.unquote(url.username or ""), url.path.lstrip("/")
    password = urllib.parse.unquote(url.password or "")
    if url.scheme in ("postgres", "postgresql"):
        cmd = ["psql", "-h", host, "-p", port or "5432", "-U", user or "postgres", "-d", database]
        env = {"PGPASSWORD": password, "PGCONNECT_TIMEOUT": "5"}
        out = run(*cmd, "-tAX", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-c", statement, env=env)
    elif url.scheme in ("mysql", "mariadb"):
        # --no-defaults: no option file (the machine's socket, a user's password) applies.
        cmd = ["mariadb", "--no-defaults", "--protocol=tcp", "-h", host, "-P", port or "3306"]
        cmd += ["-u", user or "root", "--connect-timeout=5", "-N", "-B", database]
        out = run(*cmd, "-e", statement, env={"MYSQL_PWD": password})
    else:
        raise ValueError(f"not an SQL server URL: {url.scheme}://")
    if out.returncode != 0:
        raise RuntimeError(f"{url.scheme} CLI on {host}:{port} failed: {out.stderr.strip()}")
    return out.stdout


def redis_cli(target: Target, *args: str) -> str:
    """Runs one ``redis-cli`` command on the Redis at a ``redis://`` URL (its database
    number included) and returns its output."""
    url = _parts(target)
    cmd = ["redis-cli", "-h", url.hostname or "127.0.0.1", "-p", str(url.port or 6379)]
    cmd += ["-n", url.path.lstrip("/") or "0"]
    if url.username:
        cmd += ["--user", urllib.parse.unquote(url.username)]
    env = {"REDISCLI_AUTH": urllib.parse.unquote(url.password)} if url.password else None
    out = run(*cmd, *args, env=env, timeout=30)
    if out.returncode != 0 or out.stdout.startswith("ERR"):
        raise RuntimeError(f"redis-cli {args[0]} failed: {out.stdout}{out.stderr}")
    return out.stdout


def answers(target: Target) -> bool:
    """True if the server at the URL answers a real request (not just on its port)."""
    url = _parts(target)
    try:
        if url.scheme.startswith("redis"):
            # A Redis loading its snapshot answers PING with a LOADING error (exit 0).
            return redis_cli(target, "PING").strip() == "PONG"
        sql(target, "SELECT 1")
    except (RuntimeError, subprocess.TimeoutExpired):
        return False
    return True


def started_at(target: Target) -> str:
    """What identifies a server's current run: PostgreSQL's postmaster start time,
    MariaDB's start in Unix seconds (now minus uptime: may be a second off) and Redis'
    ``run_id`` (new on every start)."""
    url = _parts(target)
    if url.scheme in ("postgres", "postgresql"):
        return sql(target, "SELECT pg_postmaster_start_time()").strip()
    if url.scheme in ("mysql", "mariadb"):
        query = (
            "SELECT UNIX_TIMESTAMP() - VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS "
            "WHERE VARIABLE_NAME = 'UPTIME'"
        )
        return sql(target, query).strip()
    info = redis_cli(target, "INFO", "server")
    return next(line.split(":", 1)[1].strip() for line in info.splitlines() if "run_id:" in line)


def same_run(before: str, after: str) -> bool:
    """True if two :func:`started_at` values name the same run (MariaDB's within 2 s)."""
    if before.isdigit() and after.isdigit():
        return abs(int(before) - int(after)) <= 2
    return before == after
