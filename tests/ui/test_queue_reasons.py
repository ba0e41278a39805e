"""Why is it queued (issue 16): ops.queue_reasons on real Postgres, read as a viewer through runs.get_run —
upstream tasks, no live executor, only draining ones, a full pool, a reached cap, and ready."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest

from control_room.services import runs
from control_room.services.auth import scoped
from tests.integration.factories import make_executor, submit, task
from tests.ui.conftest import Team, run_async


def _reasons(database_url: str, team: Team, run_id: uuid.UUID) -> dict[str, Any]:
    async def work(conn: psycopg.AsyncConnection) -> dict[str, Any]:
        async with scoped(conn, team.viewer.principal):
            return await runs.get_run(conn, run_id=run_id)

    return {t["key"]: t["queue_reason"] for t in run_async(database_url, work)["tasks"]}


def test_each_waiting_task_says_why(database_url: str, db: psycopg.Connection, team: Team) -> None:
    pool = f"why-{uuid.uuid4().hex[:6]}"
    run_id = submit(db, team.tenant, [task("a", pool=pool), task("b", pool=pool, depends_on=["a"])])
    reasons = _reasons(database_url, team, run_id)
    assert reasons["b"] == "waiting for upstream task a to succeed"
    assert reasons["a"] is not None and "offers engine shell" in reasons["a"]

    executor = make_executor(db, team.tenant, pool=pool, max_concurrency=2)
    db.execute("update ops.executors set last_heartbeat_at = now(), drain_requested = true where id = %s", (executor,))
    assert _reasons(database_url, team, run_id)["a"].startswith(f'only draining executors of pool "{pool}"')

    db.execute("update ops.executors set drain_requested = false, running_tasks = 2 where id = %s", (executor,))
    assert _reasons(database_url, team, run_id)["a"] == f'pool "{pool}" is at its concurrency limit: 2 of 2 slots busy'

    db.execute("update ops.executors set running_tasks = 0 where id = %s", (executor,))
    assert (
        _reasons(database_url, team, run_id)["a"]
        == f'ready: 1 live executor of pool "{pool}" can take it at the next claim'
    )

    db.execute(
        "insert into ops.caps (org_id, name, scope, pool, kind, limit_value) values (%s, 'frozen', 'pool', %s, "
        "'concurrent_tasks', 0)",
        (team.tenant.org_id, pool),
    )
    assert _reasons(database_url, team, run_id)["a"].startswith(
        'cap "frozen" (concurrent_tasks = 0, pool scope) is reached'
    )


def test_finished_runs_have_no_reasons_and_strangers_get_none(
    database_url: str, db: psycopg.Connection, team: Team
) -> None:
    run_id = submit(db, team.tenant, [task("a")])
    db.execute("select ops.cancel_run(%s, 'test')", (run_id,))
    assert _reasons(database_url, team, run_id) == {"a": None}

    async def stranger(conn: psycopg.AsyncConnection) -> object:
        async with scoped(conn, team.outsider.principal):
            cur = await conn.execute("select * from ops.queue_reasons(%s)", (run_id,))
            return await cur.fetchall()

    with pytest.raises(psycopg.Error, match="viewer role"):
        run_async(database_url, stranger)
