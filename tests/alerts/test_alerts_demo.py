"""The demo: the bundle's demo-run-failed rule fires on the deliberately failing demo job, in the bell."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

import psycopg

from control_room.db.migrate import migrate
from control_room.loops.alerts import ALERTS_CHANNEL, AlertEvaluator
from control_room.services.demo import DEMO_FAILING_KEY, load_demo_data
from tests.integration.factories import claim, finalize


async def _signal(url: str, payload: str) -> int:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        return await AlertEvaluator(base_url="http://demo").on_signal(conn, ALERTS_CHANNEL, payload, datetime.now(UTC))


def test_the_demo_failing_job_fires_demo_run_failed_into_the_bell(fresh_database: Callable[[], str]) -> None:
    url = fresh_database()
    migrate(url)
    assert load_demo_data(url) is True
    with psycopg.connect(url, autocommit=True) as conn:
        admin = conn.execute("insert into ops.users (email) values ('admin@demo.example') returning id").fetchone()
        assert admin
        conn.execute("insert into ops.org_members (org_id, user_id, role) select id, %s, 'admin' from ops.orgs", admin)
        executor = conn.execute(
            "insert into ops.executors (org_id, name, pool, engines, max_concurrency, status) "
            "select id, 'demo-agent', 'default', '{shell}', 100, 'online' from ops.orgs where slug = 'demo' "
            "returning id"
        ).fetchone()
        assert executor
        [run_id] = conn.execute(
            "select id from ops.runs where idempotency_key = %s", (DEMO_FAILING_KEY,)
        ).fetchone() or [None]
        failing = [t for t in claim(conn, executor[0], max_tasks=20) if t["run_id"] == run_id]
        assert len(failing) == 1
        finalize(conn, failing[0]["task_id"], failing[0]["lease_token"], "failed", error="exit 3")
        assert asyncio.run(_signal(url, f"run:{run_id}")) == 1
        rules = conn.execute(
            "select r.name from ops.alert_incidents i join ops.alert_rules r on r.id = i.rule_id where i.run_id = %s",
            (run_id,),
        ).fetchall()
        assert rules == [("demo-run-failed",)]
        [(title,)] = conn.execute("select title from ops.notifications where user_id = %s", admin).fetchall()
        assert "demo failing job" in title and "FIRING" in title
