"""A training task logs to a real MLflow server; the control room's API reads experiments, runs, compare
and the registry from it, and changes aliases by role, audited and optionally gated on a metric."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from executor_agent.config import AgentSettings
from executor_agent.runner import Agent
from tests.agent.conftest import operator_client, submit, wait_for_run
from tests.live import LiveServer, Provisioner
from tests.mlflow_server import MlflowServer

MODEL = "churn-classifier"
TRAIN_TASK = {
    "key": "train",
    "engine": "python",
    "timeout_s": 600,
    "function": "executor_agent.examples.train_model:train",
    "params": {"rows": 600, "epochs": 4, "alphas": [0.1, 0.01, 0.0001], "model_name": MODEL},
}


@dataclass
class Trained:
    """What the module's one training run left behind."""

    project: uuid.UUID
    slug: str
    run_id: str
    result: dict[str, Any]
    viewer: httpx.Client
    operator: httpx.Client
    admin: httpx.Client


@pytest.fixture(scope="module")
def trained(
    mlflow_server: MlflowServer, ml_api: LiveServer, ml_provision: Provisioner, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Trained]:
    """One agent runs the demo training task once for the whole module."""
    tenant = ml_provision.tenant()
    pool = f"ml-{uuid.uuid4().hex[:6]}"
    work = Path(tmp_path_factory.mktemp("ml-agent"))
    settings = AgentSettings(
        url=ml_api.base_url, token=ml_provision.executor_token(pool), spool_dir=work / "spool",
        work_dir=work / "work", concurrency=1, claim_wait_s=2.0, grace_period_s=5.0, engines=["python"],
    )  # fmt: skip
    agent = Agent(settings)
    thread = threading.Thread(target=agent.run, name="ml-agent", daemon=True)
    thread.start()
    assert agent.started.wait(30), "the agent did not register"
    clients = {
        role: operator_client(ml_api, ml_provision.user_token(role)[1]) for role in ("viewer", "operator", "admin")
    }
    try:
        run = submit(clients["operator"], tenant.project_id, [{**TRAIN_TASK, "pool": pool}])
        detail = wait_for_run(clients["operator"], run["id"], timeout=300)
        assert detail["status"] == "succeeded", detail
        task = detail["tasks"][0]
        with psycopg.connect(ml_api.database_url) as conn:
            row = conn.execute("select slug from ops.projects where id = %s", (tenant.project_id,)).fetchone()
        assert row is not None
        yield Trained(tenant.project_id, row[0], run["id"], task["result"], clients["viewer"], clients["operator"],
                      clients["admin"])  # fmt: skip
    finally:
        agent.request_stop()
        thread.join(60)
        for client in clients.values():
            client.close()


def _experiment(trained: Trained) -> dict[str, Any]:
    page = trained.viewer.get("/ml/experiments", params={"project": str(trained.project)}).json()
    (experiment,) = [e for e in page["items"] if e["name"] == trained.slug]
    return dict(experiment)


def test_health_reports_the_tracking_server(ml_api: LiveServer, mlflow_server: MlflowServer) -> None:
    body = httpx.get(f"{ml_api.base_url}/api/v1/health", timeout=10).json()
    assert body["mlflow"] == "ok" and body["mlflow_detail"] is None


def test_experiment_lists_the_runs_a_training_task_logged(trained: Trained) -> None:
    experiment = _experiment(trained)
    assert experiment["runs"] == 3 and experiment["last_run_status"] == "FINISHED"
    assert experiment["tags"]["lakehouse.project"] == trained.slug
    runs = trained.viewer.get(
        f"/ml/experiments/{experiment['id']}/runs",
        params={"project": str(trained.project), "order_by": "params.alpha ASC"},
    ).json()
    assert [r["params"]["alpha"] for r in runs["items"]] == ["0.0001", "0.01", "0.1"]
    assert all(r["lakehouse_run_id"] == trained.run_id and r["lakehouse_task_key"] == "train" for r in runs["items"])
    assert all(0.0 <= r["metrics"]["auc"] <= 1.0 for r in runs["items"])
    # MLflow's search syntax filters, and pages are keyset pages (MLflow's page token).
    filtered = trained.viewer.get(
        f"/ml/experiments/{experiment['id']}/runs",
        params={"project": str(trained.project), "filter": "params.alpha = '0.01'"},
    ).json()
    assert [r["params"]["alpha"] for r in filtered["items"]] == ["0.01"]
    first = trained.viewer.get(f"/ml/experiments/{experiment['id']}/runs",
                               params={"project": str(trained.project), "limit": 2}).json()  # fmt: skip
    second = trained.viewer.get(
        f"/ml/experiments/{experiment['id']}/runs",
        params={"project": str(trained.project), "limit": 2, "cursor": first["next_cursor"]},
    ).json()
    ids = [r["run_id"] for r in first["items"] + second["items"]]
    assert len(set(ids)) == 3 and second["next_cursor"] is None


def test_run_links_both_ways(trained: Trained) -> None:
    linked = trained.viewer.get(f"/runs/{trained.run_id}/mlflow-runs").json()
    assert sorted(r["run_id"] for r in linked) == sorted(r["run_id"] for r in trained.result["runs"])
    detail = trained.viewer.get(f"/ml/runs/{linked[0]['run_id']}", params={"project": str(trained.project)}).json()
    assert detail["lakehouse_run_id"] == trained.run_id
    assert {"coefficients.json"} <= {a["path"] for a in detail["artifacts"]}


def test_compare_three_runs(trained: Trained) -> None:
    run_ids = [r["run_id"] for r in trained.result["runs"]]
    reply = trained.viewer.post("/ml/compare", json={"project": str(trained.project), "runs": run_ids})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    alpha = next(p for p in body["params"] if p["name"] == "alpha")
    assert alpha["differs"] and alpha["values"] == ["0.1", "0.01", "0.0001"]
    epochs = next(p for p in body["params"] if p["name"] == "epochs")
    assert not epochs["differs"]
    auc = next(m for m in body["metrics"] if m["name"] == "auc")
    assert [s["steps"] for s in auc["runs"]] == [4, 4, 4]
    assert [step for step, _ in body["curves"][run_ids[0]]["auc"]] == [1, 2, 3, 4]
    too_few = trained.viewer.post("/ml/compare", json={"project": str(trained.project), "runs": run_ids[:1]})
    assert too_few.status_code == 422 and "runs" in too_few.text


def test_other_projects_do_not_see_the_experiment(
    trained: Trained, ml_api: LiveServer, ml_provision: Provisioner
) -> None:
    other = ml_provision.tenant("other")
    with operator_client(ml_api, ml_provision.user_token("admin", other)[1]) as client:
        page = client.get("/ml/experiments", params={"project": str(other.project_id)}).json()
        assert page["items"] == []
        foreign = client.get("/ml/experiments", params={"project": str(trained.project)})
        assert foreign.status_code == 404
        run_id = trained.result["runs"][0]["run_id"]
        assert client.get(f"/ml/runs/{run_id}", params={"project": str(other.project_id)}).status_code == 404


def test_registry_shows_the_registered_version_with_signature_and_metrics(trained: Trained) -> None:
    models = trained.viewer.get("/ml/models", params={"project": str(trained.project)}).json()["items"]
    assert [m["name"] for m in models] == [MODEL]
    detail = trained.viewer.get(f"/ml/models/{MODEL}", params={"project": str(trained.project)}).json()
    (version,) = detail["versions"]
    assert version["run_id"] == trained.result["registered"]["run_id"]
    assert version["lakehouse_run_id"] == trained.run_id
    assert version["experiment_id"] == _experiment(trained)["id"]
    assert "tenure_months" in version["signature"]["inputs"]
    assert 0.0 <= version["metrics"]["auc"] <= 1.0


def test_aliases_by_role_audited_and_gated(trained: Trained, ml_api: LiveServer, mlflow_server: MlflowServer) -> None:
    from mlflow.tracking import MlflowClient

    project = str(trained.project)
    body = {"project": project, "version": "1"}
    refused = trained.viewer.put(f"/ml/models/{MODEL}/aliases/challenger", json=body)
    assert refused.status_code == 403
    assert trained.operator.put(f"/ml/models/{MODEL}/aliases/challenger", json=body).status_code == 200
    assert trained.operator.put(f"/ml/models/{MODEL}/aliases/champion", json=body).status_code == 403
    made = trained.admin.put(f"/ml/models/{MODEL}/aliases/champion", json={**body, "gate_metric": "auc"})
    assert made.status_code == 200, made.text
    assert made.json() == {"model": MODEL, "alias": "champion", "version": "1", "previous_version": None}

    # A worse version (the lowest-auc run) cannot take `champion` when the promotion checks auc.
    worst = min(trained.result["runs"], key=lambda r: r["auc"])
    client = MlflowClient(mlflow_server.url)
    version = client.create_model_version(MODEL, f"runs:/{worst['run_id']}/model", worst["run_id"])
    gated = trained.admin.put(
        f"/ml/models/{MODEL}/aliases/champion", json={"project": project, "version": version.version,
                                                      "gate_metric": "auc"},
    )  # fmt: skip
    assert gated.status_code == 422 and gated.json()["field"] == "gate_metric", gated.text
    assert client.get_registered_model(MODEL).aliases["champion"] == "1"
    missing = trained.admin.put(f"/ml/models/{MODEL}/aliases/champion",
                                json={**body, "version": "1", "gate_metric": "no_such_metric"})  # fmt: skip
    assert missing.status_code == 422

    moved = trained.admin.put(f"/ml/models/{MODEL}/aliases/champion", json={"project": project,
                                                                           "version": version.version})  # fmt: skip
    assert moved.json()["previous_version"] == "1"
    assert client.get_registered_model(MODEL).aliases["champion"] == str(version.version)
    versions = trained.viewer.get(f"/ml/models/{MODEL}", params={"project": project}).json()["versions"]
    assert {v["version"]: v["aliases"] for v in versions} == {str(version.version): ["champion"], "1": ["challenger"]}
    assert (
        trained.operator.delete(f"/ml/models/{MODEL}/aliases/challenger", params={"project": project}).status_code
        == 200
    )
    assert "challenger" not in client.get_registered_model(MODEL).aliases
    bad = trained.admin.put(f"/ml/models/{MODEL}/aliases/champion", json={"project": project, "version": "0"})
    assert bad.status_code == 422

    with psycopg.connect(ml_api.database_url) as conn:
        audit = conn.execute(
            "select action, old_status, new_status, detail->>'alias' from ops.audit_log "
            "where entity = 'registered_models' and project_id = %s order by id",
            (trained.project,),
        ).fetchall()
    assert audit == [
        ("alias_set", None, "1", "challenger"),
        ("alias_set", None, "1", "champion"),
        ("alias_set", "1", str(version.version), "champion"),
        ("alias_delete", "1", None, "challenger"),
    ]


def test_cli_lists_and_moves_aliases(trained: Trained, ml_api: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from control_room.cli import app
    from control_room.config import get_settings

    monkeypatch.setenv("LAKEHOUSE_DATABASE_URL", ml_api.database_url)
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        listed = runner.invoke(app, ["ml", "experiments", "--project", trained.slug])
        assert listed.exit_code == 0, listed.output
        assert trained.slug in listed.output and "3 runs" in listed.output
        moved = runner.invoke(app, ["ml", "alias", "set", MODEL, "candidate", "1", "--project", trained.slug])
        assert moved.exit_code == 0, moved.output
        assert moved.output.strip() == f"{MODEL} @candidate: v1"
        models = runner.invoke(app, ["ml", "models", "--project", trained.slug])
        assert "@candidate=v1" in models.output
        unknown = runner.invoke(app, ["ml", "models", "--project", "no-such-project"])
        assert unknown.exit_code == 1 and "--project" in unknown.output
    finally:
        get_settings.cache_clear()
    with psycopg.connect(ml_api.database_url) as conn:
        row = conn.execute(
            "select actor, new_status from ops.audit_log where entity = 'registered_models' "
            "and detail->>'alias' = 'candidate'"
        ).fetchone()
    assert row is not None and row[0].startswith("cli:") and row[1] == "1"
