"""``GET /api/v1/health``: 200 with the schema version, 503 with an actionable, secret-free reason."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator

import pytest

from control_room.db.migrate import discover
from tests.api.conftest import ApiGet

HEALTH = "/api/v1/health"


@pytest.fixture
def closed_port() -> int:
    """A local TCP port nobody listens on (connections are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts TCP connections but never speaks (a hung or firewalled database)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])


def test_ok_reports_the_newest_applied_migration(
    api_get: ApiGet, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # MLflow's health: tests/ml/test_ml_tracking.py
    response = api_get(database_url, HEALTH)
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "database": "ok",
        "schema_version": discover()[-1].version,
        "mlflow": "not_configured",
        "mlflow_detail": "MLFLOW_TRACKING_URI is not set",
    }


def test_refused_connection_is_503_with_the_reason_and_no_password(api_get: ApiGet, closed_port: int) -> None:
    response = api_get(f"postgresql://lakehouse:s3cret-pw@127.0.0.1:{closed_port}/lakehouse", HEALTH)
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "error"
    assert body["database"] == "unreachable"
    assert "refused" in body["detail"].lower()
    assert "s3cret-pw" not in response.text


def test_silent_database_answers_503_within_the_bounded_timeout(api_get: ApiGet, silent_server: int) -> None:
    started = time.monotonic()
    response = api_get(f"postgresql://lakehouse:s3cret-pw@127.0.0.1:{silent_server}/lakehouse", HEALTH)
    elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert response.json()["database"] == "unreachable"
    assert "s3cret-pw" not in response.text
    # Not a performance figure: proves the check is bounded (2 s budget) instead of hanging.
    assert elapsed < 10


def test_password_in_a_malformed_url_is_not_echoed(api_get: ApiGet) -> None:
    response = api_get("postgresql://lakehouse:s3cret-pw@127.0.0.1:1/lakehouse?sslmode=s3cret-pw", HEALTH)
    assert response.status_code == 503
    assert "s3cret-pw" not in response.text


def test_database_without_migrations_is_503_unmigrated(api_get: ApiGet, fresh_database: Callable[[], str]) -> None:
    response = api_get(fresh_database(), HEALTH)
    assert response.status_code == 503
    assert response.json()["database"] == "unmigrated"
    assert "lakehouse db migrate" in response.json()["detail"]


def test_unset_database_url_is_503_saying_how_to_set_it(api_get: ApiGet) -> None:
    response = api_get(None, HEALTH)
    assert response.status_code == 503
    assert "LAKEHOUSE_DATABASE_URL" in response.json()["detail"]
