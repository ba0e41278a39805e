"""A real MLflow tracking server for tests: backend store a fresh Postgres database, artifacts in a folder.

Start one per test module, never per test (a fresh backend store runs MLflow's migrations first)::

    @pytest.fixture(scope="module")
    def mlflow_server(pg_server, tmp_path_factory):
        with mlflow_tracking_server(pg_server, tmp_path_factory.mktemp("mlflow")) as server:
            yield server
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from control_room.services import ml_tracking
from control_room.supervisor import stop_process_group
from control_room.tracking_server import (
    TrackingServerPlan,
    sqlalchemy_url,
    start_tracking_server,
    wait_until_tracking_healthy,
)
from tests.live import free_port


class DatabaseFactory(Protocol):
    def create_database(self, prefix: str = ...) -> str: ...


@dataclass(frozen=True)
class MlflowServer:
    """A running tracking server."""

    url: str
    artifacts: Path
    log_path: Path
    pid: int


@contextlib.contextmanager
def mlflow_tracking_server(databases: DatabaseFactory, folder: Path) -> Iterator[MlflowServer]:
    """Start ``mlflow server`` on a new database; MLFLOW_TRACKING_URI points at it while the block runs."""
    artifacts = folder / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    plan = TrackingServerPlan(
        host="127.0.0.1",
        port=free_port(),
        backend_store_uri=sqlalchemy_url(databases.create_database("lh_mlflow")),
        artifacts_destination=str(artifacts),
        env=env,
    )
    log_path = folder / "server.log"
    process = start_tracking_server(plan, log_path)
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        wait_until_tracking_healthy(plan.url, process, log_path)
        os.environ["MLFLOW_TRACKING_URI"] = plan.url
        ml_tracking._client_for.cache_clear()
        yield MlflowServer(url=plan.url, artifacts=artifacts, log_path=log_path, pid=process.pid)
    finally:
        if previous is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous
        stop_process_group(process, lambda _line: None, "mlflow server")
