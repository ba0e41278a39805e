"""A shop with governed datasets for the access-policy tests: an org admin, an analyst in group analysts,
an intern in no group; customers (email tagged pii), orders (ungoverned) and payroll (denied)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg

from control_room.services.auth import UserPrincipal
from tests.integration.factories import Tenant, claim, make_executor, make_tenant, task

T = TypeVar("T")
NS = "duckdb:///srv/lake/warehouse.duckdb"


@dataclass
class Shop:
    tenant: Tenant
    admin: UserPrincipal
    analyst: UserPrincipal
    intern: UserPrincipal
    datasets: dict[str, uuid.UUID]
    task_id: uuid.UUID
    lease: uuid.UUID


def run_async(database_url: str, work: Callable[[psycopg.AsyncConnection], Awaitable[T]]) -> T:
    async def main() -> T:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            return await work(conn)

    return asyncio.run(main())


def make_user(db: psycopg.Connection, tenant: Tenant, name: str, *, org_role: str | None = None) -> UserPrincipal:
    email = f"{name}-{uuid.uuid4().hex[:6]}@shop.example"
    row = db.execute("insert into ops.users (email) values (%s) returning id", (email,)).fetchone()
    assert row
    db.execute("insert into ops.project_members (project_id, user_id, role) values (%s, %s, 'operator')",
               (tenant.project_id, row[0]))  # fmt: skip
    if org_role:
        db.execute("insert into ops.org_members (org_id, user_id, role) values (%s, %s, %s)",
                   (tenant.org_id, row[0], org_role))  # fmt: skip
    return UserPrincipal(user_id=row[0], email=email)


def columns(*names: str, pii: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    return [{"name": n, "type": "VARCHAR", **({"tags": ["pii"]} if n in pii else {})} for n in names]


def make_shop(db: psycopg.Connection, *, requester: str = "analyst", run_as: str | None = None) -> Shop:
    """The shop, with a task of the requester's run claimed (its lease held); with ``run_as``, the run is of
    a job template running as that (new) service principal."""
    tenant = make_tenant(db)
    admin = make_user(db, tenant, "admin", org_role="admin")
    analyst = make_user(db, tenant, "analyst")
    intern = make_user(db, tenant, "intern")
    people = {"admin": admin, "analyst": analyst, "intern": intern}
    pool = f"acl-{uuid.uuid4().hex[:8]}"
    executor = make_executor(db, tenant, pool=pool, engines=("duckdb",))
    who = people[requester]
    tasks = [task("q", "duckdb", pool=pool, sql="select 1")]
    version = _template_version(db, tenant, run_as, tasks) if run_as else None
    row = db.execute(
        "select run_id from ops.submit_run(%s, 'dev', %s::jsonb, '{}'::jsonb, 'api', %s, %s, p_template_version => %s)",
        (tenant.project_id, json.dumps({"name": "q", "tasks": tasks}), who.user_id, who.email, version),
    ).fetchone()  # fmt: skip
    assert row
    (claimed,) = claim(db, executor, engines=["duckdb"])
    datasets = {}
    for name, cols in (
        ("customers", columns("id", "email", "region", pii=("email",))),
        ("orders", columns("id", "customer_id", "amount")),
        ("payroll", columns("id", "salary")),
    ):
        found = db.execute(
            "insert into ops.datasets (project_id, namespace, name, kind, columns, owner, first_run_id, last_run_id, "
            "last_task_id) values (%s, %s, %s, 'table', %s::jsonb, %s, %s, %s, %s) returning id",
            (tenant.project_id, NS, f"warehouse.main.{name}", json.dumps(cols),
             "finance@shop.example" if name == "payroll" else None, row[0], row[0], claimed["task_id"]),
        ).fetchone()  # fmt: skip
        assert found
        datasets[name] = uuid.UUID(str(found[0]))
    return Shop(tenant, admin, analyst, intern, datasets, claimed["task_id"], claimed["lease_token"])


def _template_version(db: psycopg.Connection, tenant: Tenant, run_as: str, tasks: list[dict[str, Any]]) -> Any:
    db.execute("select ops.save_service_principal(%s, %s, 'robot', 'tests')", (tenant.org_id, run_as))
    template = db.execute(
        "insert into ops.job_templates (org_id, project_id, name) values (%s, %s, 'nightly') returning id",
        (tenant.org_id, tenant.project_id),
    ).fetchone()
    assert template
    db.execute("select ops.set_job_template_run_as(%s, %s, 'tests')", (template[0], run_as))
    version = db.execute(
        "insert into ops.job_template_versions (template_id, version, tasks, content_sha256) "
        "values (%s, 1, %s::jsonb, %s) returning id",
        (template[0], json.dumps(tasks), "a" * 64),
    ).fetchone()
    assert version
    return version[0]


def govern(db: psycopg.Connection, shop: Shop) -> None:
    """Group analysts (the analyst) reads customers with email hashed and EU rows only; payroll is denied
    to everyone but its owner."""
    org = shop.tenant.org_id
    db.execute("select ops.save_principal_group(%s, 'analysts', 'BI', %s::jsonb, 'tests')",
               (org, json.dumps([{"kind": "user", "name": shop.analyst.email}])))  # fmt: skip
    customers = str(shop.datasets["customers"])
    for body in (
        {"name": "analysts-read-customers", "kind": "grant", "target_kind": "dataset", "target": customers,
         "principal_kind": "group", "principal": "analysts", "privilege": "read"},
        {"name": "mask-pii", "kind": "column_mask", "target_kind": "tag", "target": "pii",
         "principal_kind": "group", "principal": "analysts", "mask_kind": "hash"},
        {"name": "eu-only", "kind": "row_filter", "target_kind": "dataset", "target": customers,
         "principal_kind": "group", "principal": "analysts",
         "row_filter": "region = 'EU' or contains(current_principal_groups(), 'auditors')"},
        {"name": "payroll-closed", "kind": "deny", "target_kind": "dataset", "target": str(shop.datasets["payroll"]),
         "principal_kind": "group", "principal": "analysts", "privilege": "read"},
        {"name": "payroll-finance", "kind": "grant", "target_kind": "schema", "target": "warehouse.main.payroll",
         "principal_kind": "user", "principal": "finance@shop.example", "privilege": "write"},
    ):  # fmt: skip
        db.execute("select ops.save_access_policy(%s, null, %s::jsonb, 'tests')", (org, json.dumps(body)))
