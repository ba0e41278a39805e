"""Access policies on real Postgres: decisions with reasons (deny wins, grants, open datasets, masks by tag,
row filters), the simulator, who may edit, the executor's view of a task's policies (fenced by the lease),
and metadata visibility in the catalog."""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg
import pytest

from control_room.services import access_policies, catalog
from control_room.services.access_policies import PrincipalKind
from control_room.services.auth import scoped
from control_room.services.errors import LeaseLost
from tests.access.world import Shop, govern, make_shop, run_async


@pytest.fixture
def shop(db: psycopg.Connection) -> Shop:
    world = make_shop(db)
    govern(db, world)
    return world


def decisions_of(database_url: str, shop: Shop, kind: PrincipalKind, name: str) -> dict[str, dict[str, Any]]:
    async def go(conn: psycopg.AsyncConnection) -> list[dict[str, Any]]:
        return await access_policies.decisions(
            conn, project_id=shop.tenant.project_id, principal_kind=kind, principal=name
        )

    return {d["name"].split(".")[-1]: d for d in run_async(database_url, go)}


def test_deny_wins_grants_open_and_masks_by_tag(shop: Shop, database_url: str) -> None:
    analyst = decisions_of(database_url, shop, "user", shop.analyst.email)
    customers = analyst["customers"]
    assert customers["read"] is True and "analysts-read-customers" in customers["reasons"]["read"]
    assert customers["write"] is False and "no policy grants write" in customers["reasons"]["write"]
    assert customers["masks"] == [{"policy": "mask-pii", "column": "email", "kind": "hash", "expression": None}]
    assert [f["policy"] for f in customers["row_filters"]] == ["eu-only"]
    assert analyst["orders"]["read"] and analyst["orders"]["write"]
    assert "open to the members" in analyst["orders"]["reasons"]["read"]
    assert analyst["payroll"]["read"] is False and "payroll-closed" in analyst["payroll"]["reasons"]["read"]
    intern = decisions_of(database_url, shop, "user", shop.intern.email)
    assert intern["customers"]["read"] is False and intern["customers"]["masks"] == []
    finance = decisions_of(database_url, shop, "user", "finance@shop.example")
    assert finance["payroll"]["write"] is True and "owns the dataset" in finance["payroll"]["reasons"]["write"]
    admin = decisions_of(database_url, shop, "user", shop.admin.email)
    assert admin["customers"]["admin"] is True and "org admin" in admin["customers"]["reasons"]["admin"]


def test_the_simulator_says_why(shop: Shop, database_url: str) -> None:
    async def go(conn: psycopg.AsyncConnection) -> list[access_policies.Verdict]:
        async with scoped(conn, shop.admin):
            project = shop.tenant.project_id
            return [
                await access_policies.simulate(conn, project_id=project, principal_kind="group", principal="analysts",
                                               dataset="main.customers", column="email"),
                await access_policies.simulate(conn, project_id=project, principal_kind="group", principal="analysts",
                                               dataset="payroll"),
                await access_policies.simulate(conn, project_id=project, principal_kind="user",
                                               principal=shop.intern.email, dataset="customers", privilege="write"),
            ]  # fmt: skip

    email, payroll, intern = run_async(database_url, go)
    assert email.allowed and email.mask == "hash" and 'masked (hash) by policy "mask-pii"' in email.reason
    assert "eu-only" in email.reason
    assert not payroll.allowed and "payroll-closed" in payroll.reason
    assert not intern.allowed and "no policy grants write" in intern.reason


def test_only_admins_and_owners_edit_policies_and_every_change_is_audited(shop: Shop, database_url: str) -> None:
    body = {"name": "intern-read", "kind": "grant", "target_kind": "dataset", "target": str(shop.datasets["orders"]),
            "principal_kind": "user", "principal": shop.intern.email, "privilege": "read"}  # fmt: skip

    async def attempt(conn: psycopg.AsyncConnection, who: Any, fields: dict[str, Any]) -> tuple[str, str]:
        try:
            async with scoped(conn, who):
                await access_policies.save_policy(conn, org_id=shop.tenant.org_id, body=fields)
        except psycopg.Error as exc:
            return exc.sqlstate or "", exc.diag.column_name or ""
        return "saved", ""

    async def go(conn: psycopg.AsyncConnection) -> tuple[str, str, list[dict[str, Any]]]:
        refused, _ = await attempt(conn, shop.intern, body)
        _, invalid = await attempt(conn, shop.admin, {**body, "privilege": "all"})
        saved, _ = await attempt(conn, shop.admin, body)
        assert saved == "saved"
        async with scoped(conn, shop.admin):
            trail = await access_policies.audit(conn, org_id=shop.tenant.org_id)
        return refused, invalid, trail

    refused, invalid, trail = run_async(database_url, go)
    assert refused == "LH403" and invalid == "privilege"
    assert trail[0]["name"] == "intern-read" and trail[0]["action"] == "create"
    assert trail[0]["actor"] == shop.admin.email
    assert {"analysts", "mask-pii", "payroll-closed"} <= {t["name"] for t in trail}


def test_the_page_shows_editors_to_admins_and_dataset_owners_only(
    shop: Shop, db: psycopg.Connection, database_url: str
) -> None:
    db.execute("update ops.datasets set owner = %s where id = %s", (shop.intern.email, shop.datasets["orders"]))

    async def go(conn: psycopg.AsyncConnection) -> dict[str, tuple[bool, bool]]:
        found = {}
        for name, who in (("admin", shop.admin), ("analyst", shop.analyst), ("intern", shop.intern)):
            async with scoped(conn, who):
                rights = await access_policies.editor_rights(conn, org_id=shop.tenant.org_id)
            found[name] = (rights.edits_policies, rights.org_admin)
        return found

    # The owner (the intern) edits policies but not groups; the analyst edits nothing.
    assert run_async(database_url, go) == {"admin": (True, True), "analyst": (False, False), "intern": (True, False)}

    async def forged_group_save(conn: psycopg.AsyncConnection) -> str:
        try:
            async with scoped(conn, shop.intern):
                await access_policies.save_group(conn, org_id=shop.tenant.org_id, name="analysts", description="",
                                                 members=[{"kind": "user", "name": shop.intern.email}])  # fmt: skip
        except psycopg.Error as exc:
            return exc.sqlstate or ""
        return "saved"

    # The page hides the group form from the owner; a forged save is refused in SQL all the same.
    assert run_async(database_url, forged_group_save) == "LH403"


def test_the_executor_gets_the_tasks_restrictions_only_with_its_lease(shop: Shop, database_url: str) -> None:
    async def go(conn: psycopg.AsyncConnection) -> tuple[dict[str, Any], str]:
        found = await access_policies.task_policies(conn, task_id=shop.task_id, lease_token=shop.lease)
        try:
            await access_policies.task_policies(conn, task_id=shop.task_id, lease_token=uuid.uuid4())
        except LeaseLost as exc:
            return found, str(exc)
        return found, "no refusal"

    found, refusal = run_async(database_url, go)
    assert found["principal"] == {"kind": "user", "name": shop.analyst.email}
    assert found["groups"] == ["analysts"]
    restricted = {d["name"]: d for d in found["datasets"]}
    assert set(restricted) == {"warehouse.main.customers", "warehouse.main.payroll"}  # orders is open
    assert restricted["warehouse.main.customers"]["masks"][0]["column"] == "email"
    assert "lease token does not hold task" in refusal


def test_a_template_running_as_a_service_principal_acts_as_it(db: psycopg.Connection, database_url: str) -> None:
    shop = make_shop(db, run_as="nightly-etl")
    govern(db, shop)
    found = run_async(
        database_url, lambda conn: access_policies.task_policies(conn, task_id=shop.task_id, lease_token=shop.lease)
    )
    assert found["principal"] == {"kind": "service_principal", "name": "nightly-etl"}
    customers = next(d for d in found["datasets"] if d["name"].endswith("customers"))
    assert customers["read"] is False and "service principal nightly-etl" in customers["reasons"]["read"]
    template = db.execute("select id from ops.job_templates where org_id = %s", (shop.tenant.org_id,)).fetchone()
    assert template
    with pytest.raises(psycopg.Error, match="run_as"):
        db.execute("select ops.set_job_template_run_as(%s, 'ghost', 'tests')", (template[0],))


def test_the_catalog_hides_what_the_viewer_may_not_read(shop: Shop, database_url: str) -> None:
    async def look(conn: psycopg.AsyncConnection, who: Any) -> list[str]:
        async with scoped(conn, who):
            page = await catalog.search_datasets(conn, project=str(shop.tenant.project_id), text="warehouse")
            return sorted(r["name"].split(".")[-1] for r in page[0])

    assert run_async(database_url, lambda c: look(c, shop.analyst)) == ["customers", "orders"]
    assert run_async(database_url, lambda c: look(c, shop.intern)) == ["orders"]
    assert run_async(database_url, lambda c: look(c, shop.admin)) == ["customers", "orders", "payroll"]


def test_policies_are_validated_naming_the_field(shop: Shop, db: psycopg.Connection) -> None:
    cases = [
        ({"name": "x", "kind": "grant", "target_kind": "dataset", "target": str(uuid.uuid4()), "privilege": "read"},
         "target"),
        ({"name": "x", "kind": "column_mask", "target_kind": "dataset", "target": str(shop.datasets["orders"]),
          "mask_kind": "hash"}, "mask_column"),
        ({"name": "x", "kind": "grant", "target_kind": "tag", "target": "pii", "principal_kind": "group",
          "principal": "nobody", "privilege": "read"}, "principal"),
    ]  # fmt: skip
    for body, field in cases:
        with pytest.raises(psycopg.Error) as caught:
            db.execute(
                "select ops.save_access_policy(%s, null, %s::jsonb, 'tests')", (shop.tenant.org_id, json.dumps(body))
            )
        assert caught.value.diag.column_name == field
