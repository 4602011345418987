"""One disposable server process: its own port, its own temporary directory, and a pid
that is the only thing ever signalled.

No instance outlives the test process: ``destroy()`` kills it and removes its
directory, an ``atexit`` hook destroys any left over, and on Linux every server gets a
parent-death signal, so even a SIGKILLed pytest takes its servers along.
"""

from __future__ import annotations

import atexit
import ctypes
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .server_clients import answers

#: How long a server may take to start or stop.
TIMEOUT = 60.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (the kernel's pick)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _version(path: str) -> int:
    number = Path(path).parts[-3]  # /usr/lib/postgresql/<number>/bin/<name>
    return int(number) if number.isdigit() else 0


def program(name: str) -> str | None:
    """Where a server program is: PostgreSQL's in the newest ``/usr/lib/postgresql/*/bin``
    (Debian keeps them off the PATH), the others on the PATH or in ``/usr/sbin``."""
    if name in ("initdb", "postgres"):
        found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=_version)
        if found:
            return found[-1]
    on_path = shutil.which(name)
    if on_path:
        return on_path
    sbin = f"/usr/sbin/{name}"
    return sbin if os.access(sbin, os.X_OK) else None


def as_root() -> bool:
    return os.geteuid() == 0


_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the server's process before exec: SIGKILL when the test process dies
    (strictly: when the thread that started it ends; pytest fixtures run in the main
    thread)."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


#: Every server not destroyed yet, for the ``atexit`` safety net.
_LIVE: dict[int, ServerProcess] = {}


@atexit.register
def destroy_all() -> None:
    """Destroys every server this process started and did not destroy yet (not those
    of the parent of a forked child: the child inherits this hook and the list)."""
    for server in list(_LIVE.values()):
        if server.owner == os.getpid():
            server.destroy()


class ServerProcess:
    """A disposable server; subclasses say how to set it up, run it and stop it."""

    backend = ""
    #: The programs this kind needs (see :func:`program`).
    programs: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.owner = os.getpid()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix=f"spikard-tasks-{self.backend}-"))
        self.log = self.root / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        _LIVE[id(self)] = self

    def __repr__(self) -> str:
        return f"<disposable {self.backend} pid={self.pid} port={self.port} dir={self.root}>"

    # -- what a subclass provides ------------------------------------------------------

    @property
    def url(self) -> str:
        raise NotImplementedError

    @property
    def admin_url(self) -> str:
        """A URL that works before :meth:`setup` (a database that initdb made)."""
        return self.url

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _request_stop(self, keep_data: bool) -> None:
        """Asks the server to shut down cleanly (SIGTERM unless overridden)."""
        self._signal(signal.SIGTERM)

    def _spawn_options(self) -> dict[str, Any]:
        """Extra ``subprocess.Popen`` options (the user to run as)."""
        return {}

    def setup(self) -> None:
        """Runs once after the first start (creates the ``test`` database)."""

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        """True while this server's process exists: "down" means that pid is gone."""
        return self.proc is not None and self.proc.poll() is None

    def _signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:  # not reaped: still ours
            self.proc.send_signal(sig)

    def ready(self) -> bool:
        """True if this server runs and answers a real request on its port."""
        return self.running and answers(self.admin_url)

    def start(self) -> None:
        """Starts the server on its data directory and port (no-op while it runs) and
        returns once it answers requests."""
        if not self.running:
            with open(self.log, "ab") as out:
                self.proc = subprocess.Popen(
                    self._command(),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=self.root,
                    # Its own process group: a Ctrl-C in the terminal does not reach it,
                    # and kill() takes the processes it forked along.
                    start_new_session=True,
                    preexec_fn=_die_with_parent,
                    **self._spawn_options(),
                )
        self.wait_ready()

    def wait_ready(self, timeout: float = TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f"{self!r} exited:\n{self.log_tail()}")
            if answers(self.admin_url):
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self!r} did not answer within {timeout}s:\n{self.log_tail()}")

    def stop(self, *, keep_data: bool = True, timeout: float = TIMEOUT) -> None:
        """Shuts the server down cleanly (no-op when it is down); returns once its
        process is gone. The SQL servers always keep their data; a Redis keeps it only
        with ``keep_data``."""
        if not self.running:
            return
        assert self.proc is not None
        self._request_stop(keep_data)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(f"{self!r} did not stop within {timeout}s; killed") from None

    def kill(self) -> None:
        """SIGKILL to the server and the processes it forked (its process group)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=TIMEOUT)

    def destroy(self) -> None:
        """Kills the server and removes its directory; idempotent."""
        try:
            self.kill()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
            _LIVE.pop(id(self), None)

    def log_tail(self, lines: int = 20) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])
