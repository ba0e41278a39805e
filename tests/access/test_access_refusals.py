"""Refusals in the access audit: a `sql.statement.refused` event carrying a missing privilege is recorded
once (who: the task's principal as the control plane knows it, what, which policy or "no grant", when,
which run and task), listed for org admins (every refusal) and for the refused user (their own)."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from control_room.services import access_policies
from control_room.services.auth import scoped
from tests.access.world import Shop, govern, make_shop, run_async


@pytest.fixture
def shop(db: psycopg.Connection) -> Shop:
    world = make_shop(db)
    govern(db, world)
    return world


def refused(seq: int, dataset: str, privilege: str, reason: str, principal: str = "forged@elsewhere") -> dict[str, Any]:
    # The agent's claim about the principal is ignored: the control plane computes it from the task.
    return {"seq": seq, "type": "sql.statement.refused", "level": "error", "message": f"access denied: {dataset}",
            "data": {"statement_index": 1, "state": "refused", "principal": principal,
                     "access": {"dataset": dataset, "privilege": privilege, "reason": reason}}}  # fmt: skip


def test_refusals_are_recorded_once_and_listed_to_admins_and_the_refused(shop: Shop, db: psycopg.Connection,
                                                                         database_url: str) -> None:  # fmt: skip
    events = [
        refused(10, "warehouse.main.payroll", "read", 'denied by policy "payroll-closed" (deny read)'),
        refused(11, "warehouse.main.orders", "write", "no policy grants write on this dataset to x (none)"),
        {"seq": 12, "type": "sql.statement.refused", "message": "over the scan cap", "data": {"state": "refused"}},
        {"seq": 13, "type": "log", "message": "hello", "data": {"access": {"dataset": "x", "privilege": "read"}}},
    ]
    for _ in range(2):  # a re-sent batch records nothing twice
        db.execute("select ops.append_events(%s, %s, %s::jsonb)", (shop.task_id, shop.lease, json.dumps(events)))

    async def go(conn: psycopg.AsyncConnection) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for name, who in (("admin", shop.admin), ("analyst", shop.analyst), ("intern", shop.intern)):
            async with scoped(conn, who):
                seen[name] = await access_policies.refusals(conn, org_id=shop.tenant.org_id)
                seen[f"{name}-audit"] = await access_policies.audit(conn, org_id=shop.tenant.org_id)
        return seen

    seen = run_async(database_url, go)
    assert [(r["dataset"], r["privilege"], r["policy"]) for r in seen["admin"]] == [
        ("warehouse.main.orders", "write", "no grant"),
        ("warehouse.main.payroll", "read", "payroll-closed"),
    ]
    payroll = seen["admin"][1]
    assert (payroll["principal_kind"], payroll["principal"]) == ("user", shop.analyst.email)
    assert payroll["dataset_id"] == shop.datasets["payroll"]
    assert payroll["task_id"] == shop.task_id and payroll["reason"].startswith("denied by policy")
    assert [r["id"] for r in seen["analyst"]] == [r["id"] for r in seen["admin"]]  # the analyst's own
    assert seen["intern"] == []
    # The audit lists refusals beside the changes, newest first.
    trail = seen["admin-audit"]
    assert trail[0]["entity"] == "access_refusals" and trail[0]["action"] == "refuse"
    assert trail[1]["detail"]["policy"] == "payroll-closed" and trail[1]["actor"] == shop.analyst.email
    assert any(t["entity"] == "access_policies" for t in trail)
    assert not any(t["entity"] == "access_refusals" for t in seen["intern-audit"])


def test_a_service_principal_task_is_recorded_as_the_service_principal(db: psycopg.Connection,
                                                                       database_url: str) -> None:  # fmt: skip
    shop = make_shop(db, run_as="nightly-etl")
    govern(db, shop)
    db.execute("select ops.append_events(%s, %s, %s::jsonb)", (shop.task_id, shop.lease, json.dumps(
        [refused(1, "warehouse.main.payroll", "read", "no policy grants read on this dataset")])))  # fmt: skip

    async def go(conn: psycopg.AsyncConnection) -> list[dict[str, Any]]:
        async with scoped(conn, shop.admin):
            return await access_policies.refusals(conn, org_id=shop.tenant.org_id)

    (row,) = run_async(database_url, go)
    assert (row["principal_kind"], row["principal"], row["policy"]) == ("service_principal", "nightly-etl", "no grant")
