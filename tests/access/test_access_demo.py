"""The demo data shows access policies: group analysts (the demo analyst), the demo customers table with
email tagged pii, and a partial mask of email for the group, so `make run` has something to show."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import psycopg

from control_room.db.migrate import migrate
from control_room.services import access_policies
from control_room.services.demo import DEMO_ANALYST_EMAIL, DEMO_PROJECT_ID, load_demo_data


def test_the_demo_masks_customers_email_for_analysts(fresh_database: Callable[[], str]) -> None:
    url = fresh_database()
    migrate(url)
    assert load_demo_data(url) is True

    async def ask() -> access_policies.Verdict:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            return await access_policies.simulate(
                conn, project_id=uuid.UUID(DEMO_PROJECT_ID), principal_kind="user", principal=DEMO_ANALYST_EMAIL,
                dataset="demo_customers", column="email",
            )  # fmt: skip

    verdict = asyncio.run(ask())
    assert verdict.allowed and verdict.mask == "partial"
    assert 'masked (partial) by policy "mask-customer-email"' in verdict.reason
    with psycopg.connect(url) as conn:
        members = conn.execute(
            "select m.member from ops.principal_group_members m join ops.principal_groups g on g.id = m.group_id "
            "where g.name = 'analysts'"
        ).fetchall()
        runs = conn.execute("select count(*) from ops.runs where idempotency_key = 'demo-customers-duckdb'").fetchone()
    assert members == [(DEMO_ANALYST_EMAIL,)] and runs == (1,)
