"""How to set up and run a disposable PostgreSQL, MariaDB and Redis.

Each runs on 127.0.0.1 on its own port with everything it writes (data, sockets, pid
file, log) in its own temporary directory, and has an empty ``test`` database.
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
from typing import Any

from .server_clients import run, sql
from .server_process import TIMEOUT, ServerProcess, as_root, program


class Postgres(ServerProcess):
    """PostgreSQL, run as the ``postgres`` OS user when we are root. ``postgres`` and
    unix-socket connections are trusted; other users must give their password."""

    backend = "postgres"
    programs = ("initdb", "postgres", "psql")

    def __init__(self) -> None:
        super().__init__()
        self.data = self.root / "data"
        self.sockets = self.root / "sockets"
        self.sockets.mkdir()
        if as_root():
            owner = pwd.getpwnam("postgres")
            for path in (self.root, self.sockets):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        initdb = [str(program("initdb")), "-D", str(self.data), "-U", "postgres"]
        done = subprocess.run(
            [*initdb, "-E", "UTF8", "--no-locale", "--auth=trust", "--no-sync"],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
            cwd=self.root,
            **self._spawn_options(),
        )
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stdout}{done.stderr}")
        (self.data / "pg_hba.conf").write_text(
            "local all all trust\n"
            "host all postgres 127.0.0.1/32 trust\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
        )

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/test"

    @property
    def admin_url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def _spawn_options(self) -> dict[str, Any]:
        if as_root():  # PostgreSQL refuses to run as root
            return {"user": "postgres", "group": "postgres", "extra_groups": []}
        return {}

    def _command(self) -> list[str]:
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.sockets),
            "shared_buffers": "16MB",
            "max_connections": "100",
            # A throwaway instance: a crash may lose its data.
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
        }
        options = [arg for key, value in settings.items() for arg in ("-c", f"{key}={value}")]
        return [str(program("postgres")), "-D", str(self.data), *options]

    def _request_stop(self, keep_data: bool) -> None:
        self._signal(signal.SIGINT)  # "fast" shutdown: ends sessions, then checkpoints

    def setup(self) -> None:
        sql(self.admin_url, "CREATE DATABASE test")


#: Small and fast settings for a throwaway MariaDB (mariadb-install-db gets them too).
MARIADB_TUNING = (
    "--innodb-buffer-pool-size=16M",
    "--innodb-log-file-size=8M",
    "--innodb-flush-log-at-trx-commit=0",
    "--innodb-doublewrite=0",
    "--skip-name-resolve",
    "--skip-log-bin",
    "--max-connections=200",
)


class MariaDB(ServerProcess):
    """MariaDB with ``root`` and no password. ``--no-defaults`` everywhere: nothing of
    the machine's configuration (pid file, socket, log paths) is read or shared."""

    backend = "mysql"
    programs = ("mariadb-install-db", "mariadbd", "mariadb")

    def __init__(self) -> None:
        super().__init__()
        self.data = self.root / "data"
        done = run(
            str(program("mariadb-install-db")),
            "--no-defaults",
            f"--datadir={self.data}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            *self._as_user(),
            *MARIADB_TUNING,
        )
        if done.returncode != 0:
            raise RuntimeError(f"mariadb-install-db failed: {done.stdout}{done.stderr}")

    @staticmethod
    def _as_user() -> list[str]:
        return ["--user=root"] if as_root() else []  # mariadbd refuses root without it

    @property
    def url(self) -> str:
        return f"mysql://root@127.0.0.1:{self.port}/test"

    @property
    def admin_url(self) -> str:
        return f"mysql://root@127.0.0.1:{self.port}/mysql"

    def _command(self) -> list[str]:
        return [
            str(program("mariadbd")),
            "--no-defaults",
            f"--datadir={self.data}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            f"--socket={self.root / 'mysqld.sock'}",
            f"--pid-file={self.root / 'mysqld.pid'}",
            *self._as_user(),
            *MARIADB_TUNING,
        ]

    def setup(self) -> None:
        sql(self.admin_url, "CREATE DATABASE test")


class Redis(ServerProcess):
    """Redis without persistence: it forgets everything when it stops, unless it is
    stopped with ``keep_data`` (``SHUTDOWN SAVE``: the next start loads the snapshot,
    as a Redis configured with RDB or AOF would)."""

    backend = "redis"
    programs = ("redis-server", "redis-cli")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _command(self) -> list[str]:
        return [
            str(program("redis-server")),
            *("--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.root)),
            *("--save", "", "--appendonly", "no", "--daemonize", "no"),
        ]

    def _request_stop(self, keep_data: bool) -> None:
        if not keep_data:
            (self.root / "dump.rdb").unlink(missing_ok=True)  # of an earlier SHUTDOWN SAVE
        mode = "save" if keep_data else "nosave"
        cli = run("redis-cli", "-h", "127.0.0.1", "-p", str(self.port), "shutdown", mode)
        if cli.returncode != 0 and not keep_data:
            self._signal(signal.SIGTERM)  # no save points configured: SIGTERM saves nothing


KINDS: dict[str, type[ServerProcess]] = {"postgres": Postgres, "mysql": MariaDB, "redis": Redis}
