"""One real MLflow tracking server per test module, and a control-room API server that uses it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from control_room.db.migrate import migrate
from tests.conftest import PostgresServer
from tests.live import LiveServer, Provisioner, live_server
from tests.mlflow_server import MlflowServer, mlflow_tracking_server


@pytest.fixture(scope="module")
def mlflow_server(pg_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A real `mlflow server` on a fresh Postgres database; MLFLOW_TRACKING_URI points at it meanwhile."""
    with mlflow_tracking_server(pg_server, tmp_path_factory.mktemp("mlflow")) as server:
        yield server


@pytest.fixture(scope="module")
def ml_database_url(pg_server: PostgresServer) -> str:
    url = pg_server.create_database("lh_ml")
    migrate(url)
    return url


@pytest.fixture(scope="module")
def ml_api(
    mlflow_server: MlflowServer, ml_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A control-room API server of the module that talks to ``mlflow_server`` (it inherits the URI)."""
    with live_server(ml_database_url, Path(tmp_path_factory.mktemp("ml-data"))) as server:
        yield server


@pytest.fixture(scope="module")
def ml_provision(ml_database_url: str) -> Provisioner:
    return Provisioner(ml_database_url)
