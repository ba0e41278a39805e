"""The governance API on a live server: the matrix read with warnings, a plan with its diff and re-routing
preview, an apply refused to operators and to a stale draft, the explain endpoint, caps with usage and
edits, and drift with the bundle zip; bad input names the field."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import httpx
import psycopg

from control_room.bundle.deploy import deploy_bundle
from control_room.bundle.loader import load_bundle
from tests.bundle.conftest import copy_bundle, make_demo_like_org
from tests.integration.factories import Tenant
from tests.live import LiveServer, Provisioner

API = "/api/v1"


def _client(server: LiveServer, token: str) -> httpx.Client:
    return httpx.Client(base_url=server.base_url + API, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def test_routing_caps_and_drift_over_http(live_api: LiveServer, provision: Provisioner, tmp_path: Path) -> None:
    with psycopg.connect(provision.database_url, autocommit=True) as db:
        org = make_demo_like_org(db)
        deploy_bundle(db, load_bundle(copy_bundle(tmp_path / "bundle", org.slug)), actor="tests")
        project = db.execute("select id from ops.projects where org_id = %s and slug = 'lakehouse'", (org.org_id,))
        row = project.fetchone()
        assert row
        envs = dict(db.execute("select name, id from ops.environments where project_id = %s", (row[0],)).fetchall())
        tenant = Tenant(org_id=org.org_id, project_id=row[0], environments=envs)
        admin_id, admin_token = provision.user_token("admin", tenant)
        operator_id, operator_token = provision.user_token("operator", tenant)
        # Org-wide rows (the matrix, org caps) are read by the org's members.
        db.execute(
            "insert into ops.org_members (org_id, user_id, role) values (%s, %s, 'operator')", (org.org_id, operator_id)
        )
        db.execute(
            "insert into ops.org_members (org_id, user_id, role) values (%s, %s, 'admin')", (org.org_id, admin_id)
        )
    admin, operator = _client(live_api, admin_token), _client(live_api, operator_token)
    q = {"org": org.slug}

    got = operator.get("/routing/rules", params=q)
    assert got.status_code == 200, got.text
    matrix = got.json()
    assert [r["name"] for r in matrix["rules"]] == [
        "prod-spark",
        "dbt-models",
        "sql-warehouse",
        "ml-training",
        "catch-all",
    ]
    assert {w["kind"] for w in matrix["warnings"]} == {"no_executor"}
    rules = matrix["rules"]
    swapped = [rules[1], rules[0], *rules[2:]]
    plan = admin.post("/routing/rules/plan", json={**q, "fingerprint": matrix["fingerprint"], "rules": swapped})
    assert plan.status_code == 200, plan.text
    assert plan.json()["changes"] == ["~ prod-spark: position 10 -> 25"]
    body = {**q, "fingerprint": matrix["fingerprint"], "rules": swapped}
    assert operator.put("/routing/rules", json=body).status_code == 403
    bad = admin.put("/routing/rules", json={**body, "rules": [*swapped, {"name": "x", "pool": "Bad Pool"}]})
    assert bad.status_code == 422 and bad.json()["field"] == "rules[5].pool", bad.text
    applied = admin.put("/routing/rules", json=body)
    assert applied.status_code == 200, applied.text
    assert applied.json()["updated"] == 1
    stale = admin.put("/routing/rules", json=body)
    assert stale.status_code == 409 and "reload" in stale.json()["detail"]

    explained = operator.get(
        "/routing/explain", params={**q, "project": "lakehouse", "environment": "prod", "engine": "spark"}
    ).json()
    assert explained["rule"] == "prod-spark" and explained["pool"] == "default"
    assert explained["verdicts"][0] == {
        "name": "dbt-models", "matched": False, "reasons": ["engine is spark, the rule wants dbt"]
    }  # fmt: skip
    assert explained["executors"] == [] and "pool default has no executor" in explained["waits"]
    assert [c["cap"]["name"] for c in explained["caps"] if c["tightest"]] == [
        "lakehouse-concurrency", "prod-max-runtime", "org-runs-per-day", "spark-memory"
    ]  # fmt: skip

    put = admin.put(
        "/caps/pool-default", json={**q, "scope": "pool", "pool": "default", "kind": "concurrent_tasks", "limit": 1}
    )
    assert put.status_code == 200, put.text
    assert put.json()["layer"] == "claim" and put.json()["used_label"] == "0 running"
    assert (
        operator.put("/caps/pool-default", json={**q, "scope": "org", "kind": "max_cores", "limit": 1}).status_code
        == 403
    )
    wrong = admin.put("/caps/x", json={**q, "scope": "pool", "kind": "max_cores", "limit": -1})
    assert wrong.status_code == 422 and wrong.json()["field"] == "limit"
    listed = {c["name"]: c for c in operator.get("/caps", params=q).json()["items"]}
    assert listed["pool-default"]["recent_refusals"] == [] and listed["pool-default"]["refusals_7d"] == 0

    spec = {"tasks": [{"key": "train", "engine": "spark", "application": "job.py", "timeout_s": 60}]}
    effective = operator.post(
        "/effective-caps", json={**q, "project": "lakehouse", "environment": "prod", "spec": spec}
    )
    assert effective.status_code == 200, effective.text
    (planned,) = effective.json()["tasks"]
    assert (planned["key"], planned["pool"], planned["rule"]) == ("train", "default", "prod-spark")
    assert {x["kind"]: x["source"] for x in planned["limits"] if x["tightest"]} == {
        "concurrent_tasks": "pool-default", "max_runtime_s": "spec timeout_s", "runs_per_day": "org-runs-per-day",
        "max_memory_mb": "spark-memory",
    }  # fmt: skip
    no_engine = operator.post(
        "/effective-caps", json={**q, "project": "lakehouse", "environment": "prod", "spec": {"tasks": [{"key": "x"}]}}
    )
    assert no_engine.status_code == 422 and no_engine.json()["field"] == "spec.tasks[0].engine", no_engine.text

    drift = operator.get("/governance/drift", params=q).json()
    assert drift["has_drift"] and "~ routing_rules prod-spark: position 10 -> 25" in drift["changes"], drift
    assert "+ caps pool-default" in drift["changes"]
    archive = operator.get("/governance/bundle.zip", params=q)
    assert archive.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(archive.content)).namelist()
    assert f"{org.slug}-bundle/routing.yaml" in names and f"{org.slug}-bundle/caps.yaml" in names
    assert admin.delete("/caps/pool-default", params=q).status_code == 204
    assert admin.delete("/caps/pool-default", params=q).status_code == 404
