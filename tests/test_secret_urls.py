"""Passwords never leak: a catalogue of connection URLs, one case per line, each with a
password marker of its own that must never appear in any exception text, repr, str or
``to_dict()`` of config and queue, CLI output (``status``, ``enqueue``), or the engine's
logs at ``SPIKARD_TASKS_LOG=trace``.

The shared servers accept any password for PostgreSQL (trust) and none for MariaDB's
root and Redis, so a wrong password fails on MariaDB and Redis only; the cases that
need a server checking a real password run on a disposable one of the test's own.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import urllib.parse
import uuid
from pathlib import Path

import pytest

from spikard_tasks import TaskQueue

from . import services
from .conftest import require_disposable, server_url
from .procs import REPO

pytestmark = pytest.mark.timeout(180)

#: Every reserved character a password may hold, around the marker.
RESERVED = "/#?@:%&=+ "
ENCODED = urllib.parse.quote(RESERVED, safe="")

#: Where the shared servers listen.
HOSTS = {"pg": "127.0.0.1:5432", "my": "127.0.0.1:3306", "rd": "127.0.0.1:6379"}
#: The backend of each case, from the prefix of its name.
BACKEND_OF = {"pg": "postgres", "my": "mysql", "rd": "redis", "sqlite": "sqlite"}

# One case per line: name -> (URL, what opening it does: ok, ConfigError or BackendError).
# {pw} is the case's password marker, {enc} every reserved character percent-encoded,
# {pg}/{my}/{rd} the shared server's address, {tmp} a directory of the test's own.
# fmt: off
CATALOGUE: dict[str, tuple[str, str]] = {
    # PostgreSQL (the shared server trusts local connections: any password opens it)
    "pg-password":          ("postgres://postgres:{pw}@{pg}/test", "ok"),
    "pg-raw-slash":         ("postgres://app:ab/{pw}@{pg}/test", "ConfigError"),
    "pg-raw-hash":          ("postgres://postgres:ab#{pw}@{pg}/test", "ConfigError"),
    "pg-raw-question":      ("postgres://postgres:ab?{pw}@{pg}/test", "ConfigError"),
    "pg-raw-at":            ("postgres://postgres:ab@{pw}@{pg}/test", "ok"),
    "pg-raw-colon":         ("postgres://postgres:a:{pw}@{pg}/test", "ok"),
    "pg-raw-percent":       ("postgres://postgres:50%{pw}@{pg}/test", "ok"),
    "pg-raw-amp-eq-plus":   ("postgres://postgres:a&b=c+{pw}@{pg}/test", "ok"),
    "pg-raw-space":         ("postgres://postgres:a {pw}@{pg}/test", "ok"),
    "pg-encoded-reserved":  ("postgres://postgres:{enc}{pw}@{pg}/test", "ok"),
    "pg-user-reserved":     ("postgres://{enc}u:{pw}@{pg}/test", "BackendError"),
    "pg-user-raw-at":       ("postgres://a@b:{pw}@{pg}/test", "BackendError"),
    "pg-query-password":    ("postgres://postgres@{pg}/test?password={pw}", "ok"),
    "pg-query-any-case":    ("postgres://postgres@{pg}/test?PassWord={pw}&sslmode=disable", "ok"),
    "pg-query-sslpassword": ("postgres://postgres@{pg}/test?sslpassword={pw}", "ok"),
    "pg-unknown-user":      ("postgres://no_such_user_x:{pw}@{pg}/test", "BackendError"),
    "pg-missing-database":  ("postgres://postgres:{pw}@{pg}/no_such_db_x", "BackendError"),
    "pg-wrong-port":        ("postgres://postgres:{pw}@127.0.0.1:1/test", "BackendError"),
    "pg-port-not-a-number": ("postgres://postgres:{pw}@127.0.0.1:nope/test", "ConfigError"),
    "pg-tls-require":       ("postgres://postgres:{pw}@{pg}/test?sslmode=require", "ok"),
    "pg-tls-unverified": ("postgres://postgres:{pw}@{pg}/test?sslmode=verify-ca", "BackendError"),
    "pg-bad-option":        ("postgres://postgres@{pg}/test?sslmode=no&pwd={pw}", "ConfigError"),
    "pg-no-slashes":        ("postgres:postgres:{pw}@{pg}/test", "ConfigError"),
    # MariaDB (root has no password: any password is wrong)
    "my-wrong-password":    ("mysql://root:{pw}@{my}/test", "BackendError"),
    "my-encoded-reserved":  ("mysql://root:{enc}{pw}@{my}/test", "BackendError"),
    "my-raw-slash":         ("mysql://root:a/{pw}@{my}/test", "ConfigError"),
    "my-unknown-user":      ("mariadb://no_such_user_x:{pw}@{my}/test", "BackendError"),
    "my-missing-database":  ("mysql://root:{pw}@{my}/no_such_db_x", "BackendError"),
    "my-wrong-port":        ("mysql://root:{pw}@127.0.0.1:1/test", "BackendError"),
    "my-query-password":    ("mysql://root@{my}/test?password={pw}", "ok"),
    # Redis (no password set: AUTH fails)
    "rd-password":          ("redis://:{pw}@{rd}/0", "BackendError"),
    "rd-unknown-user":      ("redis://no_such_user_x:{pw}@{rd}/0", "BackendError"),
    "rd-encoded-reserved":  ("redis://:{enc}{pw}@{rd}/0", "BackendError"),
    "rd-raw-slash":         ("redis://:a/{pw}@{rd}/0", "ConfigError"),
    "rd-raw-hash":          ("redis://:a#{pw}@{rd}/0", "ConfigError"),
    "rd-tls-to-plain":      ("rediss://:{pw}@{rd}/0", "BackendError"),
    "rd-wrong-port":        ("redis://:{pw}@127.0.0.1:1/0", "BackendError"),
    "rd-db-not-a-number":   ("redis://:{pw}@{rd}/nope", "ConfigError"),
    "rd-query-password":    ("redis://{rd}/0?password={pw}", "ok"),
    # SQLite and memory:// take no password: one given anyway never shows
    "sqlite-query-password": ("sqlite:///{tmp}/jobs.db?password={pw}", "ConfigError"),
    "sqlite-userinfo":      ("sqlite://user:{pw}@host/jobs.db", "ConfigError"),
    "memory-userinfo":      ("memory://user:{pw}@host", "ok"),
    "memory-query-password": ("memory://?pwd={pw}", "ok"),
    "unknown-scheme":       ("ftp://user:{pw}@host/db", "ConfigError"),
}
# fmt: on


def _marker(name: str) -> str:
    """A text found nowhere else: the case's password."""
    return f"PwMark{hashlib.sha1(name.encode()).hexdigest()[:10]}Zq"


def _run(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "SPIKARD_TASKS_LOG": "trace", "PYTHONUNBUFFERED": "1"}
    env.pop("SPIKARD_TASKS_URL", None)
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _outputs(url: str, queue: str) -> tuple[str, str, str]:
    """The probe's, ``status``'s and ``enqueue``'s output (stdout and stderr), all three
    run at once, each in a process of its own."""
    cli = ["-m", "spikard_tasks.cli"]
    procs = [
        _run("-m", "tests.secret_probe", url, queue),
        _run(*cli, "status", "--url", url, "--queue", queue, "0190b1e2-no-such-job"),
        _run(*cli, "enqueue", "--url", url, "--queue", queue, "echo", "--args", "[1]"),
    ]
    texts = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        texts.append(f"exit {proc.returncode}\n--- stdout\n{out}\n--- stderr\n{err}")
        assert "Traceback" not in err or "PROBE DONE" in out, texts[-1]
    return texts[0], texts[1], texts[2]


def _check(url: str, marker: str, opens: str) -> None:
    queue = f"secrets-{uuid.uuid4().hex[:8]}"
    probe, status, enqueue = _outputs(url, queue)
    for name, text in (("probe", probe), ("status", status), ("enqueue", enqueue)):
        assert marker not in text, f"the password shows in the {name} output:\n{text}"
    assert "PROBE DONE" in probe, probe
    if opens == "ok":
        assert "open: ok" in probe and "result: ok" in probe, probe
        # The engine really logged at trace level while the job ran.
        assert "TRACE" in probe or "DEBUG" in probe, probe
        assert status.startswith("exit 1") and enqueue.startswith("exit 0"), (status, enqueue)
        job_id = enqueue.split("--- stdout\n", 1)[1].split()[0]
        TaskQueue(url, queue=queue).cancel(job_id)
    else:
        assert f": {opens}" in probe, probe
        assert f"{opens}:" in status and f"{opens}:" in enqueue, (status, enqueue)


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_password_never_shows(name: str, tmp_path: Path) -> None:
    template, opens = CATALOGUE[name]
    backend = BACKEND_OF.get(name.split("-")[0])
    if backend in ("postgres", "mysql", "redis"):
        server_url(backend)  # skips (or fails) without the server
    marker = _marker(name)
    url = template.format(pw=marker, enc=ENCODED, tmp=tmp_path, **HOSTS)
    _check(url, marker, opens)


# -- a server that checks the password -------------------------------------------------

PASSWORD_USER = "spikard_pw_user"


@pytest.mark.slow
def test_real_password_with_reserved_characters(disposable_server: services.Server) -> None:
    """Right (percent-encoded, every reserved character), wrong, and over TLS to a
    plain server, on a server that checks the password."""
    require_disposable(disposable_server.backend)
    marker = _marker(f"real-{disposable_server.backend}")
    password = f"{RESERVED}{marker}"
    services.create_user(disposable_server, PASSWORD_USER, password)
    base = urllib.parse.urlsplit(disposable_server.url)
    where = f"{base.hostname}:{base.port}{base.path}"
    right = f"{base.scheme}://{PASSWORD_USER}:{urllib.parse.quote(password, safe='')}@{where}"
    _check(right, marker, "ok")
    wrong = f"{base.scheme}://{PASSWORD_USER}:{marker}x@{where}"
    _check(wrong, marker, "BackendError")
    # The disposable servers speak no TLS: asking for it fails.
    tls = {"postgres": "?sslmode=require", "mysql": "?ssl-mode=required", "redis": ""}
    scheme = "rediss" if base.scheme == "redis" else base.scheme
    tls_url = f"{scheme}{right[len(base.scheme) :]}{tls[disposable_server.backend]}"
    _check(tls_url, marker, "BackendError")
