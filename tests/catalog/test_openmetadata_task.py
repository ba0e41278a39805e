"""The OpenMetadata sync as a scheduled task: a job of ``catalog_sync`` tasks (a dry run, then the sync),
fired from its schedule, run by a real agent through the contract against the protocol-faithful
OpenMetadata test server. The diff is the dry run's result and artifact; a second fire changes nothing;
a run nobody with the admin role stands behind is refused; a call without the task's lease is too."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from control_room.services.auth import UserPrincipal
from executor_agent.client import Forbidden
from executor_agent.engines.base import EngineError
from executor_agent.engines.catalog_sync import CatalogSyncEngine
from tests.agent.conftest import (  # noqa: F401 (fixtures)
    StartAgent,
    operator_client,
    pool,
    start_agent,
    submit,
    wait_for_run,
)
from tests.catalog.test_openmetadata import om, shop  # noqa: F401 (fixtures)
from tests.engines.harness import ContextFactory
from tests.integration.factories import Tenant
from tests.live import Provisioner, live_server
from tests.openmetadata_server.server import OpenMetadataTestServer

SYNC_JOB = "openmetadata-sync"


def _job(slug: str, pool_name: str) -> dict[str, Any]:
    """The job as an admin saves it (the bundle's format): the diff first, then the sync."""
    return {
        "project": slug,
        "definition": {
            "name": SYNC_JOB,
            "description": "OpenMetadata: show the differences, then sync",
            "tasks": [
                {"key": "diff", "engine": "catalog_sync", "pool": pool_name, "config": {"dry_run": True}},
                {"key": "sync", "engine": "catalog_sync", "pool": pool_name, "depends_on": ["diff"]},
            ],
        },
    }


def _fire(admin: httpx.Client, schedule_id: str) -> dict[str, Any]:
    fired = admin.post(f"/schedules/{schedule_id}/fire")
    assert fired.status_code == 201, fired.text
    assert fired.json()["run_id"], fired.json()
    return wait_for_run(admin, fired.json()["run_id"], timeout=120)


def test_a_scheduled_sync_job_diffs_then_syncs_and_a_second_fire_changes_nothing(
    om: OpenMetadataTestServer,  # noqa: F811
    shop: tuple[Tenant, UserPrincipal],  # noqa: F811
    database_url: str,
    db: psycopg.Connection,
    tmp_path: Path,
    start_agent: StartAgent,  # noqa: F811
    pool: str,  # noqa: F811
) -> None:
    tenant, _ = shop
    provision = Provisioner(database_url)
    (slug,) = db.execute("select slug from ops.projects where id = %s", (tenant.project_id,)).fetchone() or ()

    with live_server(database_url, tmp_path, openmetadata_url=om.url, openmetadata_token=om.token) as server:
        start_agent(server, provision.executor_token(pool, tenant=tenant), engines=["catalog_sync"])
        admin = operator_client(server, provision.user_token("admin", tenant)[1])
        saved = admin.post("/templates", json=_job(slug, pool))
        assert saved.status_code == 201, saved.text
        schedule = admin.post(
            f"/templates/{saved.json()['template_id']}/schedules",
            json={"name": "openmetadata-nightly", "cron": "0 3 * * *", "timezone": "Europe/Paris"},
        )
        assert schedule.status_code in (200, 201), schedule.text

        first = _fire(admin, schedule.json()["id"])
        writes = len(om.store.writes)
        second = _fire(admin, schedule.json()["id"])
        artifacts = admin.get(f"/runs/{first['id']}/artifacts").json()["items"]
        diff_artifact = admin.get(f"/artifacts/{artifacts[0]['id']}/content").json() if artifacts else {}
        events = admin.get(f"/runs/{first['id']}/events", params={"limit": 500}).json()["items"]

    assert first["status"] == "succeeded", first
    assert first["trigger"] == "schedule"
    tasks = {t["key"]: t for t in first["tasks"]}
    # The dry run's result is the diff: what the sync then did.
    diff = tasks["diff"]["result"]
    assert diff["dry_run"] is True and diff["tables"] == 3 and diff["pushed"] == 5 and diff["pulled"] == 0
    assert "push create table lakehouse.shop.clean.orders (columns, description, owners)" in diff["changes"]
    assert (
        "push add lineage lakehouse.shop.raw.orders -> lakehouse.shop.clean.orders (columnsLineage)"
        in (diff["changes"])
    )
    synced = tasks["sync"]["result"]
    assert synced["dry_run"] is False and synced["pushed"] == 5 and synced["pulled"] == 3
    assert sorted(om.store.tables) == [
        "lakehouse.shop.clean.orders", "lakehouse.shop.mart.revenue", "lakehouse.shop.raw.orders"
    ]  # fmt: skip
    # Each difference is an event of its task, and the whole answer an artifact.
    diff_events = [e for e in events if e["task_id"] == tasks["diff"]["id"] and e["type"] == "catalog_sync.change"]
    assert len(diff_events) == 5
    assert sorted(a["name"] for a in artifacts) == ["catalog-sync.json", "catalog-sync.json"]
    assert diff_artifact["service"] == "lakehouse" and len(diff_artifact["changes"]) in (5, 8)

    # Fired again: nothing to push or pull, nothing written to OpenMetadata.
    assert second["status"] == "succeeded", second
    again = {t["key"]: t["result"] for t in second["tasks"]}
    assert (again["diff"]["pushed"], again["diff"]["pulled"], again["diff"]["changes"]) == (0, 0, [])
    assert (again["sync"]["pushed"], again["sync"]["pulled"]) == (0, 0)
    assert len(om.store.writes) == writes
    # The pulled rows are audited as the task's doing.
    actors = db.execute(
        "select distinct actor from ops.audit_log where project_id = %s and action = 'openmetadata_pull'",
        (tenant.project_id,),
    ).fetchall()
    assert actors == [(f"task sync of run {first['id']}",)]


def test_an_ad_hoc_sync_needs_an_admin_behind_the_run_and_the_tasks_lease(
    om: OpenMetadataTestServer,  # noqa: F811
    shop: tuple[Tenant, UserPrincipal],  # noqa: F811
    database_url: str,
    tmp_path: Path,
    start_agent: StartAgent,  # noqa: F811
    pool: str,  # noqa: F811
) -> None:
    tenant, _ = shop
    provision = Provisioner(database_url)
    executor_token = provision.executor_token(pool, tenant=tenant)
    task = [{"key": "preview", "engine": "catalog_sync", "pool": pool, "dry_run": True, "max_attempts": 1}]

    with live_server(database_url, tmp_path, openmetadata_url=om.url, openmetadata_token=om.token) as server:
        # Without the lease (no task is claimed, so no token holds one): refused as a lost lease.
        stranger = httpx.post(
            f"{server.base_url}/api/v1/tasks/{uuid.uuid4()}/catalog-sync",
            json={"lease_token": str(uuid.uuid4()), "dry_run": True},
            headers={"Authorization": f"Bearer {executor_token}"},
            timeout=30,
        )
        admin_token = provision.user_token("admin", tenant)[1]
        # A person's token, even an admin's, is not an executor's: the task operation refuses it.
        person = httpx.post(
            f"{server.base_url}/api/v1/tasks/{uuid.uuid4()}/catalog-sync",
            json={"lease_token": str(uuid.uuid4()), "dry_run": True},
            headers={"Authorization": f"Bearer {admin_token}"},
            timeout=30,
        )
        start_agent(server, executor_token, engines=["catalog_sync"])
        operator = operator_client(server, provision.user_token("operator", tenant)[1])
        admin = operator_client(server, admin_token)
        refused = wait_for_run(operator, submit(operator, tenant.project_id, task)["id"], timeout=120)
        allowed = wait_for_run(admin, submit(admin, tenant.project_id, task)["id"], timeout=120)

    assert stranger.status_code == 409, stranger.text
    assert person.status_code in (401, 403), person.text
    assert refused["status"] == "failed"
    (failed,) = refused["tasks"]
    assert "needs a project admin behind the run" in failed["error"] and "operator-" in failed["error"]
    assert "Put the task in a job" in failed["error"]
    assert allowed["status"] == "succeeded", allowed
    assert allowed["tasks"][0]["result"]["pushed"] == 5 and om.store.writes == []


def test_the_engine_reports_each_difference_and_the_diff(tmp_path: Path) -> None:
    """The engine alone, on the agent's real context: the control room's answer becomes events, an artifact
    and the result; a refusal becomes the task's error."""
    answer = {
        "dry_run": True, "service": "lakehouse", "tables": 2, "pushed": 1, "pulled": 1, "warnings": ["owner x: none"],
        "changes": [
            {"direction": "push", "action": "create table", "target": "lakehouse.a.b.c", "fields": ["columns"]},
            {"direction": "pull", "action": "pull", "target": "lakehouse.a.b.d", "fields": ["openmetadata"]},
        ],
    }  # fmt: skip
    asked: list[tuple[str, Mapping[str, Any]]] = []

    def ask(operation: str, payload: Mapping[str, Any]) -> Mapping[str, Any]:
        asked.append((operation, payload))
        return answer

    def refuse(operation: str, payload: Mapping[str, Any]) -> Mapping[str, Any]:
        raise Forbidden("POST /tasks/x/catalog-sync: 403 Forbidden: needs a project admin", status=403)

    with ContextFactory(tmp_path) as make_context:
        context = make_context({"key": "diff", "engine": "catalog_sync", "dry_run": True}, ask=ask)
        result = CatalogSyncEngine().run(context)
        refused = make_context({"key": "sync", "engine": "catalog_sync"}, ask=refuse)
        with pytest.raises(EngineError, match=r"refused the openmetadata sync: .*needs a project admin"):
            CatalogSyncEngine().run(refused)

        assert asked == [("catalog-sync", {"catalog": "openmetadata", "dry_run": True})]
        assert result.outcome == "succeeded"
        assert result.result["changes"] == [
            "push create table lakehouse.a.b.c (columns)", "pull pull lakehouse.a.b.d (openmetadata)"
        ]  # fmt: skip
        assert [e.message for e in context.events_of("catalog_sync.change")] == result.result["changes"]
        assert [e.level for e in context.events_of("catalog_sync.warning")] == ["warning"]
        assert json.loads(context.artifact("catalog-sync.json").path.read_text()) == answer
