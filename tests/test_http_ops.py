"""The operations routes (stats, job list, retry, bulk cancel/purge/retry, pause and
resume, workers) and the dashboard's assets, over real HTTP: ``spikard-tasks serve``
and ``spikard-tasks dashboard`` processes next to a real worker process, on a SQLite
file, on PostgreSQL and on Redis."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import server_url
from .ops_servers import (
    APP,
    HttpServer,
    eventually,
    start_http,
    start_ops_worker,
    stop_http,
    stop_ops_worker,
)
from .procs import REPO

pytestmark = pytest.mark.timeout(180)

FINISHED = ("succeeded", "failed", "cancelled")


@pytest.fixture
def queue_name() -> str:
    return f"ops-{uuid.uuid4().hex[:10]}"


@pytest.fixture(params=["sqlite", "postgres", "redis"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.db'}"
    return server_url(request.param)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Callable[..., HttpServer]]:
    """Starts HTTP servers (``serve`` or ``dashboard`` with their arguments); stops them
    afterwards."""
    started: list[HttpServer] = []

    def make(url: str, queue: str, *args: str) -> HttpServer:
        srv = start_http(url, queue, tmp_path / f"server{len(started)}.log", *args)
        started.append(srv)
        return srv

    yield make
    for srv in started:
        stop_http(srv)


@pytest.fixture
def cleanup(url: str, queue_name: str) -> Iterator[None]:
    """Removes what the test left in a shared server's queue."""
    yield
    if url.startswith("sqlite"):
        return
    from spikard_tasks import TaskQueue

    with TaskQueue(url, queue=queue_name, environment=False) as queue:
        queue.resume(queue_name)
        queue.cancel_jobs(queue=queue_name)
        queue.purge(queue=queue_name)


def enqueue(srv: HttpServer, task: str, *args: Any, prefix: str = "/tasks", **options: Any) -> str:
    reply = srv.post(f"{prefix}/{task}", {"args": list(args), "options": options})
    job_id: str = reply["task_id"]
    return job_id


def job(srv: HttpServer, job_id: str, prefix: str = "/tasks") -> dict[str, Any]:
    found: dict[str, Any] = srv.get(f"{prefix}/jobs/{urllib.parse.quote(job_id)}?view=full")
    return found


def wait_status(srv: HttpServer, job_id: str, *states: str) -> dict[str, Any]:
    found: dict[str, Any] = eventually(
        lambda: (j := job(srv, job_id))["status"] in states and j,
        f"job {job_id} to be {' or '.join(states)}",
    )
    return found


def queue_stats(srv: HttpServer, name: str) -> dict[str, Any] | None:
    for row in srv.get("/tasks/stats")["queues"]:
        if row["queue"] == name:
            return dict(row)
    return None


def test_every_operation_route_against_a_worker(
    url: str, queue_name: str, servers: Callable[..., HttpServer], tmp_path: Path, cleanup: None
) -> None:
    srv = servers(url, queue_name, "serve", f"{APP}:queue")
    worker = start_ops_worker(url, queue_name, "--concurrency", "2")
    try:
        marker = tmp_path / "flaky.marker"
        ok_ids = [enqueue(srv, "ops.ok", n) for n in range(3)]
        boom_id = enqueue(srv, "ops.boom", "it <b>broke</b>")
        flaky_id = enqueue(srv, "ops.flaky", str(marker))
        for job_id in ok_ids:
            assert wait_status(srv, job_id, *FINISHED)["status"] == "succeeded"
        failed = wait_status(srv, boom_id, *FINISHED)
        assert failed["status"] == "failed"
        assert failed["errors"][0]["error"] == "ValueError: it <b>broke</b>"
        assert "Traceback" in failed["errors"][0]["traceback"]
        assert failed["args"] == ["it <b>broke</b>"] and failed["kwargs"] == {}
        assert failed["finished_at"] and failed["enqueued_at"] and failed["started_at"]
        assert wait_status(srv, flaky_id, *FINISHED)["status"] == "failed"

        # stats: per queue and summed
        stats = srv.get("/tasks/stats")
        dt.datetime.fromisoformat(stats["at"])
        mine = queue_stats(srv, queue_name)
        assert mine is not None
        assert mine["counts"]["succeeded"] == 3 and mine["counts"]["failed"] == 2
        assert mine["succeeded_last_minute"] == 3 and mine["failed_last_minute"] == 2
        assert mine["paused"] is False
        assert set(stats["counts"]) == {
            "pending", "scheduled", "running", "retrying", "succeeded", "failed", "cancelled"
        }  # fmt: skip
        assert stats["counts"]["failed"] >= 2

        # the job list: filters, newest first, keyset pages
        listed = srv.get(f"/tasks/jobs?queue={queue_name}&status=failed")
        assert {j["task_id"] for j in listed["jobs"]} == {boom_id, flaky_id}
        assert listed["next_cursor"] is None
        by_task = srv.get(f"/tasks/jobs?queue={queue_name}&task=ops.ok&limit=2")
        assert [j["task_id"] for j in by_task["jobs"]] == [ok_ids[2], ok_ids[1]]
        assert by_task["next_cursor"]
        cursor = urllib.parse.quote(by_task["next_cursor"])
        rest = srv.get(f"/tasks/jobs?queue={queue_name}&task=ops.ok&limit=2&cursor={cursor}")
        assert [j["task_id"] for j in rest["jobs"]] == [ok_ids[0]]
        assert rest["next_cursor"] is None
        both = srv.get(f"/tasks/jobs?queue={queue_name}&status=failed&status=succeeded")
        assert len(both["jobs"]) == 5
        future = srv.get(f"/tasks/jobs?queue={queue_name}&since={time.time() + 3600:.0f}")
        assert future["jobs"] == []
        past = srv.get(f"/tasks/jobs?queue={queue_name}&since=2001-01-01T00:00:00Z")
        assert len(past["jobs"]) == 5

        # retry one job: the flaky one succeeds the second time, its error is kept
        assert srv.post(f"/tasks/jobs/{flaky_id}/retry") == {"task_id": flaky_id, "retried": True}
        recovered = wait_status(srv, flaky_id, *FINISHED)
        assert recovered["status"] == "succeeded" and recovered["result"] == "recovered"
        assert len(recovered["errors"]) == 1
        again = srv.request("POST", f"/tasks/jobs/{flaky_id}/retry", {})
        assert again.status == 409 and again.body["status"] == "succeeded", again.raw
        assert srv.request("POST", "/tasks/jobs/no-such-job/retry", {}).status == 404

        # workers: this test's worker is listed with its queue
        workers = srv.get("/tasks/workers")["workers"]
        ours = [w for w in workers if queue_name in w["queues"]]
        assert len(ours) == 1 and ours[0]["pid"] == worker.pid
        assert ours[0]["concurrency"] == 2 and ours[0]["host"]
        dt.datetime.fromisoformat(ours[0]["last_heartbeat"])

        # pause: a job enqueued stays pending; resume: it runs
        paused = srv.post(f"/tasks/queues/{queue_name}/pause")
        assert paused == {"queue": queue_name, "paused": True, "changed": True}
        assert srv.post(f"/tasks/queues/{queue_name}/pause")["changed"] is False
        rows = {r["queue"]: r for r in srv.get("/tasks/queues")["queues"]}
        assert rows[queue_name]["paused"] is True
        time.sleep(0.5)  # workers see a pause within one poll interval (0.05 s here)
        held = enqueue(srv, "ops.ok", 21)
        time.sleep(1.0)  # several poll intervals of the worker
        assert job(srv, held)["status"] == "pending"
        assert queue_stats(srv, queue_name)["paused"] is True  # type: ignore[index]
        resumed = srv.post(f"/tasks/queues/{queue_name}/resume")
        assert resumed == {"queue": queue_name, "paused": False, "changed": True}
        assert wait_status(srv, held, *FINISHED)["result"] == 42

        # bulk: cancel the scheduled ones, purge them, retry the failed one
        later = [enqueue(srv, "ops.ok", n, delay=3600) for n in range(3)]
        assert job(srv, later[0])["status"] == "scheduled"
        body = {"status": "scheduled", "queue": queue_name}
        assert srv.post("/tasks/jobs/cancel", body) == {"cancelled": 3}
        assert {job(srv, j)["status"] for j in later} == {"cancelled"}
        time.sleep(0.01)  # finished strictly before the purge's "now"
        purge = {"status": ["cancelled"], "queue": queue_name, "older_than": 0}
        assert srv.post("/tasks/jobs/purge", purge) == {"purged": 3}
        assert srv.request("GET", f"/tasks/jobs/{later[0]}").status == 404
        kept = {"status": "succeeded", "queue": queue_name, "older_than": 3600}
        assert srv.post("/tasks/jobs/purge", kept) == {"purged": 0}
        retried = srv.post("/tasks/jobs/retry", {"queue": queue_name, "task": "ops.boom"})
        assert retried == {"retried": 1}
        assert wait_status(srv, boom_id, *FINISHED)["errors"][-1]["attempt"] >= 1

        # cancel one job over POST
        slow_id = enqueue(srv, "ops.ok", 1, delay=3600)
        cancelled = srv.post(f"/tasks/jobs/{slow_id}/cancel")
        assert cancelled == {"task_id": slow_id, "cancelled": True}
        late = srv.request("POST", f"/tasks/jobs/{slow_id}/cancel", {})
        assert late.status == 409 and late.body["status"] == "cancelled"
    finally:
        stop_ops_worker(worker)
    # the stopped worker removed its row
    gone = srv.get("/tasks/workers")["workers"]
    assert all(w["pid"] != worker.pid for w in gone)


def test_auth_hook_guards_every_operation_and_the_dashboard(
    servers: Callable[..., HttpServer], tmp_path: Path, queue_name: str
) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    srv = servers(url, queue_name, "serve", f"{APP}:guarded")
    admin = {"Authorization": "Bearer admin"}
    viewer = {"Authorization": "Bearer viewer"}
    reads = [
        "/guarded/stats",
        "/guarded/jobs",
        "/guarded/queues",
        "/guarded/workers",
        "/guarded/dashboard/",
        "/guarded/dashboard/app.js",
    ]
    writes = [
        "/guarded/jobs/x/retry",
        "/guarded/jobs/x/cancel",
        "/guarded/jobs/retry",
        "/guarded/jobs/cancel",
        "/guarded/jobs/purge",
        f"/guarded/queues/{queue_name}/pause",
        f"/guarded/queues/{queue_name}/resume",
    ]
    for path in reads + writes:
        method = "GET" if path in reads else "POST"
        reply = srv.request(method, path, {} if method == "POST" else None)
        assert reply.status == 401, (path, reply.raw)
    for path in reads:
        assert srv.request("GET", path, headers=viewer).status == 200, path
    for path in writes:
        reply = srv.request("POST", path, {}, headers=viewer)
        assert reply.status == 403, (path, reply.raw)
        assert reply.body == {"error": "viewers may only read"}
    assert srv.post(f"/guarded/queues/{queue_name}/pause", headers=admin)["paused"] is True
    assert srv.request("POST", "/guarded/jobs/x/retry", {}, headers=admin).status == 404


def test_read_only_refuses_every_write_and_hides_the_dashboard_actions(
    servers: Callable[..., HttpServer], tmp_path: Path, queue_name: str
) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    srv = servers(url, queue_name, "serve", f"{APP}:readonly")
    writes = [
        ("POST", "/ro/jobs/x/retry"),
        ("POST", "/ro/jobs/x/cancel"),
        ("POST", "/ro/jobs/retry"),
        ("POST", "/ro/jobs/cancel"),
        ("POST", "/ro/jobs/purge"),
        ("POST", f"/ro/queues/{queue_name}/pause"),
        ("POST", f"/ro/queues/{queue_name}/resume"),
        ("POST", "/ro/ops.ok"),
        ("POST", "/ro/batch"),
        ("DELETE", "/ro/jobs/x"),
    ]
    for method, path in writes:
        reply = srv.request(method, path, {"args": [1]} if path == "/ro/ops.ok" else {})
        assert reply.status == 403, (method, path, reply.raw)
        assert reply.body == {"error": "this app is read-only"}
    for path in ("/ro/stats", "/ro/jobs", "/ro/queues", "/ro/workers", "/ro/openapi.json"):
        assert srv.request("GET", path).status == 200, path
    page = srv.request("GET", "/ro/dashboard/")
    assert b'name="spikard-read-only" content="true"' in page.raw
    doc = srv.get("/ro/openapi.json")
    assert "read-only" in doc["paths"]["/ro/jobs/purge"]["post"]["summary"]
    from spikard_tasks import TaskQueue

    with TaskQueue(url, queue=queue_name, environment=False) as queue:
        assert queue.paused() == [] and sum(queue.counts().values()) == 0


def test_openapi_lists_every_operation(
    servers: Callable[..., HttpServer], tmp_path: Path, queue_name: str
) -> None:
    srv = servers(f"sqlite:///{tmp_path / 'jobs.db'}", queue_name, "serve", f"{APP}:queue")
    doc = srv.get("/tasks/openapi.json")
    expected = {
        "/tasks/stats": {"get"},
        "/tasks/jobs": {"get"},
        "/tasks/jobs/{id}": {"get", "delete"},
        "/tasks/jobs/{id}/retry": {"post"},
        "/tasks/jobs/{id}/cancel": {"post"},
        "/tasks/jobs/retry": {"post"},
        "/tasks/jobs/cancel": {"post"},
        "/tasks/jobs/purge": {"post"},
        "/tasks/queues": {"get"},
        "/tasks/queues/{name}/pause": {"post"},
        "/tasks/queues/{name}/resume": {"post"},
        "/tasks/workers": {"get"},
    }
    for path, methods in expected.items():
        assert methods <= set(doc["paths"][path]), path
    schemas = doc["components"]["schemas"]
    for name in ("Stats", "QueueStats", "JobPage", "JobRecord", "Worker", "JobFilter"):
        assert name in schemas
    params = {p["name"] for p in doc["paths"]["/tasks/jobs"]["get"]["parameters"]}
    assert params == {"status", "task", "queue", "since", "until", "limit", "cursor"}
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()
           if isinstance(op, dict) and "operationId" in op]  # fmt: skip
    assert len(ids) == len(set(ids)), "operation ids are unique"


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("status=dead", "valid states: pending, scheduled"),
        ("status=failed,nope", "unknown query parameter status 'nope'"),
        ("limit=0", "limit must be 1 to 1000"),
        ("limit=1001", "limit must be 1 to 1000"),
        ("limit=ten", "limit must be 1 to 1000"),
        ("since=yesterday", "since must be an ISO-8601 date-time"),
        ("until=1e30", "until is out of range"),
        ("since=2030-01-01&until=2020-01-01", "since must not be after until"),
        ("cursor=garbage", "cursor"),
        ("page=2", "unknown query parameter 'page'"),
        ("task=a&task=b", "given twice"),
    ],
)
def test_bad_query_parameters_answer_400_saying_why(
    servers_module: HttpServer, query: str, says: str
) -> None:
    reply = servers_module.request("GET", f"/tasks/jobs?{query}")
    assert reply.status == 400, reply.raw
    assert says in reply.body["error"]


@pytest.mark.parametrize(
    ("path", "body", "status", "says"),
    [
        ("/tasks/jobs/retry", {"status": "nope"}, 422, "valid states"),
        ("/tasks/jobs/cancel", {"colour": "red"}, 422, "unknown field 'colour'"),
        ("/tasks/jobs/cancel", ["failed"], 422, "must be a JSON object"),
        ("/tasks/jobs/purge", {"older_than": -1}, 422, "older_than"),
        ("/tasks/jobs/purge", {"older_than": "7d"}, 422, "older_than"),
        ("/tasks/jobs/retry", {"since": "soon"}, 422, "since"),
        ("/tasks/jobs/retry", {"task": 5}, 422, "task must be a string"),
        ("/tasks/queues/q/pause", {"x": 1}, 422, "takes no body"),
    ],
)
def test_bad_bodies_answer_422_saying_why(
    servers_module: HttpServer, path: str, body: Any, status: int, says: str
) -> None:
    reply = servers_module.request("POST", path, body)
    assert reply.status == status, reply.raw
    assert says in reply.body["error"]


def test_wrong_methods_content_types_and_origins(servers_module: HttpServer) -> None:
    srv = servers_module
    for method, path, allow in [
        ("POST", "/tasks/stats", "GET, HEAD"),
        ("DELETE", "/tasks/jobs", "GET, HEAD"),
        ("GET", "/tasks/jobs/retry", "POST"),
        ("GET", "/tasks/queues/q/pause", "POST"),
        ("PUT", "/tasks/workers", "GET, HEAD"),
        ("POST", "/tasks/dashboard/", "GET, HEAD"),
    ]:
        reply = srv.request(method, path, {} if method != "GET" else None)
        assert reply.status == 405, (method, path, reply.raw)
        assert reply.headers["allow"] == allow
    form = srv.request(
        "POST",
        "/tasks/jobs/cancel",
        raw=b"status=failed",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert form.status == 415
    host = f"127.0.0.1:{srv.port}"
    foreign = srv.request(
        "POST", "/tasks/jobs/cancel", {}, headers={"Origin": "https://evil.example"}
    )
    assert foreign.status == 403 and "cross-origin" in foreign.body["error"]
    same = srv.request(
        "POST", "/tasks/jobs/cancel", {"queue": "none"}, headers={"Origin": f"http://{host}"}
    )
    assert same.status == 200 and same.body == {"cancelled": 0}
    proxied = {"Origin": "https://ops.example", "X-Forwarded-Host": "ops.example"}
    assert srv.request("POST", "/tasks/jobs/cancel", {}, headers=proxied).status == 200
    for site, status in (("cross-site", 403), ("same-site", 403), ("same-origin", 200)):
        reply = srv.request("POST", "/tasks/jobs/cancel", {}, headers={"Sec-Fetch-Site": site})
        assert reply.status == status, (site, reply.raw)
    assert srv.request("GET", "/tasks/jobs/x?view=everything").status == 400
    assert srv.request("HEAD", "/tasks/stats").status == 200


def test_dashboard_is_served_under_the_prefix_with_its_assets(servers_module: HttpServer) -> None:
    srv = servers_module
    bare = srv.request("GET", "/tasks/dashboard")
    assert bare.status == 308 and bare.headers["location"] == "dashboard/"
    page = srv.request("GET", "/tasks/dashboard/")
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert b'content="../"' in page.raw and b'content="false"' in page.raw
    assert b"http://" not in page.raw and b"https://" not in page.raw, "nothing from elsewhere"
    for asset, kind in (("app.js", "text/javascript"), ("app.css", "text/css")):
        reply = srv.request("GET", f"/tasks/dashboard/{asset}")
        assert reply.status == 200 and reply.headers["content-type"].startswith(kind)
        assert b"https://" not in reply.raw and b"@import" not in reply.raw
    script = srv.request("GET", "/tasks/dashboard/app.js").raw
    for sink in (b".innerHTML", b".outerHTML", b"insertAdjacentHTML", b"document.write", b"eval("):
        assert sink not in script, f"the script never parses data as HTML ({sink!r})"
    assert srv.request("GET", "/tasks/dashboard/secret.py").status == 404
    assert srv.request("GET", "/tasks/dashboard/../app.py").status == 404


@pytest.fixture(scope="module")
def servers_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    """One server with the dashboard (no worker) for the tests that only check answers."""
    tmp = tmp_path_factory.mktemp("http-ops")
    srv = start_http(
        f"sqlite:///{tmp / 'jobs.db'}", "default", tmp / "server.log",
        "serve", f"{APP}:with_dashboard",
    )  # fmt: skip
    yield srv
    stop_http(srv)


def test_dashboard_command_serves_the_page_and_its_api(
    servers: Callable[..., HttpServer], tmp_path: Path, queue_name: str
) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    from spikard_tasks import TaskQueue

    with TaskQueue(url, queue=queue_name, environment=False) as queue:
        queue.enqueue("ops.ok", [1], strict=False)
    srv = servers(url, queue_name, "dashboard", "--url", url, "--read-only")
    page = srv.request("GET", "/")
    assert page.status == 200 and b'content="api/"' in page.raw
    assert b'name="spikard-read-only" content="true"' in page.raw
    stats = srv.get("/api/stats")
    assert [q["queue"] for q in stats["queues"]] == [queue_name]
    assert stats["queues"][0]["counts"]["pending"] == 1
    assert srv.get("/api/jobs")["jobs"][0]["task"] == "ops.ok"
    assert srv.request("POST", f"/api/queues/{queue_name}/pause", {}).status == 403
    assert srv.request("POST", "/api/ops.ok", {}).status == 403, "no enqueue from the dashboard"
    assert srv.request("GET", "/healthz").status == 200
    app = servers(url, queue_name, "dashboard", f"{APP}:queue")
    assert app.request("POST", f"/api/queues/{queue_name}/pause", {}).status == 200


def test_dashboard_command_refuses_what_it_cannot_serve(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    for args in (["--url", f"sqlite:///{missing}"], [], [f"{APP}:queue", "--url", "memory://"]):
        done = subprocess.run(
            [sys.executable, "-m", "spikard_tasks.cli", "dashboard", *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert done.stderr.strip(), args
    assert not missing.exists(), "nothing created"
