"""The policy editor's preview on real Postgres: an org admin's preview run acts as the chosen principal (a
group member, a user) from its first claim, the agent is handed that principal's masks and filters and told
to only read; a non-admin cannot preview as someone else; a claimed or non-SQL run cannot become a preview;
the preview's rows are shown to its editor and withheld from a masked viewer."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest

from control_room.services import access_policies, policy_previews, result_policies
from control_room.services.auth import UserPrincipal, scoped
from control_room.services.errors import Invalid, NotFound
from tests.access.world import Shop, govern, make_shop, run_async
from tests.integration.factories import claim, make_executor


def start(database_url: str, shop: Shop, who: UserPrincipal, kind: str, principal: str, sql: str | None = None) -> Any:
    async def go(conn: psycopg.AsyncConnection) -> Any:
        async with scoped(conn, who):
            return await policy_previews.start_preview(
                conn, org_id=shop.tenant.org_id, dataset="main.customers", principal_kind=kind,  # type: ignore[arg-type]
                principal=principal, sql=sql, environment="dev", requested_by=who.user_id,
                requested_by_name=who.email,
            )  # fmt: skip

    return run_async(database_url, go)


def claimed_policies(db: psycopg.Connection, database_url: str, shop: Shop, run_id: uuid.UUID) -> dict[str, Any]:
    executor = make_executor(db, shop.tenant, engines=("duckdb",))
    (task,) = claim(db, executor, engines=["duckdb"])
    assert task["run_id"] == run_id

    async def go(conn: psycopg.AsyncConnection) -> dict[str, Any]:
        return await access_policies.task_policies(conn, task_id=task["task_id"], lease_token=task["lease_token"])

    return run_async(database_url, go)


def test_an_admins_preview_acts_as_the_group_member_and_only_reads(db: psycopg.Connection, database_url: str) -> None:
    shop = make_shop(db)
    govern(db, shop)
    started = start(database_url, shop, shop.admin, "group", "analysts")
    assert started.sql == 'SELECT * FROM "main"."customers" LIMIT 20'
    policies = claimed_policies(db, database_url, shop, started.run_id)
    assert policies["principal"] == {"kind": "service_principal", "name": "(a member of group analysts)"}
    assert policies["groups"] == ["analysts"] and policies["read_only"] is True
    customers = next(d for d in policies["datasets"] if d["name"] == "warehouse.main.customers")
    assert [m["column"] for m in customers["masks"]] == ["email"]
    assert [f["policy"] for f in customers["row_filters"]] == ["eu-only"]
    payroll = next(d for d in policies["datasets"] if d["name"] == "warehouse.main.payroll")
    assert payroll["read"] is False
    audit = db.execute(
        "select actor, detail from ops.audit_log where entity = 'policy_previews' and entity_id = %s",
        (started.run_id,),
    ).fetchone()
    assert audit and audit[1]["principal"] == "analysts" and audit[1]["name"] == "warehouse.main.customers"


def test_a_preview_as_a_user_takes_their_groups(db: psycopg.Connection, database_url: str) -> None:
    shop = make_shop(db)
    govern(db, shop)
    started = start(database_url, shop, shop.admin, "user", shop.analyst.email.upper(), "select email from customers")
    policies = claimed_policies(db, database_url, shop, started.run_id)
    assert policies["principal"] == {"kind": "user", "name": shop.analyst.email}
    assert policies["groups"] == ["analysts"]


def test_a_non_admin_cannot_preview_as_someone_else(db: psycopg.Connection, database_url: str) -> None:
    shop = make_shop(db)
    govern(db, shop)
    before = db.execute("select count(*) from ops.runs where project_id = %s", (shop.tenant.project_id,)).fetchone()
    with pytest.raises(psycopg.Error, match="only org admins, and the owners of a dataset") as refused:
        start(database_url, shop, shop.analyst, "user", shop.admin.email)
    assert refused.value.sqlstate == "LH403"
    with pytest.raises(NotFound):  # the intern may not even see the dataset
        start(database_url, shop, shop.intern, "group", "analysts")
    after = db.execute("select count(*) from ops.runs where project_id = %s", (shop.tenant.project_id,)).fetchone()
    assert before == after  # the submitted run rolled back with the refusal
    with pytest.raises(Invalid, match="one SELECT query"):
        start(database_url, shop, shop.admin, "group", "analysts", "create table x as select * from customers")
    with pytest.raises(psycopg.Error, match="no group"):
        start(database_url, shop, shop.admin, "group", "nobody")


def test_only_an_unclaimed_sql_run_of_the_caller_becomes_a_preview(db: psycopg.Connection, database_url: str) -> None:
    shop = make_shop(db)  # the analyst's run, its task claimed already
    govern(db, shop)
    run_id = db.execute("select run_id from ops.tasks where id = %s", (shop.task_id,)).fetchone()
    assert run_id
    with pytest.raises(psycopg.Error, match="no agent has claimed"):
        db.execute(
            "select ops.start_policy_preview(%s, %s, 'group', 'analysts')", (run_id[0], shop.datasets["customers"])
        )


def test_the_previews_rows_are_its_editors_not_a_masked_viewers(db: psycopg.Connection, database_url: str) -> None:
    shop = make_shop(db)
    govern(db, shop)
    started = start(database_url, shop, shop.admin, "group", "analysts", "select id, email from customers")
    task = db.execute("select id from ops.tasks where run_id = %s", (started.run_id,)).fetchone()
    assert task
    db.execute(
        "insert into ops.query_history (run_id, task_id, attempt, project_id, statement_index, engine, sql_text, "
        "state, started_at) select t.run_id, t.id, 1, t.project_id, 1, 'duckdb', %s, 'finished', now() "
        "from ops.tasks t where t.id = %s",
        ("select id, email from customers", task[0]),
    )
    artifact = {"task_id": task[0]}

    async def go(conn: psycopg.AsyncConnection) -> list[str | None]:
        found = []
        for who in (shop.admin, shop.analyst, shop.intern):
            async with scoped(conn, who):
                found.append((await result_policies.rows_policy(conn, artifact=artifact)).withheld)
        return found

    admin, analyst, intern = run_async(database_url, go)
    assert admin is None
    assert analyst is not None and "computed as someone else" in analyst
    assert intern is not None and "may not read dataset warehouse.main.customers" in intern
