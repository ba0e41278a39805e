"""The OpenMetadata connector against the protocol-faithful test server (tests/openmetadata_server): push of
tables, columns, owners and lineage; pull of owners, tags, glossary terms and descriptions; the dry-run
diff; an idempotent second run; the admin role. Plus an opt-in run against a real server
(``OPENMETADATA_URL`` and ``OPENMETADATA_TOKEN``; deselected, not skipped, while unset)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from control_room.services import catalog, openmetadata
from control_room.services.auth import ServicePrincipal, UserPrincipal
from control_room.services.errors import Forbidden, Invalid
from control_room.services.openmetadata_client import OpenMetadataClient, OpenMetadataError
from tests.catalog.test_catalog import run_async
from tests.integration.factories import Tenant, make_tenant
from tests.live import Provisioner, live_server
from tests.openmetadata_server.server import OpenMetadataTestServer

NS = "postgres://warehouse.shop:5432"
FACET = {"_producer": "urn:test", "_schemaURL": "https://openlineage.io/spec/facets/x.json"}
SERVICE = "lakehouse"
LAKEHOUSE = str(Path(sys.executable).with_name("lakehouse"))


def _type(column: str) -> str:
    return "BIGINT" if column.endswith("id") else "DOUBLE"


def _event(job: str, source: str, target: str, columns: dict[str, str], owner: str | None = None,
           source_schema: bool = False) -> dict[str, Any]:  # fmt: skip
    """An OpenLineage COMPLETE: ``source`` -> ``target`` with schema, documentation, owner, column lineage
    (and the source's schema when it is a table no other event describes)."""
    facets: dict[str, Any] = {
        "schema": {**FACET, "fields": [{"name": c, "type": _type(c)} for c in columns]},
        "documentation": {**FACET, "description": f"{target} as the job {job} writes it"},
        "columnLineage": {**FACET, "fields": {
            c: {"inputFields": [{"namespace": NS, "name": source, "field": s}]} for c, s in columns.items()}},
    }  # fmt: skip
    if owner:
        facets["ownership"] = {**FACET, "owners": [{"name": owner}]}
    return {
        "eventType": "COMPLETE", "eventTime": "2026-12-04T10:00:00Z", "run": {"runId": str(uuid.uuid4())},
        "producer": "urn:test", "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "job": {"namespace": "airflow", "name": job},
        "inputs": [{"namespace": NS, "name": source, "facets": {"schema": {**FACET, "fields": [
            {"name": s, "type": _type(s)} for s in columns.values()]}}
            if source_schema else {}}],
        "outputs": [{"namespace": NS, "name": target, "facets": facets}],
    }  # fmt: skip


@pytest.fixture
def om() -> Iterator[OpenMetadataTestServer]:
    server = OpenMetadataTestServer()
    server.add_service(SERVICE)
    server.add_user("finance", "finance@shop.example")
    server.add_user("steward", "steward@shop.example")
    yield server
    server.close()


@pytest.fixture
def shop(db: psycopg.Connection, database_url: str) -> tuple[Tenant, UserPrincipal]:
    """A project with raw.orders -> clean.orders -> mart.revenue (column lineage, an owner) and its admin."""
    tenant = make_tenant(db)
    for event in (
        _event("clean_orders", "shop.raw.orders", "shop.clean.orders", {"order_id": "id", "amount": "amount_usd"},
               owner="finance@shop.example", source_schema=True),
        _event("revenue", "shop.clean.orders", "shop.mart.revenue", {"total": "amount"}),
    ):  # fmt: skip
        run_async(
            database_url,
            lambda c, e=event: catalog.ingest_openlineage(c, ServicePrincipal(), e, project=str(tenant.project_id)),
        )
    email = f"admin-{uuid.uuid4().hex[:8]}@shop.example"
    (user_id,) = db.execute("insert into ops.users (email) values (%s) returning id", (email,)).fetchone() or ()
    db.execute(
        "insert into ops.project_members (project_id, user_id, role) values (%s, %s, 'admin')",
        (tenant.project_id, user_id),
    )
    return tenant, UserPrincipal(user_id=user_id, email=email)


def sync(
    database_url: str,
    server_url: str,
    token: str,
    tenant: Tenant,
    principal: Any,
    *,
    dry_run: bool,
    service: str = SERVICE,
) -> dict[str, Any]:
    async def go(conn: psycopg.AsyncConnection) -> dict[str, Any]:
        async with OpenMetadataClient(server_url, token) as client:
            report = await openmetadata.sync_openmetadata(
                conn, principal, client, project=str(tenant.project_id), service=service, dry_run=dry_run
            )
        return report.as_dict()

    return run_async(database_url, go)


def changes(report: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(c["direction"], c["action"], c["target"]) for c in report["changes"]}


def test_a_dry_run_lists_the_differences_and_writes_nothing(
    om: OpenMetadataTestServer, shop: tuple[Tenant, UserPrincipal], database_url: str
) -> None:
    tenant, admin = shop

    report = sync(database_url, om.url, om.token, tenant, admin, dry_run=True)

    assert report["dry_run"] and report["tables"] == 3
    assert changes(report) == {
        ("push", "create table", "lakehouse.shop.raw.orders"),
        ("push", "create table", "lakehouse.shop.clean.orders"),
        ("push", "create table", "lakehouse.shop.mart.revenue"),
        ("push", "add lineage", "lakehouse.shop.raw.orders -> lakehouse.shop.clean.orders"),
        ("push", "add lineage", "lakehouse.shop.clean.orders -> lakehouse.shop.mart.revenue"),
    }
    clean = next(c for c in report["changes"] if c["target"] == "lakehouse.shop.clean.orders")
    assert clean["fields"] == ["columns", "description", "owners"]
    assert om.store.writes == [] and om.store.tables == {}


def test_push_then_pull_round_trip_and_a_second_run_changes_nothing(
    om: OpenMetadataTestServer, shop: tuple[Tenant, UserPrincipal], database_url: str, db: psycopg.Connection
) -> None:
    tenant, admin = shop

    first = sync(database_url, om.url, om.token, tenant, admin, dry_run=False)

    # Pushed: three tables with typed columns, the description, the owner; two lineage edges with columns.
    assert first["pushed"] == 5 and first["warnings"] == []
    clean = om.store.tables["lakehouse.shop.clean.orders"]
    assert [(c["name"], c["dataType"]) for c in clean["columns"]] == [("order_id", "BIGINT"), ("amount", "DOUBLE")]
    assert clean["description"] == "shop.clean.orders as the job clean_orders writes it"
    assert [o["name"] for o in clean["owners"]] == ["finance"]
    raw = om.store.tables["lakehouse.shop.raw.orders"]
    assert sorted(
        (p["toColumn"], p["fromColumns"]) for p in om.store.lineage[(raw["id"], clean["id"])]["columnsLineage"]
    ) == [
        ("lakehouse.shop.clean.orders.amount", ["lakehouse.shop.raw.orders.amount_usd"]),
        ("lakehouse.shop.clean.orders.order_id", ["lakehouse.shop.raw.orders.id"]),
    ]
    # The first run pulls what OpenMetadata now holds, so the second has nothing to do on either side.
    writes = len(om.store.writes)
    second = sync(database_url, om.url, om.token, tenant, admin, dry_run=False)
    assert second["changes"] == [] and len(om.store.writes) == writes

    # A steward curates in OpenMetadata: tags, a glossary term, an owner and descriptions come back.
    om.curate(
        "lakehouse.shop.mart.revenue",
        description="Revenue per day, curated.",
        owners=["steward"],
        tags=["PII.None", "Tier.Tier1"],
        glossary_terms=["Business.Revenue"],
        column_descriptions={"total": "Sum of order amounts in USD."},
    )
    om.curate("lakehouse.shop.clean.orders", description="Orders without test data (steward's words).")
    diff = sync(database_url, om.url, om.token, tenant, admin, dry_run=True)
    assert changes(diff) == {
        ("pull", "pull", "lakehouse.shop.mart.revenue"),
        ("pull", "pull", "lakehouse.shop.clean.orders"),
    }
    pulled = sync(database_url, om.url, om.token, tenant, admin, dry_run=False)
    assert pulled["pulled"] == 2 and pulled["pushed"] == 0
    rows = {
        r[0]: r[1:]
        for r in db.execute(
            "select name, owner, description, metadata -> 'openmetadata' from ops.datasets where project_id = %s",
            (tenant.project_id,),
        ).fetchall()
    }
    owner, description, revenue = rows["shop.mart.revenue"]
    assert revenue["tags"] == ["PII.None", "Tier.Tier1"] and revenue["glossary_terms"] == ["Business.Revenue"]
    assert revenue["owners"] == ["steward"] and revenue["columns"]["total"]["description"].startswith("Sum of")
    assert owner == "steward"  # the engines named no owner: OpenMetadata's fills it
    assert description == "shop.mart.revenue as the job revenue writes it"  # the engine's own stays
    assert rows["shop.clean.orders"][0] == "finance@shop.example"
    assert rows["shop.clean.orders"][2]["description"] == "Orders without test data (steward's words)."
    # Pulled tags and glossary terms are found by the catalog's search.
    found, _ = run_async(
        database_url, lambda c: catalog.search_datasets(c, project=str(tenant.project_id), text="business.reven")
    )
    assert [d["name"] for d in found] == ["shop.mart.revenue"]
    # The steward's description survives our next push (a bot never overwrites it), and all is quiet.
    assert sync(database_url, om.url, om.token, tenant, admin, dry_run=False)["changes"] == []
    assert om.store.tables["lakehouse.shop.clean.orders"]["description"].endswith("(steward's words).")
    audited = db.execute(
        "select count(*) from ops.audit_log where project_id = %s and action = 'openmetadata_pull'",
        (tenant.project_id,),
    ).fetchone()
    assert audited == (3 + 2,)  # three datasets on the first run, two after the curation


def test_an_unknown_owner_is_a_warning_and_a_missing_service_says_what_to_do(
    om: OpenMetadataTestServer, shop: tuple[Tenant, UserPrincipal], database_url: str
) -> None:
    tenant, admin = shop
    del om.store.users["finance"]

    report = sync(database_url, om.url, om.token, tenant, admin, dry_run=False)

    assert report["warnings"] == ["owner finance@shop.example: no OpenMetadata user named finance; not pushed"]
    assert om.store.tables["lakehouse.shop.clean.orders"]["owners"] == []
    del om.store.services[SERVICE]
    with pytest.raises(Invalid, match="no database service named lakehouse: create one"):
        sync(database_url, om.url, om.token, tenant, admin, dry_run=True)


def test_only_project_admins_sync_and_a_wrong_token_is_named(
    om: OpenMetadataTestServer, shop: tuple[Tenant, UserPrincipal], database_url: str, db: psycopg.Connection
) -> None:
    tenant, admin = shop
    db.execute("update ops.project_members set role = 'operator' where user_id = %s", (admin.user_id,))

    with pytest.raises(Forbidden, match="admin role"):
        sync(database_url, om.url, om.token, tenant, admin, dry_run=True)
    other = make_tenant(db)
    with pytest.raises(OpenMetadataError, match=r"HTTP 401.*LAKEHOUSE_OPENMETADATA_TOKEN"):
        sync(database_url, om.url, "wrong-token", other, ServicePrincipal(), dry_run=True)


@pytest.mark.real_openmetadata
def test_a_round_trip_against_a_real_openmetadata(
    shop: tuple[Tenant, UserPrincipal], database_url: str, db: psycopg.Connection
) -> None:
    """Needs OPENMETADATA_URL, OPENMETADATA_TOKEN (a bot's JWT) and a database service named
    OPENMETADATA_SERVICE (default lakehouse) on that server."""
    tenant, admin = shop
    url, token = os.environ["OPENMETADATA_URL"], os.environ["OPENMETADATA_TOKEN"]
    service = os.environ.get("OPENMETADATA_SERVICE", SERVICE)

    first = sync(database_url, url, token, tenant, admin, dry_run=False, service=service)
    second = sync(database_url, url, token, tenant, admin, dry_run=False, service=service)

    assert first["tables"] == 3
    # New tables and lineage on a fresh server; nothing to push if an earlier run put them there.
    assert {c["action"] for c in first["changes"]} >= {"create table", "add lineage"} or first["pushed"] == 0
    assert [c for c in second["changes"] if c["direction"] == "push"] == []


# The faces: CLI and API ------------------------------------------------------------------------------


def test_the_cli_syncs_and_says_what_to_set_when_unconfigured(
    om: OpenMetadataTestServer, shop: tuple[Tenant, UserPrincipal], database_url: str
) -> None:
    tenant, _ = shop
    env = {**os.environ, "LAKEHOUSE_DATABASE_URL": database_url}
    command = [LAKEHOUSE, "catalog", "openmetadata-sync", "--project", str(tenant.project_id)]
    configured = {**env, "LAKEHOUSE_OPENMETADATA_URL": om.url, "LAKEHOUSE_OPENMETADATA_TOKEN": om.token}

    unconfigured = subprocess.run([*command, "--dry-run"], capture_output=True, text=True, env=env, timeout=120)
    dry = subprocess.run([*command, "--dry-run"], capture_output=True, text=True, env=configured, timeout=120)
    real = subprocess.run(command, capture_output=True, text=True, env=configured, timeout=120)

    assert unconfigured.returncode == 2 and "set LAKEHOUSE_OPENMETADATA_URL" in unconfigured.stderr
    assert dry.returncode == 0, dry.stderr
    assert "3 tables under service lakehouse: would push 5 and pull 0 changes" in dry.stdout
    assert "push  create table  lakehouse.shop.clean.orders (columns, description, owners)" in dry.stdout
    assert real.returncode == 0, real.stderr
    assert "did push 5 and pull 3 changes" in real.stdout and len(om.store.tables) == 3


def test_the_api_lets_project_admins_sync_and_refuses_viewers(
    om: OpenMetadataTestServer, shop: tuple[Tenant, UserPrincipal], database_url: str, tmp_path: Path
) -> None:
    tenant, _ = shop
    provision = Provisioner(database_url)
    admin_token = provision.user_token("admin", tenant)[1]
    viewer_token = provision.user_token("viewer", tenant)[1]

    with live_server(database_url, tmp_path, openmetadata_url=om.url, openmetadata_token=om.token) as server:
        path = f"{server.base_url}/api/v1/catalog/openmetadata/sync"

        def post(token: str, **params: Any) -> httpx.Response:
            params = {"project": str(tenant.project_id), **params}
            return httpx.post(path, params=params, headers={"Authorization": f"Bearer {token}"}, timeout=60)

        dry = post(admin_token)
        viewer = post(viewer_token, dry_run="false")
        real = post(admin_token, dry_run="false")
        again = post(admin_token, dry_run="false")

    assert dry.status_code == 200, dry.text
    assert dry.json()["dry_run"] is True and dry.json()["pushed"] == 5
    assert viewer.status_code == 403 and "admin" in viewer.json()["detail"]
    assert real.status_code == 200 and real.json()["pushed"] == 5 and real.json()["pulled"] == 3
    assert again.status_code == 200 and again.json()["changes"] == []
