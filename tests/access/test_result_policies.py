"""Query results carry the policies of their source datasets: the rows endpoint's and the previews' check
(services/result_policies.py) on real Postgres. A viewer who may not read a source sees no rows; one whose
policies filter or mask a source sees only results computed as themselves; CTE names are not sources; an
unparseable statement withholds the rows; an org without policies is not checked."""

from __future__ import annotations

import hashlib
import io
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from control_room.services import result_policies
from control_room.services.auth import UserPrincipal, scoped
from control_room.services.errors import Forbidden
from control_room.services.ui_previews import table_page
from tests.access.world import Shop, govern, make_shop, run_async


def record(db: psycopg.Connection, shop: Shop, index: int, sql: str) -> None:
    db.execute(
        "insert into ops.query_history (run_id, task_id, attempt, project_id, statement_index, engine, sql_text, "
        "state, started_at) select t.run_id, t.id, 1, t.project_id, %s, 'duckdb', %s, 'finished', now() "
        "from ops.tasks t where t.id = %s",
        (index, sql, shop.task_id),
    )


def verdicts(database_url: str, shop: Shop, *people: UserPrincipal) -> list[str | None]:
    artifact = {"task_id": shop.task_id}

    async def go(conn: psycopg.AsyncConnection) -> list[str | None]:
        found: list[str | None] = []
        for who in people:
            async with scoped(conn, who):
                found.append(await result_policies.withheld_reason(conn, artifact=artifact))
        return found

    return run_async(database_url, go)


def test_a_result_is_shown_only_to_viewers_its_sources_policies_allow(
    db: psycopg.Connection, database_url: str
) -> None:
    shop = make_shop(db)  # the analyst's run
    govern(db, shop)
    record(db, shop, 1, 'select id, "EMAIL" from Customers c join orders o on o.customer_id = c.id')
    analyst, admin, intern = verdicts(database_url, shop, shop.analyst, shop.admin, shop.intern)
    assert analyst is None and admin is None  # masked as the analyst when it ran; the admin is not restricted
    assert intern is not None and "you may not read dataset warehouse.main.customers" in intern

    record(db, shop, 2, "with payroll as (select 1 as id) select * from payroll")  # a CTE, not the dataset
    assert verdicts(database_url, shop, shop.analyst) == [None]

    record(db, shop, 3, "select salary from main.payroll")
    (analyst,) = verdicts(database_url, shop, shop.analyst)
    assert analyst is not None
    assert (
        'you may not read dataset warehouse.main.payroll, a source of this result (denied by policy "payroll-closed"'
        in analyst
    )

    async def rows_endpoint_check(conn: psycopg.AsyncConnection) -> str:
        async with scoped(conn, shop.analyst):
            with pytest.raises(Forbidden) as refused:
                await result_policies.require_rows_visible(conn, artifact={"task_id": shop.task_id})
        return refused.value.message

    assert "warehouse.main.payroll" in run_async(database_url, rows_endpoint_check)


def test_a_result_computed_as_someone_else_is_withheld_where_the_viewer_is_masked(
    db: psycopg.Connection, database_url: str
) -> None:
    shop = make_shop(db, requester="admin")
    govern(db, shop)
    record(db, shop, 1, "select id, email from warehouse.main.customers")
    analyst, admin = verdicts(database_url, shop, shop.analyst, shop.admin)
    assert admin is None
    assert analyst is not None and "filter or mask dataset warehouse.main.customers" in analyst
    record(db, shop, 2, "select from where (")
    (admin,) = verdicts(database_url, shop, shop.admin)
    assert admin is not None and "cannot be parsed" in admin


def test_an_org_without_policies_is_not_checked(db: psycopg.Connection, database_url: str) -> None:
    shop = make_shop(db)
    record(db, shop, 1, "select salary from payroll")
    assert verdicts(database_url, shop, shop.intern) == [None]


@pytest.mark.parametrize(
    ("sql", "tables"),
    [
        ("select * from a.b.c", {("a", "b", "c")}),
        ('select * from "Main"."Orders" union select * from x', {("main", "orders"), ("x",)}),
        ("with t as (select * from s.u) select * from t", {("s", "u")}),
        ("select (select max(id) from p) from q", {("p",), ("q",)}),
    ],
)
def test_statement_sources(sql: str, tables: set[tuple[str, ...]]) -> None:
    found: Any = result_policies.statement_sources("duckdb", sql)
    assert found.tables == tables and not found.unparsed


def test_masks_apply_to_the_mapped_columns_of_a_table_page() -> None:
    buffer = io.BytesIO()
    pq.write_table(pa.table({"id": [1, 2], "Country_Code": ["GB", None], "name": ["Ada", "Grace"]}), buffer)
    page = table_page(buffer.getvalue(), "parquet", page=0, masks={"country_code": "hash", "name": "partial"})
    assert page.rows == [["1", hashlib.sha256(b"GB").hexdigest(), "Ad****"], ["2", "", "Gr****"]]
    assert [result_policies.mask_value(k, "secret") for k in ("null", "redact", "expression")] == [None, "****", None]
    assert result_policies.mask_value("hash", 42) == hashlib.sha256(b"42").hexdigest()
