"""HTTP enqueue (spikard_tasks.asgi), driven over real HTTP against real server processes
(``spikard-tasks serve``) and real worker processes, on a SQLite file."""

from __future__ import annotations

import asyncio
import dataclasses
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from spikard_tasks import TaskQueue
from spikard_tasks.asgi import create_app, job_view
from spikard_tasks.http.calls import Call
from spikard_tasks.http.group_commit import GroupCommit
from spikard_tasks.http.openapi import annotation_schema
from spikard_tasks.http.wire import HTTPError

from .procs import REPO, start_worker, stop

pytestmark = pytest.mark.timeout(120)

APP = "tests.apps.web"
LIMIT = 4096  # --max-body-bytes of the module's server


@dataclasses.dataclass
class Reply:
    status: int
    headers: dict[str, str]
    raw: bytes

    @property
    def body(self) -> Any:
        return json.loads(self.raw) if self.raw else None


@dataclasses.dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    url: str
    log: Path

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | Iterable[bytes] | None = None,
        content_type: str | None = "application/json",
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """One request on a fresh connection; ``body`` is sent as JSON, ``raw`` as is
        (an iterable is sent chunked)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        all_headers = dict(headers or {})
        if content_type is not None:
            all_headers["Content-Type"] = content_type
        data: Any = raw if raw is not None else None
        if body is not None:
            data = json.dumps(body).encode()
        chunked = data is not None and not isinstance(data, bytes)
        try:
            conn.request(method, path, body=data, headers=all_headers, encode_chunked=chunked)
            resp = conn.getresponse()
            return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        finally:
            conn.close()

    def total(self) -> int:
        """Jobs stored in the server's queue (read from the same SQLite file)."""
        return sum(TaskQueue(self.url).counts().values())

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_server(url: str, log: Path, *args: str, target: str = f"{APP}:queue") -> Server:
    """Starts ``spikard-tasks serve TARGET`` and waits until it accepts connections."""
    port = _free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "spikard_tasks.cli",
                "serve",
                target,
                "--port",
                str(port),
                *args,
            ],
            cwd=REPO,
            env={**os.environ, "SPIKARD_TASKS_URL": url},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(proc, port, url, log)
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


def stop_server(server: Server) -> str:
    """SIGTERM, wait, return the log; the server must shut down cleanly."""
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
    try:
        server.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()
        raise AssertionError(f"server did not stop:\n{server.output()}") from None
    # uvicorn drains, then re-raises the signal it caught: exit 0 or "killed by SIGTERM"
    assert server.proc.returncode in (0, -signal.SIGTERM), server.output()
    assert "Finished server process" in server.output()
    return server.output()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server (no worker) shared by the tests that only look at HTTP answers."""
    tmp = tmp_path_factory.mktemp("asgi")
    srv = start_server(
        f"sqlite:///{tmp / 'jobs.db'}", tmp / "server.log", "--max-body-bytes", "4096"
    )
    yield srv
    stop_server(srv)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Starts fresh servers (each on its own SQLite file unless ``url`` is given)."""
    started: list[Server] = []

    def make(*args: str, target: str = f"{APP}:queue", url: str | None = None) -> Server:
        n = len(started)
        srv = start_server(
            url or f"sqlite:///{tmp_path / f'jobs{n}.db'}",
            tmp_path / f"server{n}.log",
            *args,
            target=target,
        )
        started.append(srv)
        return srv

    yield make
    for srv in started:
        if srv.proc.poll() is None:
            srv.proc.send_signal(signal.SIGTERM)
            try:
                srv.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                srv.proc.kill()


def wait_job(srv: Server, job_id: str, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """Polls ``GET /tasks/jobs/{id}`` until ``done(view)``."""
    deadline = time.monotonic() + 30
    view: dict[str, Any] = {}
    while time.monotonic() < deadline:
        reply = srv.request("GET", f"/tasks/jobs/{job_id}")
        assert reply.status == 200, reply.raw
        view = reply.body
        if done(view):
            return view
        time.sleep(0.05)
    raise AssertionError(f"job did not get there: {view}")


def finished(view: dict[str, Any]) -> bool:
    return view["status"] in ("succeeded", "failed", "cancelled")


# -- spikard's background-task fixtures, adapted to these routes ----------------------------


def test_process_fixture_answers_202_with_task_id(server: Server) -> None:
    before = server.total()
    reply = server.request(
        "POST", "/tasks/process", {"kwargs": {"task_id": "task-001", "data": "process this"}}
    )
    assert reply.status == 202, reply.raw
    assert reply.headers["content-type"] == "application/json"
    assert set(reply.body) == {"task_id", "status"}
    assert reply.body["status"] == "queued"
    job_id = reply.body["task_id"]
    assert reply.headers["location"] == f"/tasks/jobs/{job_id}"
    assert server.total() == before + 1
    view = server.request("GET", reply.headers["location"]).body
    assert view == {
        "task_id": job_id,
        "task": "process",
        "status": "pending",
        "attempts": 0,
        "result": None,
        "error": None,
        "progress": None,
    }
    # "both required, no extra fields"
    missing = server.request("POST", "/tasks/process", {"kwargs": {"task_id": "task-001"}})
    extra = server.request(
        "POST", "/tasks/process", {"kwargs": {"task_id": "t", "data": "d", "more": 1}}
    )
    assert (missing.status, extra.status) == (422, 422)
    assert "data" in missing.body["error"] and "more" in extra.body["error"]
    assert server.total() == before + 1


def test_slow_task_fixture_answers_202_json(server: Server) -> None:
    reply = server.request("POST", "/tasks/slow-task", {"kwargs": {"duration_ms": 5000}})
    assert reply.status == 202
    assert reply.headers["content-type"] == "application/json"
    assert reply.body["status"] == "queued"
    assert server.request("DELETE", f"/tasks/jobs/{reply.body['task_id']}").status == 200


def test_cancel_fixture_answers_200_cancelled(server: Server) -> None:
    job_id = server.request(
        "POST",
        "/tasks/process",
        {"kwargs": {"task_id": "task-001", "data": "x"}, "options": {"delay": 60}},
    ).body["task_id"]
    assert server.request("GET", f"/tasks/jobs/{job_id}").body["status"] == "scheduled"
    reply = server.request("DELETE", f"/tasks/jobs/{job_id}")
    assert reply.status == 200
    assert reply.body == {"task_id": job_id, "cancelled": True}
    assert server.request("GET", f"/tasks/jobs/{job_id}").body["status"] == "cancelled"
    again = server.request("DELETE", f"/tasks/jobs/{job_id}")
    assert again.status == 409
    assert again.body["status"] == "cancelled" and again.body["task_id"] == job_id


def test_batch_fixture_queues_all_three(server: Server) -> None:
    before = server.total()
    items = [
        {"task": "process", "kwargs": {"task_id": f"task-00{i}", "data": f"payload {i}"}}
        for i in range(3)
    ]
    reply = server.request("POST", "/tasks/batch", {"tasks": items})
    assert reply.status == 202, reply.raw
    assert {k: reply.body[k] for k in ("queued", "status")} == {
        "queued": 3,
        "status": "all_queued",
    }
    assert len(set(reply.body["task_ids"])) == 3
    assert server.total() == before + 3
    for job_id in reply.body["task_ids"]:
        assert server.request("GET", f"/tasks/jobs/{job_id}").body["task"] == "process"


def test_may_fail_fixture_is_retried_by_a_worker(
    serve: Callable[..., Server], tmp_path: Path
) -> None:
    srv = serve()
    reply = srv.request("POST", "/tasks/may-fail", {"kwargs": {"should_fail": True, "key": "k1"}})
    assert reply.status == 202
    assert reply.body["status"] == "queued"
    worker = start_worker(srv.url, tmp_path / "worker.log", target=f"{APP}:queue")
    try:
        view = wait_job(srv, reply.body["task_id"], finished)
    finally:
        stop(worker)
    assert view["status"] == "succeeded"
    assert view["attempts"] == 2, "the first attempt failed and was retried"
    assert view["result"] == "done"
    assert view["error"] is None


# -- a job posted over HTTP runs in a worker process; its result is read over HTTP -----------


def test_http_job_runs_in_a_worker_process_and_result_is_read_back(
    serve: Callable[..., Server], tmp_path: Path
) -> None:
    srv = serve()
    ok = srv.request("POST", "/tasks/add", {"args": [20], "kwargs": {"b": 22}}).body["task_id"]
    bad = srv.request("POST", "/tasks/always-fails", {"args": ["boom"]}).body["task_id"]
    worker = start_worker(srv.url, tmp_path / "worker.log", target=f"{APP}:queue")
    try:
        done = wait_job(srv, ok, finished)
        failed = wait_job(srv, bad, finished)
    finally:
        stop(worker)
    assert done == {
        "task_id": ok,
        "task": "add",
        "status": "succeeded",
        "attempts": 1,
        "result": 42,
        "error": None,
        "progress": None,
    }
    assert failed["status"] == "failed"
    assert failed["error"].startswith("ValueError") and "boom" in failed["error"]
    late = srv.request("DELETE", f"/tasks/jobs/{ok}")
    assert late.status == 409
    assert late.body["status"] == "succeeded"


# -- refusals: nothing is enqueued -------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "fragment"),
    [
        ("POST", "/tasks/nope", {"args": []}, 404, "unknown task 'nope'"),
        ("POST", "/tasks/", {}, 404, "not found"),
        ("POST", "/elsewhere/add", {}, 404, "not found"),
        ("POST", "/tasks/jobs/x/y", {}, 404, "job routes"),
        ("GET", "/tasks/jobs/no-such-job", None, 404, "no job"),
        ("DELETE", "/tasks/jobs/no-such-job", None, 404, "no job"),
        ("POST", "/tasks/batch", {"tasks": [{"task": "add", "args": [1, 2]}, {"task": "x"}]},
         404, "tasks[1]: unknown task 'x'"),
    ],
)  # fmt: skip
def test_not_found(
    server: Server, method: str, path: str, body: Any, status: int, fragment: str
) -> None:
    before = server.total()
    reply = server.request(method, path, body)
    assert reply.status == status, reply.raw
    assert reply.headers["content-type"] == "application/json"
    assert fragment in reply.body["error"]
    assert server.total() == before


NESTED = b"[" * 100_000 + b"]" * 100_000
BIG_INT = b'{"args": [' + b"9" * 5000 + b", 1]}"


@pytest.mark.parametrize(
    ("path", "raw", "fragment"),
    [
        ("/tasks/add", b"{oops", "invalid JSON"),
        ("/tasks/add", b'{"args": [1, NaN]}', "NaN"),
        ("/tasks/add", b'{"args": [1, 1e999]}', "out of range"),
        ("/tasks/add", b'{"args": [1, 2], "x": 1}', "unknown field"),
        ("/tasks/add", b"[1, 2]", "must be a JSON object"),
        ("/tasks/add", b'{"args": {"a": 1}}', "args must be an array"),
        ("/tasks/add", b'{"kwargs": [1]}', "kwargs must be an object"),
        ("/tasks/add", b'{"args": [1]}', "missing a required argument: 'b'"),
        ("/tasks/add", b'{"args": [1, 2, 3]}', "too many positional arguments"),
        ("/tasks/add", b'{"args": [1, 2], "kwargs": {"c": 2}}', "unexpected keyword argument"),
        ("/tasks/add", b'{"args": [1, 18446744073709551616]}', "64-bit"),
        ("/tasks/add", b'{"args": [1, "\\ud800"]}', "lone surrogate"),
        ("/tasks/add", b'{"args": [1, 2], "options": {"queue": "other"}}', "unknown option"),
        ("/tasks/add", b'{"args": [1, 2], "options": {"priority": "high"}}', "priority"),
        ("/tasks/add", b'{"args": [1, 2], "options": {"max_attempts": 0}}', "max_attempts"),
        ("/tasks/add", b'{"args": [1, 2], "options": {"timeout": -1}}', "timeout"),
        ("/tasks/add", b'{"args": [1, 2], "options": {"unique_key": ""}}', "unique_key"),
        ("/tasks/add", b'{"args": [1, 2], "options": {"run_at": "2030-01-01T00:00:00"}}',
         "timezone"),
        ("/tasks/add", b'{"args": [1, 2], "options": {"run_at": "tomorrow"}}', "ISO-8601"),
        ("/tasks/add", b'{"args": [1, 2], "options": {"run_at": "2030-01-01T00:00:00Z",'
         b' "delay": 5}}', "not both"),
        ("/tasks/batch", b"", "body must be"),
        ("/tasks/batch", b'{"tasks": []}', "non-empty"),
        ("/tasks/batch", b'{"tasks": [{"args": []}]}', "tasks[0].task"),
        ("/tasks/batch", b'{"tasks": [{"task": "add", "args": [1, 2]}, {"task": "add"}]}',
         "tasks[1]: arguments do not fit"),
        ("/tasks/batch", b'{"tasks": [{"task": "add", "args": [1, 2]},'
         b' {"task": "add", "args": [1, 2], "options": {"delay": "soon"}}]}', "tasks[1].options"),
    ],
)  # fmt: skip
def test_unprocessable_bodies_answer_422(
    server: Server, path: str, raw: bytes, fragment: str
) -> None:
    before = server.total()
    reply = server.request("POST", path, raw=raw)
    assert reply.status == 422, reply.raw
    assert reply.headers["content-type"] == "application/json"
    assert fragment in reply.body["error"], reply.body
    assert server.total() == before


def test_deeply_nested_and_huge_numbers_answer_422(serve: Callable[..., Server]) -> None:
    srv = serve()
    for raw in (NESTED, BIG_INT):
        reply = srv.request("POST", "/tasks/add", raw=raw)
        assert reply.status == 422, reply.raw
        assert "invalid JSON" in reply.body["error"]
    assert srv.total() == 0


def test_body_over_the_limit_answers_413(server: Server) -> None:
    before = server.total()
    big = {"kwargs": {"task_id": "t", "data": "x" * LIMIT}}
    by_length = server.request("POST", "/tasks/process", big)
    assert by_length.status == 413
    assert str(LIMIT) in by_length.body["error"]
    streamed = server.request("POST", "/tasks/process", raw=iter([b"x" * 1024] * 5))
    assert streamed.status == 413, "counted while streaming (no Content-Length)"
    batch = server.request("POST", "/tasks/batch", raw=b"[" + b" " * LIMIT + b"]")
    assert batch.status == 413
    fits = server.request("POST", "/tasks/process", raw=iter([b'{"kwargs": ', b'{"task_id": '
                                                               b'"t", "data": "d"}}']))  # fmt: skip
    assert fits.status == 202, fits.raw
    assert server.total() == before + 1


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/tasks/add", "POST"),
        ("PUT", "/tasks/add", "POST"),
        ("GET", "/tasks/batch", "POST"),
        ("POST", "/tasks/jobs", "GET, HEAD"),  # the job list
        ("POST", "/tasks/jobs/some-id", "GET, HEAD, DELETE"),
        ("PATCH", "/tasks/jobs/some-id", "GET, HEAD, DELETE"),
        ("DELETE", "/tasks/openapi.json", "GET, HEAD"),
    ],
)
def test_wrong_method_answers_405(server: Server, method: str, path: str, allow: str) -> None:
    before = server.total()
    reply = server.request(method, path, {"args": [1, 2]})
    assert reply.status == 405
    assert reply.headers["allow"] == allow
    assert reply.headers["content-type"] == "application/json"
    assert server.total() == before


def test_non_json_content_type_answers_415(server: Server) -> None:
    before = server.total()
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        reply = server.request("POST", "/tasks/add", {"args": [1, 2]}, content_type=ctype)
        assert reply.status == 415, ctype
    assert server.total() == before
    ok = server.request("POST", "/tasks/add", {"args": [1, 2]}, content_type=None)
    assert ok.status == 202, "no Content-Type is read as JSON"
    vendor = "application/vnd.api+json; charset=utf-8"
    assert server.request("POST", "/tasks/add", {"args": [1, 2]}, content_type=vendor).status == 202
    assert server.request("POST", "/tasks/noop", raw=b"").status == 202, "empty body = no args"


def test_auth_hook_guards_every_route(serve: Callable[..., Server]) -> None:
    srv = serve(target=f"{APP}:guarded")
    good = {"Authorization": "Bearer good"}
    reader = {"Authorization": "Bearer reader"}
    cases: list[tuple[str, str, dict[str, str], int]] = [
        ("POST", "/guarded/add", {}, 401),
        ("POST", "/guarded/add", {"Authorization": "Bearer wrong"}, 401),
        ("POST", "/guarded/add", {"Authorization": "Bearer banned"}, 403),
        ("POST", "/guarded/add", reader, 403),
        ("POST", "/guarded/batch", reader, 403),
        ("GET", "/guarded/openapi.json", {}, 401),
        ("GET", "/guarded/jobs/x", {}, 401),
        ("DELETE", "/guarded/jobs/x", reader, 403),
        ("POST", "/guarded/noop", good, 404),  # registered, but not on the allow-list
    ]
    for method, path, headers, status in cases:
        reply = srv.request(method, path, {"args": [1, 2]}, headers=headers)
        assert reply.status == status, (method, path, headers, reply.raw)
        assert reply.headers["content-type"] == "application/json"
        assert reply.body["error"]
    forbidden = srv.request("POST", "/guarded/add", {"args": [1, 2]}, headers=reader)
    assert forbidden.body["error"] == "this token may only read"
    assert srv.total() == 0, "nothing enqueued by a refused request"

    posted = srv.request("POST", "/guarded/add", {"args": [1, 2]}, headers=good)
    assert posted.status == 202
    assert posted.headers["location"].startswith("/guarded/jobs/")
    assert srv.request("GET", posted.headers["location"], headers=reader).status == 200
    doc = srv.request("GET", "/guarded/openapi.json", headers=reader).body
    assert {"/guarded/add", "/guarded/process"} <= set(doc["paths"])
    assert "/guarded/noop" not in doc["paths"]
    assert srv.total() == 1


def test_backend_failure_answers_503_until_it_recovers(
    serve: Callable[..., Server], tmp_path: Path
) -> None:
    missing = tmp_path / "not-yet"
    srv = serve(url=f"sqlite:///{missing / 'jobs.db'}")
    down = srv.request("POST", "/tasks/add", {"args": [1, 2]})
    assert down.status == 503, down.raw
    assert down.headers["retry-after"] == "1"
    assert "unavailable" in down.body["error"]
    assert "not-yet" not in down.body["error"], "no internals in the answer"
    assert srv.request("GET", "/tasks/jobs/x").status == 503
    missing.mkdir()
    up = srv.request("POST", "/tasks/add", {"args": [1, 2]})
    assert up.status == 202
    assert srv.total() == 1
    assert "unavailable at startup" in stop_server(srv)


def test_lifespan_startup_and_shutdown_complete(serve: Callable[..., Server]) -> None:
    srv = serve()
    assert srv.request("GET", "/tasks/openapi.json").status == 200
    log = stop_server(srv)
    assert "Waiting for application startup." in log
    assert "Application startup complete." in log
    assert "Application shutdown complete." in log
    assert "lifespan" not in log.lower().replace("lifespan=", ""), log


# -- more behaviour --------------------------------------------------------------------------


def test_options_unique_key_run_at_and_head(server: Server) -> None:
    body = {"args": [1, 2], "options": {"unique_key": "once-only", "delay": 30, "priority": 7}}
    first = server.request("POST", "/tasks/add", body)
    second = server.request("POST", "/tasks/add", body)
    assert first.status == second.status == 202
    assert first.body["task_id"] == second.body["task_id"], "unique_key returns the same job"
    later = server.request(
        "POST", "/tasks/add", {"args": [1, 2], "options": {"run_at": "2099-01-01T00:00:00+02:00"}}
    )
    job_id = later.body["task_id"]
    assert server.request("GET", f"/tasks/jobs/{job_id}").body["status"] == "scheduled"
    head = server.request("HEAD", f"/tasks/jobs/{job_id}")
    assert head.status == 200 and head.raw == b""
    assert head.headers["content-type"] == "application/json"
    assert server.request("DELETE", f"/tasks/jobs/{job_id}").status == 200
    assert server.request("DELETE", f"/tasks/jobs/{first.body['task_id']}").status == 200


def test_openapi_document_describes_the_tasks(server: Server) -> None:
    reply = server.request("GET", "/tasks/openapi.json")
    assert reply.status == 200
    doc = reply.body
    assert doc["openapi"].startswith("3.1")
    paths = doc["paths"]
    for name in ("add", "process", "slow-task", "may-fail", "always-fails", "noop", "tagged"):
        assert f"/tasks/{name}" in paths
    assert {"/tasks/batch", "/tasks/jobs/{id}", "/tasks/openapi.json"} <= set(paths)
    schema = paths["/tasks/add"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    args = schema["properties"]["args"]
    assert [p["type"] for p in args["prefixItems"]] == ["integer", "integer"]
    assert args["items"] is False
    assert schema["properties"]["kwargs"]["properties"] == {
        "a": {"type": "integer"},
        "b": {"type": "integer"},
    }
    assert paths["/tasks/add"]["post"]["responses"]["202"]["headers"]["Location"]
    tagged = paths["/tasks/tagged"]["post"]["requestBody"]["content"]["application/json"]
    kw = tagged["schema"]["properties"]["kwargs"]
    assert kw["properties"]["mode"] == {
        "enum": ["fast", "slow"],
        "type": "string",
        "default": "fast",
    }
    assert kw["properties"]["extra"] == {"default": None}, "Any is permissive"
    assert kw["properties"]["item"] == {
        "type": "object",
        "additionalProperties": {"type": "integer"},
    }
    assert kw["additionalProperties"] == {"anyOf": [{"type": "number"}, {"type": "null"}]}
    assert tagged["schema"]["properties"]["args"]["items"] == {"type": "string"}
    refs = doc["components"]["schemas"]
    assert {"Error", "Accepted", "BatchAccepted", "JobView", "EnqueueOptions"} <= set(refs)
    assert "servers" not in doc


def test_root_path_from_a_proxy(serve: Callable[..., Server]) -> None:
    srv = serve("--root-path", "/api", "--prefix", "/q")
    reply = srv.request("POST", "/q/add", {"args": [1, 2]})
    assert reply.status == 202, reply.raw
    assert reply.headers["location"] == f"/api/q/jobs/{reply.body['task_id']}"
    doc = srv.request("GET", "/q/openapi.json").body
    assert doc["servers"] == [{"url": "/api"}]
    assert "/q/add" in doc["paths"]


STARLETTE_APP = textwrap.dedent(
    """
    import sys, uvicorn
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route
    from spikard_tasks.asgi import create_app
    from tests.apps.web import queue

    async def home(request):
        return PlainTextResponse("home")

    app = Starlette(routes=[Route("/", home), Mount("/api", app=create_app(queue))])
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
    """
)


def test_mounts_in_starlette(tmp_path: Path) -> None:
    pytest.importorskip("starlette")
    port = _free_port()
    log = tmp_path / "starlette.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", STARLETTE_APP, str(port)],
            cwd=REPO,
            env={**os.environ, "SPIKARD_TASKS_URL": f"sqlite:///{tmp_path / 'jobs.db'}"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    srv = Server(proc, port, f"sqlite:///{tmp_path / 'jobs.db'}", log)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, srv.output()
                time.sleep(0.05)
        reply = srv.request("POST", "/api/tasks/add", {"args": [2, 3]})
        assert reply.status == 202, reply.raw
        location = reply.headers["location"]
        assert location == f"/api/tasks/jobs/{reply.body['task_id']}"
        assert srv.request("GET", location).body["status"] == "pending"
        assert srv.request("GET", "/api/tasks/openapi.json").body["servers"] == [{"url": "/api"}]
        assert srv.request("POST", "/api/tasks/nope", {}).status == 404
        assert srv.total() == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_serve_without_uvicorn_is_a_clear_error() -> None:
    code = (
        "import sys; sys.modules['uvicorn'] = None\n"
        "from spikard_tasks.cli import main\n"
        "sys.exit(main(['serve', 'tests.apps.web:queue']))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stderr
    assert "pip install 'spikard-tasks[serve]'" in result.stderr


def test_serve_refuses_a_target_that_is_not_a_queue_or_app() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "spikard_tasks.cli", "serve", "tests.apps.web:add"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "not a TaskQueue or a TasksApp" in result.stderr
    result = subprocess.run(
        [sys.executable, "-m", "spikard_tasks.cli", "serve", f"{APP}:guarded", "--prefix", "/x"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--prefix" in result.stderr


def test_concurrent_posts_share_commits_but_are_refused_alone(server: Server) -> None:
    before = server.total()
    bodies = [{"args": [i, 1 if i % 5 else 2**64]} for i in range(60)]
    with ThreadPoolExecutor(20) as pool:
        replies = list(pool.map(lambda b: server.request("POST", "/tasks/add", b), bodies))
    assert [r.status for r in replies] == [202 if i % 5 else 422 for i in range(60)]
    assert all("64-bit" in r.body["error"] for r in replies if r.status == 422)
    queue = TaskQueue(server.url)
    for i, reply in enumerate(replies):
        if reply.status == 202:
            job = queue.get_job(reply.body["task_id"])
            assert job is not None and job.info().args == [i, 1], "each answer names its own job"
    assert server.total() == before + 48


# -- in process: the ASGI protocol itself ----------------------------------------------------


def _drive(app: Any, scope: dict[str, Any], messages: list[dict[str, Any]]) -> list[Any]:
    sent: list[Any] = []
    inbox = list(messages)

    async def receive() -> dict[str, Any]:
        return inbox.pop(0) if inbox else {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def test_lifespan_protocol_and_sync_auth_hook_in_process() -> None:
    queue = TaskQueue("memory://")

    @queue.task(name="t")
    def t(x: int) -> int:
        return x

    calls: list[str] = []

    def hook(scope: Any) -> bool:
        calls.append(scope["path"])
        return dict(scope["headers"]).get(b"x-key") == b"k"

    app = create_app(queue, auth=hook, prefix="/")
    assert app.prefix == ""
    life = _drive(app, {"type": "lifespan"}, [{"type": "lifespan.startup"},
                                              {"type": "lifespan.shutdown"}])  # fmt: skip
    assert [m["type"] for m in life] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]

    def post(headers: list[tuple[bytes, bytes]]) -> list[Any]:
        scope = {"type": "http", "method": "POST", "path": "/t", "headers": headers}
        return _drive(app, scope, [{"type": "http.request", "body": b'{"args": [5]}'}])

    refused = post([])
    assert refused[0]["status"] == 401
    accepted = post([(b"x-key", b"k")])
    assert accepted[0]["status"] == 202
    assert json.loads(accepted[1]["body"])["status"] == "queued"
    assert calls == ["/t", "/t"]
    assert sum(queue.counts().values()) == 1
    ws = _drive(app, {"type": "websocket", "path": "/t", "headers": []}, [])
    assert ws == [{"type": "websocket.close", "code": 1003}]
    job_id = json.loads(accepted[1]["body"])["task_id"]
    info = queue.get_job(job_id)
    assert info is not None
    assert job_view(info.info())["task"] == "t"


@pytest.mark.parametrize(
    ("path", "root_path", "raw_path"),
    [
        ("/api/tasks/t", "/api", b"/api/tasks/t"),  # Starlette/FastAPI Mount, uvicorn --root-path
        ("/tasks/t/", "", b"/api/tasks/t"),  # Litestar mount: path stripped, slash added
        ("/tasks/t", "", b"/api/tasks/t?x=1"),
    ],
)
def test_mounted_scopes_in_process(path: str, root_path: str, raw_path: bytes) -> None:
    queue = TaskQueue("memory://")

    @queue.task(name="t")
    def t(x: int) -> int:
        return x

    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "root_path": root_path,
        "raw_path": raw_path,
        "headers": [(b"content-type", b"application/json")],
    }
    sent = _drive(create_app(queue), scope, [{"type": "http.request", "body": b'{"args": [1]}'}])
    assert sent[0]["status"] == 202, sent
    job_id = json.loads(sent[1]["body"])["task_id"]
    assert (b"location", f"/api/tasks/jobs/{job_id}".encode()) in sent[0]["headers"]


def test_every_route_in_process_with_a_trailing_slash_and_braces_in_the_prefix() -> None:
    queue = TaskQueue("memory://")

    @queue.task(name="t")
    def t(x: int) -> int:
        return x

    seen: list[str] = []

    def hook(scope: Any) -> bool:
        seen.append(scope["path"])
        return True

    app = create_app(queue, prefix="/a{b/c}", auth=hook)

    def call(method: str, path: str, body: bytes = b"") -> tuple[int, Any]:
        scope = {"type": "http", "method": method, "path": path, "headers": []}
        sent = _drive(app, scope, [{"type": "http.request", "body": body}])
        payload = json.loads(sent[1]["body"]) if sent[1]["body"] else None
        return sent[0]["status"], payload

    status, accepted = call("POST", "/a{b/c}/t/", b'{"args": [1]}')
    assert status == 202, accepted
    assert seen == ["/a{b/c}/t/"], "the hook sees the path as sent"
    job = accepted["task_id"]
    assert call("GET", f"/a{{b/c}}/jobs/{job}/") == (200, job_view(queue.get_job(job).info()))
    assert call("GET", "/a{b/c}/openapi.json")[1]["paths"]["/a{b/c}/t"]
    assert call("HEAD", "/a{b/c}/openapi.json") == (200, None)
    assert call("POST", "/a{b/c}/batch", b'{"tasks": [{"task": "t", "args": [2]}]}')[0] == 202
    assert call("PUT", "/a{b/c}/t") == (405, {"error": "method PUT not allowed here"})
    assert call("POST", "/a{b/c}/jobs/x/y")[0] == 404
    assert call("POST", "/a{b/c}/nope") == (404, {"error": "unknown task 'nope'"})
    assert call("POST", "/a{b/c}") == (404, {"error": "not found"})
    assert call("DELETE", f"/a{{b/c}}/jobs/{job}") == (200, {"task_id": job, "cancelled": True})
    assert sum(queue.counts().values()) == 2


def test_group_commit_in_process() -> None:
    groups: list[list[int]] = []

    def write(calls: list[Call]) -> list[str]:
        groups.append([c.args[0] for c in calls])
        if any(c.args[0] < 0 for c in calls):
            raise HTTPError(422, "negative")
        return [f"id{c.args[0]}" for c in calls]

    async def run(fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)

    commit = GroupCommit(write, run)

    def call(n: int) -> Call:
        return Call("t", None, [n], {}, {})

    async def main() -> list[Any]:
        first = await commit.submit(call(0))
        rest = await asyncio.gather(
            *(commit.submit(call(n)) for n in (1, 2, -3, 4)), return_exceptions=True
        )
        return [first, *rest]

    results = asyncio.run(main())
    assert results[:3] == ["id0", "id1", "id2"] and results[4] == "id4"
    assert isinstance(results[3], HTTPError) and results[3].status == 422
    assert groups == [[0], [1, 2, -3, 4], [1], [2], [-3], [4]], "grouped, then one by one"


def test_create_app_validates_its_arguments() -> None:
    queue = TaskQueue("memory://")
    other = TaskQueue("memory://")

    @other.task(name="elsewhere")
    def elsewhere() -> None: ...

    for kwargs in (
        {"prefix": "tasks"},
        {"prefix": "/{tenant}"},
        {"max_body_bytes": 0},
        {"max_body_bytes": True},
        {"auth": "nope"},
        {"tasks": [elsewhere]},
        {"tasks": [""]},
    ):
        with pytest.raises(ValueError):
            create_app(queue, **kwargs)


class Opaque:
    """A type pydantic cannot describe."""


def test_annotation_schema() -> None:
    assert annotation_schema(int) == {"type": "integer"}
    assert annotation_schema(list[str]) == {"type": "array", "items": {"type": "string"}}
    assert annotation_schema(tuple[int, str]) == {
        "type": "array",
        "prefixItems": [{"type": "integer"}, {"type": "string"}],
        "minItems": 2,
        "maxItems": 2,
    }
    assert annotation_schema(str | None) == {"anyOf": [{"type": "string"}, {"type": "null"}]}
    # pydantic describes what it knows (Path is a string), and nothing it does not know
    assert annotation_schema(Path) == {"type": "string", "format": "path"}
    assert annotation_schema(int | Path) == {
        "anyOf": [{"type": "integer"}, {"type": "string", "format": "path"}]
    }
    assert annotation_schema(Opaque) == {}
    assert annotation_schema(int | Opaque) == {}
    assert annotation_schema(Callable[[int], int]) == {}


# -- fuzz: random requests never get a 5xx ---------------------------------------------------

_NAMES = ["add", "process", "slow-task", "may-fail", "noop", "tagged", "always-fails", "nope"]
_leaf = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
_json = st.recursive(
    _leaf,
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=12,
)
_option_value = _json | st.sampled_from(
    ["2030-01-01T00:00:00Z", "2030-01-01T00:00:00", "2030-02-30T00:00:00+01:00", "x"]
)
_call = st.fixed_dictionaries(
    {},
    optional={
        "args": st.lists(_json, max_size=4) | _json,
        "kwargs": st.dictionaries(
            st.sampled_from(["a", "b", "task_id", "data", "duration_ms", "item", "mode"])
            | st.text(max_size=6),
            _json,
            max_size=4,
        )
        | _json,
        "options": st.dictionaries(
            st.sampled_from(
                ["priority", "delay", "run_at", "max_attempts", "unique_key", "timeout", "queue"]
            ),
            _option_value,
            max_size=3,
        )
        | _json,
        "task": st.sampled_from(_NAMES) | _json,
    },
)
_bodies = st.one_of(
    _call.map(lambda c: json.dumps(c).encode()),
    st.fixed_dictionaries({"tasks": st.lists(_call, max_size=4) | _json}).map(
        lambda c: json.dumps(c).encode()
    ),
    _json.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=80),
    st.sampled_from([b"", b'"\\ud800"', b'{"args": [1e999]}', b"[" * 3000, b"NaN"]),
)
_segment = st.text(max_size=12).map(lambda s: urllib.parse.quote(s, safe=""))
_paths = st.one_of(
    st.sampled_from([*_NAMES, "batch", "openapi.json", "jobs", "jobs/"]).map(
        lambda n: f"/tasks/{n}"
    ),
    _segment.map(lambda s: f"/tasks/jobs/{s}"),
    _segment.map(lambda s: f"/tasks/{s}"),
    st.lists(_segment, max_size=3).map(lambda parts: "/" + "/".join(parts)),
)


_random_request = st.tuples(
    st.just("POST") | st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]),
    _paths,
    _bodies,
    st.sampled_from([None, "application/json", "text/plain"]),
)
_int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_valid_request = st.one_of(
    st.tuples(_int64, _int64).map(
        lambda ab: ("POST", "/tasks/add", json.dumps({"args": list(ab)}).encode(), None)
    ),
    st.lists(
        st.tuples(_int64, _int64).map(lambda ab: {"task": "add", "args": list(ab)}),
        min_size=1,
        max_size=3,
    ).map(lambda items: ("POST", "/tasks/batch", json.dumps({"tasks": items}).encode(), None)),
)


def test_fuzz_random_requests_never_get_a_5xx(serve: Callable[..., Server]) -> None:
    srv = serve("--max-body-bytes", "2048")
    seen: set[int] = set()

    @settings(
        max_examples=300,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(request=st.one_of(_random_request, _random_request, _random_request, _valid_request))
    def one(request: tuple[str, str, bytes, str | None]) -> None:
        method, path, body, content_type = request
        reply = srv.request(method, path, raw=body, content_type=content_type)
        assert reply.status < 500, (method, path, body, reply.status, reply.raw)
        assert reply.headers.get("content-type") == "application/json", reply.headers
        if method != "HEAD":
            assert isinstance(reply.body, dict)
        seen.add(reply.status)

    one()
    assert srv.proc.poll() is None, "the server is still up"
    assert 202 in seen and seen <= {200, 202, 400, 404, 405, 409, 413, 415, 422}, seen
    assert "Traceback" not in srv.output()


# -- the http extra: optional, and its schemas ----------------------------------------------


def test_core_package_imports_neither_starlette_nor_pydantic() -> None:
    code = (
        "import sys, spikard_tasks, spikard_tasks.cli.main\n"
        "q = spikard_tasks.TaskQueue('memory://')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('starlette', 'pydantic')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("missing", ["starlette", "pydantic"])
def test_asgi_without_the_http_extra_says_how_to_install_it(missing: str) -> None:
    code = (
        f"import sys; sys.modules[{missing!r}] = None\n"
        "try:\n"
        "    from spikard_tasks.asgi import create_app\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "pip install 'spikard-tasks[http]'" in result.stdout
    assert missing in result.stdout


class Error(BaseModel):  # the name of one of the OpenAPI document's own schemas
    code: int


class Order(BaseModel):
    sku: str
    qty: int = Field(ge=1)
    problem: Error | None = None


class Point(TypedDict):
    x: float
    y: float


def test_openapi_named_schemas_from_pydantic_go_to_components() -> None:
    queue = TaskQueue("memory://")

    @queue.task(name="order")
    def order(o: Order, at: Point, tags: list[Order] | None = None) -> None: ...

    doc = create_app(queue).openapi()
    body = doc["paths"]["/tasks/order"]["post"]["requestBody"]["content"]["application/json"]
    kwargs = body["schema"]["properties"]["kwargs"]["properties"]
    schemas = doc["components"]["schemas"]
    assert kwargs["o"] == {"$ref": "#/components/schemas/Order"}
    assert kwargs["at"] == {"$ref": "#/components/schemas/Point"}
    assert kwargs["tags"]["anyOf"][0] == {
        "type": "array",
        "items": {"$ref": "#/components/schemas/Order"},
    }
    assert schemas["Order"]["properties"]["qty"]["minimum"] == 1
    assert schemas["Point"]["required"] == ["x", "y"]
    assert schemas["Error"]["required"] == ["error"], "the document's own Error stays"
    problem = schemas["Order"]["properties"]["problem"]["anyOf"][0]["$ref"]
    assert problem == "#/components/schemas/Error_"
    assert schemas["Error_"]["properties"] == {"code": {"title": "Code", "type": "integer"}}

    def refs(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                yield node["$ref"]
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    for ref in refs(doc):
        section, name = ref.removeprefix("#/components/").split("/")
        assert name in doc["components"][section], ref
    # the request still binds as before: a handler gets decoded JSON
    sent = _drive(
        create_app(queue),
        {"type": "http", "method": "POST", "path": "/tasks/order", "headers": []},
        [{"type": "http.request", "body": b'{"args": [{"sku": "a", "qty": 1}, {}]}'}],
    )
    assert sent[0]["status"] == 202, sent
