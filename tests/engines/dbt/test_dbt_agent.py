"""The dbt engine through a real executor agent against a real control plane: a build of the example
project succeeds with node events, verified artifacts and stored lineage; a bad-data run fails naming
the test."""

from __future__ import annotations

import hashlib
import json
import sys
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.agent.conftest import StartAgent, operator_client, run_events, submit, wait_for_run
from tests.engines.dbt.conftest import copy_project
from tests.engines.dbt.test_dbt_engine import depends_on_graph
from tests.live import LiveServer, Provisioner


def dbt_task(key: str, pool: str, project: Path, warehouse: Path, **extra: Any) -> dict[str, Any]:
    return {
        "key": key,
        "engine": "dbt",
        "pool": pool,
        "command": "build",
        "project": {"path": str(project)},
        "profile": {"type": "duckdb", "path": str(warehouse)},
        "timeout_s": 600,
        **extra,
    }


@pytest.mark.slow
def test_dbt_build_through_an_agent(
    live_api: LiveServer, provision: Provisioner, start_agent: StartAgent, tmp_path: Path
) -> None:
    pool = f"dbt-agent-{uuid.uuid4().hex[:8]}"
    tenant = provision.tenant("dbt-agent")
    operator = operator_client(live_api, provision.user_token("operator", tenant)[1])
    project = copy_project(tmp_path / "shop")
    start_agent(live_api, provision.executor_token(pool, tenant=tenant), engines=["dbt", "shell"], concurrency=2)

    # The project reaches the dbt task as an artifact of the task before it (fetched under its lease).
    package = {
        "key": "package",
        "engine": "shell",
        "pool": pool,
        "command": f"{sys.executable} -c \"import shutil; shutil.make_archive('project', 'zip', '{project}')\"",
        "artifacts": ["project.zip"],
    }
    build = dbt_task("build", pool, project, tmp_path / "good.duckdb", depends_on=["package"])
    build["project"] = {"artifact": {"task_key": "package", "name": "project.zip"}}
    good = submit(operator, tenant.project_id, [package, build])

    # In a project of its own: the example's exposure is one dataset per project, whichever run saw it last.
    bad_tenant = provision.tenant("dbt-agent-bad")
    with psycopg.connect(provision.database_url, autocommit=True) as conn:  # one agent serves both orgs (audited)
        conn.execute("select ops.set_pool_shared(%s, %s, true)", (tenant.org_id, pool))
    bad_operator = operator_client(live_api, provision.user_token("operator", bad_tenant)[1])
    bad = submit(
        bad_operator,
        bad_tenant.project_id,
        [dbt_task("build", pool, project, tmp_path / "bad.duckdb")],
        params={"inject_bad_order": True},
    )
    good_run = wait_for_run(operator, good["id"], timeout=300)
    bad_run = wait_for_run(bad_operator, bad["id"], timeout=300)

    assert good_run["status"] == "succeeded", good_run
    build_task = next(t for t in good_run["tasks"] if t["key"] == "build")
    listed = operator.get(f"/runs/{good['id']}/artifacts", params={"task_id": build_task["id"]}).json()["items"]
    artifacts = {a["name"]: a for a in listed}
    assert {"manifest.json", "run_results.json", "compiled-sql.zip", "dbt.log"} <= set(artifacts)
    content = operator.get(f"/artifacts/{artifacts['manifest.json']['id']}/content")
    assert hashlib.sha256(content.content).hexdigest() == artifacts["manifest.json"]["sha256"]
    manifest = json.loads(content.content)
    events = run_events(operator, good["id"])
    finished = {e["data"]["unique_id"] for e in events if e["type"] == "dbt.node_finished"}
    expected = {u for u, n in manifest["nodes"].items() if n["resource_type"] in ("model", "test")}
    assert len(expected) == 25 and expected <= finished
    datasets = operator.get("/datasets", params={"last_run_id": good["id"], "limit": 500}).json()["items"]
    stored = set()
    for dataset in datasets:
        for edge in operator.get(f"/datasets/{dataset['id']}").json()["upstream"]:
            stored.add((edge["dataset"]["name"], dataset["name"]))
    assert stored == depends_on_graph(manifest)
    lineage_events = operator.get(f"/runs/{good['id']}/openlineage", params={"limit": 1000}).json()["items"]
    assert {e["job_name"] for e in lineage_events} >= {"model.lakehouse_shop.fct_orders", "build"}

    assert bad_run["status"] == "failed", bad_run
    error = bad_run["tasks"][0]["error"]
    assert "test assert_order_amounts_positive" in error, error
    assert len(bad_run["tasks"][0]["attempts"]) == 1, "a failing test is not retried"
