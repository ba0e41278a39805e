"""The MLflow tracking server `lakehouse run` plans: backend URL, artifact destination, agent environment."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from control_room.config import Settings
from control_room.state.ml import default_columns, run_columns
from control_room.supervisor import local_agent_env
from control_room.tracking_server import TrackingServerPlan, sqlalchemy_url


def test_sqlalchemy_url_keeps_password_port_and_unix_socket() -> None:
    assert sqlalchemy_url("postgresql://lh:p%40ss@db.example:6543/mlflow?sslmode=require") == (
        "postgresql+psycopg://lh:p%40ss@db.example:6543/mlflow?sslmode=require"
    )
    assert sqlalchemy_url("host=/tmp/pg port=5433 user=postgres dbname=mlflow") == (
        "postgresql+psycopg://postgres@:5433/mlflow?host=%2Ftmp%2Fpg"
    )


def test_plan_describes_itself_without_the_password(tmp_path: Path) -> None:
    plan = TrackingServerPlan("127.0.0.1", 5050, "postgresql+psycopg://lh:secret@db:5432/mlflow", str(tmp_path), {})
    assert plan.url == "http://127.0.0.1:5050"
    assert "secret" not in plan.describe() and "db:5432/mlflow" in plan.describe()
    command = plan.command()
    assert command[command.index("--backend-store-uri") + 1].endswith("/mlflow")
    assert command[command.index("--workers") + 1] == "1"


def test_s3_artifacts_go_under_the_bucket(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from control_room import tracking_server

    monkeypatch.setattr(tracking_server, "ensure_mlflow_database", lambda url, name: f"postgresql+psycopg://x@h/{name}")
    settings = Settings(data_dir=tmp_path, artifact_store="s3", s3_bucket="lake", s3_endpoint_url="http://s3:8333",
                        s3_access_key_id="key", s3_secret_access_key=SecretStr("secret"))  # fmt: skip
    plan = tracking_server.plan_tracking_server(settings, "postgresql://x@h/lakehouse")
    assert plan.artifacts_destination == "s3://lake/mlflow"
    assert plan.env["MLFLOW_S3_ENDPOINT_URL"] == "http://s3:8333" and plan.env["AWS_ACCESS_KEY_ID"] == "key"
    assert plan.env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"


def test_the_local_agent_gets_the_tracking_uri(tmp_path: Path) -> None:
    env = local_agent_env("http://cr", "lhx_t", tmp_path, base={}, tracking_uri="http://127.0.0.1:5050")
    assert env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5050"
    assert "MLFLOW_TRACKING_URI" not in local_agent_env("http://cr", "lhx_t", tmp_path, base={})


def test_default_columns_are_metrics_and_varying_params() -> None:
    rows = [
        {"metrics": {"auc": 0.9}, "params": {"alpha": "0.1", "seed": "7"}},
        {"metrics": {"auc": 0.8}, "params": {"alpha": "0.01", "seed": "7"}},
    ]
    assert default_columns(rows, run_columns(rows)) == ["metrics.auc", "params.alpha"]
