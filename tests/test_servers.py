"""Server backends: connection errors are typed and never leak secrets; TLS options work."""

from __future__ import annotations

import urllib.parse

import pytest

from spikard_tasks import BackendError, TaskQueue

from .conftest import server_url

pytestmark = pytest.mark.timeout(60)


def _with(url: str, *, user: str | None = None, password: str, port: int | None = None) -> str:
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{user or parts.username or ''}:{password}@{host}:{port or parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


@pytest.mark.parametrize("backend", ["postgres", "mysql"])
def test_wrong_credentials_raise_backend_error_without_the_password(backend: str) -> None:
    base = server_url(backend)
    bad = _with(base, user="spikard_no_such_user", password="hunter2-secret")
    with pytest.raises(BackendError) as caught:
        TaskQueue(bad).native  # noqa: B018
    assert "hunter2-secret" not in str(caught.value)
    assert "hunter2-secret" not in repr(TaskQueue(bad))


@pytest.mark.parametrize("backend", ["postgres", "mysql", "redis"])
def test_unreachable_server_is_a_backend_error(backend: str) -> None:
    base = server_url(backend)
    with pytest.raises(BackendError) as caught:
        TaskQueue(_with(base, password="hunter2-secret", port=1)).native  # noqa: B018
    assert "hunter2-secret" not in str(caught.value)


def test_postgres_sslmode_is_honoured() -> None:
    base = server_url("postgres")
    sep = "&" if "?" in base else "?"
    TaskQueue(f"{base}{sep}sslmode=disable").native  # noqa: B018
    try:
        # TLS through rustls; the local server has a self-signed certificate.
        TaskQueue(f"{base}{sep}sslmode=require").native  # noqa: B018
    except BackendError as exc:
        pytest.skip(f"the local PostgreSQL server does not offer TLS: {exc}")
    with pytest.raises(BackendError):
        # verify-full must reject a certificate no trusted root signed.
        TaskQueue(f"{base}{sep}sslmode=verify-full").native  # noqa: B018


def test_rediss_scheme_uses_tls() -> None:
    base = server_url("redis")
    # The local server speaks no TLS, so a TLS handshake must fail (not hang, not pass).
    with pytest.raises(BackendError):
        TaskQueue(base.replace("redis://", "rediss://", 1)).native  # noqa: B018
