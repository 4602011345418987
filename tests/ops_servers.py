"""Real processes for the operations tests: an HTTP server (``spikard-tasks serve`` or
``spikard-tasks dashboard``) and a worker, on one backend URL and queue name, with a
small JSON client for the server."""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .procs import REPO, wait_started

APP = "tests.apps.ops_web"


@dataclasses.dataclass
class Reply:
    """One HTTP answer."""

    status: int
    headers: dict[str, str]
    raw: bytes

    @property
    def body(self) -> Any:
        return json.loads(self.raw) if self.raw else None


@dataclasses.dataclass
class HttpServer:
    """A server process and how to talk to it."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> Reply:
        """One request on a fresh connection; ``body`` goes as JSON."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        sent = dict(headers or {})
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            sent.setdefault("Content-Type", "application/json")
        try:
            conn.request(method, path, body=data, headers=sent)
            resp = conn.getresponse()
            return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        finally:
            conn.close()

    def get(self, path: str, **kwargs: Any) -> Any:
        """``GET path``, which must answer 200; its JSON body."""
        reply = self.request("GET", path, **kwargs)
        assert reply.status == 200, (path, reply.status, reply.raw)
        return reply.body

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        """``POST path`` (body ``{}`` when none), which must answer 200 or 202."""
        reply = self.request("POST", path, {} if body is None else body, **kwargs)
        assert reply.status in (200, 202), (path, reply.status, reply.raw)
        return reply.body

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def environment(url: str, queue: str) -> dict[str, str]:
    """The environment of the test's processes: its backend URL and queue name."""
    return {**os.environ, "SPIKARD_TASKS_URL": url, "SPIKARD_TASKS_QUEUE": queue}


def start_http(url: str, queue: str, log: Path, *args: str) -> HttpServer:
    """Starts ``spikard-tasks ARGS… --port P`` (``serve …`` or ``dashboard …``) and
    waits until it accepts connections."""
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "spikard_tasks.cli", *args, "--port", str(port)],
            cwd=REPO,
            env=environment(url, queue),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = HttpServer(proc, port, log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{server.output()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return server
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"server did not listen:\n{server.output()}")


def stop_http(server: HttpServer) -> None:
    """SIGTERM and wait (kill after 30 s)."""
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()


def start_ops_worker(url: str, queue: str, *extra: str) -> subprocess.Popen[str]:
    """Starts ``spikard-tasks worker tests.apps.ops_web:queue`` and waits until it runs."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "spikard_tasks.cli", "worker", f"{APP}:queue", *extra],
        cwd=REPO,
        env=environment(url, queue),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_started(proc)
    # keep reading its log so that a chatty worker never blocks on a full pipe
    threading.Thread(target=_drain, args=(proc,), daemon=True).start()
    return proc


def _drain(proc: subprocess.Popen[str]) -> None:
    assert proc.stderr is not None and proc.stdout is not None
    for _line in proc.stderr:
        pass


def stop_ops_worker(proc: subprocess.Popen[str]) -> None:
    """SIGTERM and wait for the worker to drain and exit (kill after 30 s)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError("the worker did not stop") from None


def eventually(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """Calls ``check()`` until it returns something true; that value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")
