"""The Ask API: a question over the project's catalog datasets becomes SQL for review, runs as a DuckDB SQL task
(operators), takes feedback, and never offers another project's datasets."""

from __future__ import annotations

import json
import uuid

import httpx
import psycopg

from tests.integration.factories import Tenant
from tests.live import LiveServer, Provisioner

API = "/api/v1"
NAMESPACE = "duckdb:///data/dbt-demo/shop.duckdb"
COLUMNS = {
    "main.fct_orders": [("order_id", "INTEGER"), ("customer_id", "INTEGER"), ("country_code", "VARCHAR"),
                        ("ordered_on", "DATE"), ("status", "VARCHAR"), ("amount", "DOUBLE")],
    "main.dim_customers": [("customer_id", "INTEGER"), ("full_name", "VARCHAR"), ("country_code", "VARCHAR")],
}  # fmt: skip


def client(server: LiveServer, token: str) -> httpx.Client:
    return httpx.Client(base_url=server.base_url + API, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def _catalog(database_url: str, tenant: Tenant, tables: dict[str, list[tuple[str, str]]]) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        for name, columns in tables.items():
            conn.execute(
                "insert into ops.datasets (project_id, namespace, name, kind, columns) values (%s, %s, %s, 'table', "
                "%s::jsonb)",
                (tenant.project_id, NAMESPACE, f"shop.{name}",
                 json.dumps([{"name": c, "type": t} for c, t in columns])),
            )  # fmt: skip


def test_ask_review_run_and_feedback(live_api: LiveServer, provision: Provisioner) -> None:
    tenant = provision.tenant(f"ask-{uuid.uuid4().hex[:6]}")
    _catalog(provision.database_url, tenant, COLUMNS)
    operator = client(live_api, provision.user_token("operator", tenant)[1])
    viewer = client(live_api, provision.user_token("viewer", tenant)[1])
    project = {"project": str(tenant.project_id)}

    asked = viewer.post("/ask", params=project, json={"question": "top 5 customers by total order amount"}).json()
    assert not asked["refused"] and asked["provider"] == "builtin"
    assert "JOIN dim_customers" in asked["sql"] and "LIMIT 5" in asked["sql"], asked["sql"]
    refused = viewer.post("/ask", params=project, json={"question": "what is the churn by country"}).json()
    assert refused["refused"] and refused["message"].startswith("I can't map 'churn' to a column")

    assert (
        viewer.post(f"/ask/{asked['question_id']}/run", params=project, json={"sql": asked["sql"]}).status_code == 403
    )
    bad = operator.post(f"/ask/{asked['question_id']}/run", params=project, json={"sql": "delete from fct_orders"})
    assert bad.status_code == 422 and bad.json()["field"] == "sql"
    ran = operator.post(f"/ask/{asked['question_id']}/run", params=project, json={"sql": asked["sql"]})
    assert ran.status_code == 201, ran.text
    with psycopg.connect(provision.database_url, autocommit=True) as conn:
        spec = conn.execute("select spec from ops.tasks where run_id = %s", (ran.json()["run_id"],)).fetchone()
    assert spec and spec[0]["engine"] == "duckdb" and spec[0]["database"] == "/data/dbt-demo/shop.duckdb"

    answer = viewer.post(f"/ask/{asked['question_id']}/feedback", json={"correct": False, "fixed_sql": "SELECT 1"})
    assert answer.status_code == 204, answer.text
    listed = {q["id"]: q for q in viewer.get("/ask", params=project).json()}
    assert listed[asked["question_id"]]["feedback"] == "wrong"
    assert listed[asked["question_id"]]["run_id"] == ran.json()["run_id"]
    assert listed[refused["question_id"]]["outcome"] == "refused"
    assert "org_id" not in listed[refused["question_id"]]  # the public face, not the whole row


def test_another_projects_datasets_are_never_offered(live_api: LiveServer, provision: Provisioner) -> None:
    mine = provision.tenant(f"ask-a-{uuid.uuid4().hex[:6]}")
    theirs = provision.tenant(f"ask-b-{uuid.uuid4().hex[:6]}")
    _catalog(provision.database_url, theirs, {"main.payroll": [("employee_id", "INTEGER"), ("salary", "DOUBLE")]})
    _catalog(provision.database_url, mine, {"main.fct_orders": COLUMNS["main.fct_orders"]})
    operator = client(live_api, provision.user_token("operator", mine)[1])
    project = {"project": str(mine.project_id)}
    asked = operator.post("/ask", params=project, json={"question": "total salary"}).json()
    assert asked["refused"], asked
    question = operator.post("/ask", params=project, json={"question": "how many orders"}).json()
    sneaky = operator.post(f"/ask/{question['question_id']}/run", params=project,
                           json={"sql": "select * from payroll"})  # fmt: skip
    assert sneaky.status_code == 422 and "not a dataset you may read" in sneaky.json()["detail"]
