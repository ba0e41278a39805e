"""The MLflow tracking server `lakehouse run` starts when MLFLOW_TRACKING_URI is not set.

Its backend store is a database ``mlflow`` on the control plane's Postgres (created when missing) and
its artifacts go to the configured artifact store (a folder under data_dir, or the S3 bucket under
``mlflow/``). The control room itself only ever talks to the server through the MLflow client.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from control_room.config import Settings
from control_room.db.connection import ensure_database
from control_room.server_health import poll_health

MLFLOW_DATABASE = "mlflow"
HEALTH_POLL_SECONDS = 0.25
# A fresh backend store runs MLflow's own migrations first: about 40 s on a busy 2-core machine.
READY_TIMEOUT_SECONDS = 240.0


class TrackingServerError(RuntimeError):
    """The tracking server could not be prepared or did not become healthy; the message says what to do."""


@dataclass(frozen=True)
class TrackingServerPlan:
    """How to start one tracking server: where it listens, where it stores runs and artifacts."""

    host: str
    port: int
    backend_store_uri: str
    artifacts_destination: str
    env: dict[str, str]

    @property
    def url(self) -> str:
        """The tracking URI clients use."""
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        """``mlflow server`` with one worker (two processes, about 0.5 GB)."""
        return [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", self.backend_store_uri,
            "--artifacts-destination", self.artifacts_destination,
            "--serve-artifacts",
            "--host", self.host, "--port", str(self.port), "--workers", "1",
        ]  # fmt: skip

    def describe(self) -> str:
        """For the startup line: URL, backend database (no password) and artifact location."""
        params = conninfo_to_dict(self.backend_store_uri.replace("postgresql+psycopg://", "postgresql://", 1))
        where = f"{params.get('host') or 'localhost'}:{params.get('port') or '5432'}/{params.get('dbname')}"
        return f"{self.url}, backend postgres {where}, artifacts {self.artifacts_destination}"


def ensure_mlflow_database(control_plane_url: str, name: str = MLFLOW_DATABASE) -> str:
    """Create database ``name`` on the control plane's server when missing; its SQLAlchemy URL for MLflow."""
    try:
        ensure_database(control_plane_url, name)
    except psycopg.errors.InsufficientPrivilege as exc:
        raise TrackingServerError(
            f"the control plane's database user may not create database {name!r}: create it once "
            f"(`create database {name}`), or set MLFLOW_TRACKING_URI to an MLflow server of your own"
        ) from exc
    return sqlalchemy_url(make_conninfo(control_plane_url, dbname=name))


def sqlalchemy_url(conninfo: str) -> str:
    """A libpq connection string or URL as ``postgresql+psycopg://`` (MLflow's SQLAlchemy store)."""
    params = {key: str(value) for key, value in conninfo_to_dict(conninfo).items() if value is not None}
    from sqlalchemy.engine import URL

    host = params.get("host") or "localhost"
    query: dict[str, str] = {}
    if host.startswith("/"):  # a Unix socket (the embedded Postgres)
        query["host"] = host
        host = ""
    for key in ("sslmode", "sslrootcert"):
        if params.get(key):
            query[key] = params[key]
    return URL.create(
        "postgresql+psycopg",
        username=params.get("user"),
        password=params.get("password"),
        host=host or None,
        port=int(params["port"]) if params.get("port") else None,
        database=params.get("dbname"),
        query=query,
    ).render_as_string(hide_password=False)


def plan_tracking_server(settings: Settings, control_plane_url: str) -> TrackingServerPlan:
    """The server `lakehouse run` starts: backend database ``mlflow``, artifacts where ours go."""
    env = dict(os.environ)
    # Without it MLflow 3 starts a job runner (Huey) beside the server: about 2 GB instead of 0.5 GB.
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    env.setdefault("PYTHONUNBUFFERED", "1")
    if settings.artifact_store == "s3":
        destination = f"s3://{settings.s3_bucket}/mlflow"
        if settings.s3_endpoint_url:
            env["MLFLOW_S3_ENDPOINT_URL"] = settings.s3_endpoint_url
        if settings.s3_access_key_id:
            env["AWS_ACCESS_KEY_ID"] = settings.s3_access_key_id
        if settings.s3_secret_access_key is not None:
            env["AWS_SECRET_ACCESS_KEY"] = settings.s3_secret_access_key.get_secret_value()
        env["AWS_DEFAULT_REGION"] = settings.s3_region
    else:
        folder = settings.data_dir / "mlflow" / "artifacts"
        folder.mkdir(parents=True, exist_ok=True)
        destination = str(folder.resolve())
    return TrackingServerPlan(
        host=settings.mlflow_host,
        port=settings.mlflow_port,
        backend_store_uri=ensure_mlflow_database(control_plane_url, settings.mlflow_database),
        artifacts_destination=destination,
        env=env,
    )


def start_tracking_server(plan: TrackingServerPlan, log_file: Path) -> subprocess.Popen[bytes]:
    """Start ``mlflow server`` in its own process group, its output appended to ``log_file``."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        return subprocess.Popen(
            plan.command(), env=plan.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def wait_until_tracking_healthy(
    url: str, process: subprocess.Popen[bytes] | None, log_file: Path | None = None,
    timeout_seconds: float = READY_TIMEOUT_SECONDS,
) -> None:  # fmt: skip
    """Poll the server's ``/health`` until it answers 200; TrackingServerError when it exits or times out."""
    where = f" (see {log_file})" if log_file is not None else ""
    poll_health(url, process, name="the MLflow server", where=where, timeout_seconds=timeout_seconds,
                poll_seconds=HEALTH_POLL_SECONDS, error=TrackingServerError)  # fmt: skip
