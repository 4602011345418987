"""Disposable database servers for the tests that stop, restart or reconfigure one.

Such tests never touch the machine's shared servers (the ones ``.ci/services.sh``
starts and the conformance tests use): each gets a PostgreSQL, MariaDB or Redis of its
own (``server_kinds``) on a free port with a temporary data directory, stopped and
killed only by its own pid (``server_process``). The ``disposable_server`` fixture in
``conftest.py`` hands one to a test.
"""

from __future__ import annotations

import pwd
from collections.abc import Iterator
from contextlib import contextmanager

from .server_clients import redis_cli, same_run, sql, started_at
from .server_kinds import KINDS
from .server_process import ServerProcess as Server
from .server_process import as_root, program

__all__ = [
    "Server",
    "create_user",
    "disposable",
    "launch",
    "missing",
    "outage",
    "redis_cli",
    "same_run",
    "sql",
    "started_at",
]


def missing(backend: str) -> str | None:
    """Why a disposable ``backend`` server cannot run on this machine, or None."""
    for name in KINDS[backend].programs:
        if program(name) is None:
            return f"no {name} on this machine for a disposable {backend} server"
    if backend == "postgres" and as_root():
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "no 'postgres' OS user to run a disposable PostgreSQL as (we are root)"
    return None


def launch(backend: str) -> Server:
    """A new, started server with an empty ``test`` database; the caller destroys it."""
    made: Server | None = None
    try:
        made = KINDS[backend]()
        made.start()
        made.setup()
    except BaseException:
        if made is not None:
            made.destroy()
        raise
    return made


@contextmanager
def disposable(backend: str) -> Iterator[Server]:
    """A started server of ``backend`` for the block, destroyed when it ends."""
    server = launch(backend)
    try:
        yield server
    finally:
        server.destroy()


@contextmanager
def outage(server: Server, *, keep_data: bool = True) -> Iterator[None]:
    """``server`` is down inside the block and up again after it, whatever happens.
    With ``keep_data`` (the default) a Redis comes back with its data too."""
    try:
        server.stop(keep_data=keep_data)
        yield
    finally:
        server.start()


def create_user(server: Server, user: str, password: str) -> None:
    """Creates (idempotently) ``user`` with ``password`` on a disposable server (never a
    shared one), allowed everything on its ``test`` database. Redis forgets ACL users
    when it restarts: call again after an outage."""
    if server.backend == "postgres":
        if not sql(server, f"SELECT 1 FROM pg_roles WHERE rolname = '{user}'").strip():
            sql(server, f"CREATE USER {user} PASSWORD '{password}'")
            sql(server, f"GRANT ALL ON DATABASE test TO {user}")
    elif server.backend == "mysql":
        sql(
            server,
            f"CREATE USER IF NOT EXISTS '{user}'@'%' IDENTIFIED BY '{password}'; "
            f"GRANT ALL ON test.* TO '{user}'@'%'",
        )
    else:
        redis_cli(server, "ACL", "SETUSER", user, "on", f">{password}", "~*", "&*", "+@all")
