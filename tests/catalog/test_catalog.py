"""The catalog's services on real Postgres: search over name, column, description, tag and owner with
keyset pages; a dataset's page (schema, freshness, row count, quality, neighbours, runs) and its schema
change history recorded between reports; visibility through RLS."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
import pytest

from control_room.services import catalog, lineage
from control_room.services.auth import ServicePrincipal, UserPrincipal, scoped
from control_room.services.errors import NotFound
from tests.integration.factories import Tenant, claim, make_executor, make_tenant, submit, task

T = TypeVar("T")
NS = "duckdb:///srv/lake/warehouse.duckdb"


def run_async(database_url: str, work: Callable[[psycopg.AsyncConnection], Awaitable[T]]) -> T:
    async def main() -> T:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            return await work(conn)

    return asyncio.run(main())


def claimed(db: psycopg.Connection, tenant: Tenant) -> dict[str, Any]:
    pool = f"cat-{uuid.uuid4().hex[:8]}"
    executor = make_executor(db, tenant, pool=pool, engines=("dbt",))
    run_id = submit(db, tenant, [task("build", "dbt", pool=pool)])
    (row,) = claim(db, executor, engines=["dbt"])
    return {"run_id": run_id, "task_id": row["task_id"], "lease": row["lease_token"]}


def column(name: str, type_: str, description: str | None = None) -> dict[str, str]:
    return {"name": name, "type": type_, **({"description": description} if description else {})}


def report(database_url: str, work: dict[str, Any], datasets: list[dict[str, Any]], **rest: Any) -> None:
    async def go(conn: psycopg.AsyncConnection) -> None:
        await lineage.report_lineage(
            conn,
            task_id=work["task_id"],
            lease_token=work["lease"],
            datasets=datasets,
            edges=rest.get("edges", []),
            openlineage_events=rest.get("events", []),
        )

    run_async(database_url, go)


def orders(columns: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "namespace": NS,
        "name": "warehouse.main.fct_orders",
        "kind": "model",
        "columns": columns,
        "owner": "finance@shop.example",
        "description": "One row per order.",
        "metadata": {"tags": ["finance"], "tests": ["test.shop.not_null_fct_orders_order_id"]},
    }


def stg() -> dict[str, Any]:
    return {"namespace": NS, "name": "warehouse.main.stg_orders", "kind": "model",
            "columns": [column("order_id", "INTEGER")]}  # fmt: skip


def complete_event(run_id: str, rows: int) -> dict[str, Any]:
    return {
        "eventType": "COMPLETE",
        "eventTime": "2026-12-03T10:00:05Z",
        "producer": "urn:test",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": run_id},
        "job": {"namespace": "lakehouse/shop", "name": "model.shop.fct_orders"},
        "inputs": [{"namespace": NS, "name": "warehouse.main.stg_orders"}],
        "outputs": [
            {
                "namespace": NS,
                "name": "warehouse.main.fct_orders",
                "outputFacets": {
                    "outputStatistics": {"_producer": "urn:test", "_schemaURL": "urn:x", "rowCount": rows}
                },
            }
        ],
    }


@pytest.fixture
def shop(db: psycopg.Connection, database_url: str) -> dict[str, Any]:
    """One tenant whose dbt build reported stg_orders -> fct_orders, a test result and a COMPLETE event."""
    tenant = make_tenant(db)
    first = claimed(db, tenant)
    report(
        database_url,
        first,
        [stg(), orders([column("order_id", "INTEGER", "The order key."), column("amount", "INTEGER")])],
        edges=[{"upstream": {"namespace": NS, "name": "warehouse.main.stg_orders"},
                "downstream": {"namespace": NS, "name": "warehouse.main.fct_orders"},
                "job_name": "model.shop.fct_orders"}],
        events=[complete_event(str(uuid.uuid4()), 8)],
    )  # fmt: skip
    db.execute(
        "insert into ops.events (run_id, task_id, attempt, seq, type, level, message, data) "
        "values (%s, %s, 1, 1000, 'dbt.node_finished', 'error', 'test failed', %s)",
        (first["run_id"], first["task_id"], json.dumps({
            "unique_id": "test.shop.not_null_fct_orders_order_id", "name": "not_null_fct_orders_order_id",
            "status": "fail", "failures": 2})),
    )  # fmt: skip
    return {"tenant": tenant, "first": first}


def dataset_id(db: psycopg.Connection, tenant: Tenant, name: str) -> uuid.UUID:
    row = db.execute(
        "select id from ops.datasets where project_id = %s and name = %s", (tenant.project_id, name)
    ).fetchone()
    assert row
    return uuid.UUID(str(row[0]))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("fct_", ["warehouse.main.fct_orders"]),  # name
        ("AMOUNT", ["warehouse.main.fct_orders"]),  # a column, case-insensitively
        ("order key", ["warehouse.main.fct_orders"]),  # a column's description
        ("one row per", ["warehouse.main.fct_orders"]),  # the description
        ("finance", ["warehouse.main.fct_orders"]),  # a tag and the owner
        ("order_id", ["warehouse.main.fct_orders", "warehouse.main.stg_orders"]),  # both have the column
        ("100%", []),  # wildcards match themselves
    ],
)
def test_search_finds_datasets_by_name_column_description_tag_or_owner(
    shop: dict[str, Any], database_url: str, text: str, expected: list[str]
) -> None:
    project = str(shop["tenant"].project_id)

    rows, cursor = run_async(database_url, lambda c: catalog.search_datasets(c, project=project, text=text))

    assert [r["name"] for r in rows] == expected
    assert cursor is None


def test_search_pages_by_keyset_without_repeats(db: psycopg.Connection, database_url: str) -> None:
    tenant = make_tenant(db)
    work = claimed(db, tenant)
    names = [f"warehouse.main.t{i:02d}" for i in range(7)]
    report(database_url, work, [{"namespace": NS, "name": n, "kind": "table"} for n in reversed(names)])
    project = str(tenant.project_id)
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        rows, cursor = run_async(
            database_url,
            lambda c, after=cursor: catalog.search_datasets(
                c, project=project, text="warehouse", cursor=after, limit=3
            ),
        )
        seen += [r["name"] for r in rows]
        pages += 1
        if cursor is None:
            break
    assert seen == names and pages == 3


def test_the_dataset_page_has_schema_freshness_rows_quality_neighbours_and_runs(
    shop: dict[str, Any], db: psycopg.Connection, database_url: str
) -> None:
    tenant, first = shop["tenant"], shop["first"]
    target = dataset_id(db, tenant, "warehouse.main.fct_orders")

    page = run_async(database_url, lambda c: catalog.dataset_page(c, target))

    assert [c["name"] for c in page["columns"]] == ["order_id", "amount"]
    assert page["columns"][0]["description"] == "The order key."
    assert page["last_run_id"] == first["run_id"] and page["last_task_key"] == "build"
    assert page["row_count"] == 8
    assert page["last_write"]["job_name"] == "model.shop.fct_orders"
    assert [(q["name"], q["status"], q["failures"]) for q in page["quality"]] == [
        ("not_null_fct_orders_order_id", "fail", 2)
    ]
    assert [(u["name"], u["job_name"]) for u in page["upstream"]] == [
        ("warehouse.main.stg_orders", "model.shop.fct_orders")
    ]
    assert page["upstream_count"] == 1 and page["downstream_count"] == 0
    assert [(r["access"], r["run_id"]) for r in page["runs"]] == [("wrote", first["run_id"])]
    upstream = run_async(
        database_url, lambda c: catalog.dataset_page(c, dataset_id(db, tenant, "warehouse.main.stg_orders"))
    )
    assert [r["access"] for r in upstream["runs"]] == ["read"] and upstream["downstream_count"] == 1


def test_a_changed_schema_is_recorded_as_an_event_with_its_run(
    shop: dict[str, Any], db: psycopg.Connection, database_url: str
) -> None:
    tenant = shop["tenant"]
    second = claimed(db, tenant)
    # amount retyped, order_id kept (other case), status added; a report without columns changes nothing.
    report(database_url, second, [orders([column("ORDER_ID", "INTEGER"), column("amount", "DECIMAL(10,2)"),
                                          column("status", "VARCHAR")])])  # fmt: skip
    third = claimed(db, tenant)
    report(database_url, third, [{**orders([]), "columns": []}])
    fourth = claimed(db, tenant)
    report(database_url, fourth, [orders([column("order_id", "INTEGER"), column("status", "VARCHAR")])])
    target = dataset_id(db, tenant, "warehouse.main.fct_orders")

    page = run_async(database_url, lambda c: catalog.dataset_page(c, target))

    assert [(c["run_id"], c["changes"]) for c in page["schema_changes"]] == [
        (fourth["run_id"], [{"column": "amount", "change": "removed", "old_type": "DECIMAL(10,2)"}]),
        (
            second["run_id"],
            [
                {"column": "amount", "change": "retyped", "old_type": "INTEGER", "new_type": "DECIMAL(10,2)"},
                {"column": "status", "change": "added", "new_type": "VARCHAR"},
            ],
        ),
    ]


def test_a_user_sees_only_their_projects_datasets(
    shop: dict[str, Any], db: psycopg.Connection, database_url: str
) -> None:
    outsider_tenant = make_tenant(db)
    user = db.execute(
        "insert into ops.users (email) values (%s) returning id", (f"o-{uuid.uuid4().hex[:6]}@x.example",)
    ).fetchone()
    assert user
    db.execute("insert into ops.project_members (project_id, user_id, role) values (%s, %s, 'viewer')",
               (outsider_tenant.project_id, user[0]))  # fmt: skip
    outsider = UserPrincipal(user_id=user[0], email="o@x.example")
    target = dataset_id(db, shop["tenant"], "warehouse.main.fct_orders")

    async def look(conn: psycopg.AsyncConnection) -> tuple[list[dict[str, Any]], str]:
        async with scoped(conn, outsider):
            rows, _ = await catalog.search_datasets(conn, text="fct_orders")
            try:
                await catalog.dataset_page(conn, target)
            except NotFound as exc:
                return rows, exc.field or ""
        return rows, "visible"

    rows, refused = run_async(database_url, look)
    assert rows == [] and refused == "dataset_id"


def test_ingested_lineage_joins_the_catalog(db: psycopg.Connection, database_url: str) -> None:
    tenant = make_tenant(db)
    event = complete_event(str(uuid.uuid4()), 42)
    event["job"] = {"namespace": "airflow", "name": "load_orders"}

    stored = run_async(
        database_url,
        lambda c: catalog.ingest_openlineage(c, ServicePrincipal(), event, project=str(tenant.project_id)),
    )

    assert stored["stored"] is True
    page = run_async(
        database_url, lambda c: catalog.dataset_page(c, dataset_id(db, tenant, "warehouse.main.fct_orders"))
    )
    assert page["row_count"] == 42 and page["runs"][0]["run_id"] is None
    assert page["runs"][0]["job_namespace"] == "airflow"
