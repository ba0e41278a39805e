"""A promotion gate's custom check runs for real: the request opened through the API submits the gate's
check task as a run in the target environment, a real executor agent runs it, and the server's promotion
loop turns the check green and promotes the version (issue 18)."""

from __future__ import annotations

import json
import uuid

import psycopg

from tests.agent.conftest import StartAgent, operator_client, run_events, wait_for_run, wait_until
from tests.live import LiveServer, Provisioner

LOOP_DEADLINE_S = 60  # the loop evaluates every 2 s; a deadline, not an expectation


def test_the_gates_check_task_runs_on_an_agent_and_its_success_promotes(
    live_api: LiveServer, provision: Provisioner, pool: str, start_agent: StartAgent
) -> None:
    tenant = provision.tenant(f"promotion-checks-{pool}")
    with psycopg.connect(live_api.database_url, autocommit=True) as conn:
        row = conn.execute(
            "insert into ops.job_templates (org_id, project_id, name) values (%s, %s, 'orders-ingest') returning id",
            (tenant.org_id, tenant.project_id),
        ).fetchone()
        assert row
        template_id = row[0]
        conn.execute(
            "insert into ops.job_template_versions (template_id, version, tasks, content_sha256) "
            "values (%s, 1, %s, %s)",
            (template_id, json.dumps([{"key": "land", "engine": "shell", "config": {"command": "echo"}}]), "a" * 64),
        )
        smoke = {
            "key": "smoke", "engine": "shell", "pool": pool,
            "config": {"command": 'echo "smoke of $LAKEHOUSE_PARAM_JOB v$LAKEHOUSE_PARAM_VERSION in '
                                  '$LAKEHOUSE_ENVIRONMENT"'},
        }  # fmt: skip
        conn.execute(
            "insert into ops.promotion_gates (org_id, project_id, name, from_environment, to_environment, "
            "min_successful_runs, check_tasks) values (%s, %s, 'to-staging', 'dev', 'staging', 0, %s)",
            (tenant.org_id, tenant.project_id, json.dumps([smoke])),
        )
    operator = operator_client(live_api, provision.user_token("operator", tenant)[1])
    opened = operator.post("/promotions", json={"job": str(template_id), "version": 1, "to_environment": "staging"})
    assert opened.status_code == 201, opened.text
    request = opened.json()
    assert request["status"] == "pending" and request["check_run_id"]
    check = next(c for c in request["checks"] if c["name"] == "check_run")
    assert check["passed"] is False and check["summary"] == "run queued"

    start_agent(live_api, provision.executor_token(pool, tenant=tenant))
    run = wait_for_run(operator, request["check_run_id"], timeout=90)
    assert run["status"] == "succeeded" and run["environment"] == "staging" and run["trigger"] == "promotion"
    assert any(e["message"] == "smoke of orders-ingest v1 in staging" for e in run_events(operator, run["id"]))

    def promoted() -> dict[str, object] | None:
        body = operator.get(f"/promotions/{request['id']}").json()
        return body if body["status"] == "promoted" else None

    final = wait_until(promoted, timeout=LOOP_DEADLINE_S, what="the loop promotes once the check run succeeded")
    check = next(c for c in final["checks"] if c["name"] == "check_run")  # type: ignore[union-attr]
    assert check["passed"] is True and check["summary"] == "run succeeded"
    assert check["evidence"] == [{"kind": "run", "id": run["id"], "label": "check run · succeeded"}]
    pipeline = operator.get("/promotions/pipeline", params={"project": str(tenant.project_id)}).json()
    assert pipeline["items"][0]["environments"]["staging"]["deployed"] == 1
    assert uuid.UUID(final["check_run_id"]) == uuid.UUID(run["id"])  # type: ignore[index]
