"""Executor registry for people: states from heartbeat age, load, drain/undrain and revoke by org admins only."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest

from control_room.services import executors
from control_room.services.auth import ExecutorPrincipal, UserPrincipal, authenticate, create_executor_token, scoped
from control_room.services.errors import Forbidden, Unauthorized, from_db_error
from tests.integration.factories import claim, finalize, submit, task
from tests.ui.conftest import Team, run_async


def _registry(database_url: str, principal: UserPrincipal, pool: str) -> dict[str, dict[str, Any]]:
    async def work(conn: psycopg.AsyncConnection) -> list[dict[str, Any]]:
        async with scoped(conn, principal):
            return await executors.list_executors(conn, offline_after_seconds=90)

    return {row["name"]: row for row in run_async(database_url, work) if row["pool"] == pool}


def _as(database_url: str, principal: UserPrincipal, call: Any) -> Any:
    async def work(conn: psycopg.AsyncConnection) -> Any:
        async with scoped(conn, principal):
            return await call(conn)

    return run_async(database_url, work)


def _executor(
    db: psycopg.Connection, org_id: uuid.UUID, pool: str, name: str, heartbeat: str | None, **columns: Any
) -> uuid.UUID:
    row = db.execute(
        "insert into ops.executors (org_id, name, pool, engines, max_concurrency, status, last_heartbeat_at, version) "
        "values (%s, %s, %s, '{shell}', 4, 'online', now() - %s::interval, '1.2.3') returning id",
        (org_id, name, pool, heartbeat),
    ).fetchone()
    assert row
    for column, value in columns.items():
        db.execute(f"update ops.executors set {column} = %s where id = %s", (value, row[0]))
    return uuid.UUID(str(row[0]))


def test_states_come_from_heartbeat_age_and_running_from_leases(
    database_url: str, db: psycopg.Connection, team: Team
) -> None:
    pool = f"p-{uuid.uuid4().hex[:6]}"
    busy = _executor(db, team.tenant.org_id, pool, f"{pool}-online", "5 seconds")
    _executor(db, team.tenant.org_id, pool, f"{pool}-offline", "10 minutes")
    _executor(db, team.tenant.org_id, pool, f"{pool}-draining", "1 second", drain_requested=True)
    _executor(db, team.tenant.org_id, pool, f"{pool}-pending", None)
    _executor(db, team.tenant.org_id, pool, f"{pool}-revoked", "1 second", token_revoked_at="2026-01-01T00:00:00Z")
    submit(db, team.tenant, [task("a", pool=pool), task("b", pool=pool)])
    assert len(claim(db, busy, max_tasks=2)) == 2

    rows = _registry(database_url, team.viewer.principal, pool)
    assert {name.removeprefix(f"{pool}-"): row["state"] for name, row in rows.items()} == {
        "online": "online",
        "offline": "offline",
        "draining": "draining",
        "pending": "pending",
        "revoked": "revoked",
    }
    online = rows[f"{pool}-online"]
    assert (online["running"], online["max_concurrency"], online["version"]) == (2, 4, "1.2.3")
    assert online["heartbeat_age_s"] == pytest.approx(5, abs=3)


def test_someone_without_membership_cannot_read_the_registry(database_url: str) -> None:
    stranger = UserPrincipal(user_id=uuid.uuid4(), email="stranger@ui.example")
    with pytest.raises(psycopg.Error) as caught:
        _as(database_url, stranger, lambda c: executors.list_executors(c))
    assert isinstance(from_db_error(caught.value), Forbidden)


@pytest.mark.parametrize("who", ["viewer", "operator", "admin"])
def test_only_org_admins_drain_or_revoke(database_url: str, db: psycopg.Connection, team: Team, who: str) -> None:
    pool = f"p-{uuid.uuid4().hex[:6]}"
    executor = _executor(db, team.tenant.org_id, pool, f"{pool}-x", "1 second")
    principal = getattr(team, who).principal
    for call in (
        lambda c: executors.set_drain(c, executor_id=executor, drain=True),
        lambda c: executors.revoke(c, executor_id=executor),
    ):
        with pytest.raises(psycopg.Error) as caught:
            _as(database_url, principal, call)
        assert isinstance(from_db_error(caught.value), Forbidden), caught.value
    row = db.execute(
        "select drain_requested, token_revoked_at from ops.executors where id = %s", (executor,)
    ).fetchone()
    assert row == (False, None)


def test_a_drained_executor_claims_nothing_until_undrained(
    database_url: str, db: psycopg.Connection, team: Team
) -> None:
    pool = f"p-{uuid.uuid4().hex[:6]}"
    executor = _executor(db, team.tenant.org_id, pool, f"{pool}-x", "1 second")
    boss = team.org_admin.principal
    assert _as(database_url, boss, lambda c: executors.set_drain(c, executor_id=executor, drain=True)) == "draining"
    submit(db, team.tenant, [task("a", pool=pool)])
    assert claim(db, executor) == []
    assert _registry(database_url, boss, pool)[f"{pool}-x"]["state"] == "draining"
    assert _as(database_url, boss, lambda c: executors.set_drain(c, executor_id=executor, drain=False)) == "online"
    assert len(claim(db, executor)) == 1
    audit = db.execute(
        "select action, actor from ops.audit_log "
        "where entity = 'executors' and entity_id = %s and action like '%%drain' "
        "order by id",
        (executor,),
    ).fetchall()
    assert audit == [("drain", str(team.org_admin.user_id)), ("undrain", str(team.org_admin.user_id))]


def test_revoke_stops_the_token(database_url: str, db: psycopg.Connection, team: Team) -> None:
    name = f"agent-{uuid.uuid4().hex[:6]}"
    token = run_async(
        database_url, lambda c: create_executor_token(c, name=name, pool="revoke-test", org_id=team.tenant.org_id)
    )
    principal = run_async(database_url, lambda c: authenticate(c, token))
    assert isinstance(principal, ExecutorPrincipal)
    state = _as(
        database_url, team.org_admin.principal, lambda c: executors.revoke(c, executor_id=principal.executor_id)
    )
    assert state == "revoked"
    with pytest.raises(Unauthorized):
        run_async(database_url, lambda c: authenticate(c, token))


def test_pool_load_counts_running_attempts(database_url: str, db: psycopg.Connection, team: Team) -> None:
    pool = f"p-{uuid.uuid4().hex[:6]}"
    executor = _executor(db, team.tenant.org_id, pool, f"{pool}-x", "1 second")
    submit(db, team.tenant, [task("a", pool=pool), task("b", pool=pool), task("c", pool=pool)])
    assert len(claim(db, executor, max_tasks=3)) == 3
    series = [row for row in _as(database_url, team.viewer.principal, executors.pool_load) if row["pool"] == pool]
    assert len(series) == 61  # one bucket a minute over the last hour, the current one included
    assert series[-1]["running"] == 3
    assert series[0]["running"] == 0


def test_pool_load_shows_peaks_of_short_tasks_without_counting_sequential_ones_twice(
    database_url: str, db: psycopg.Connection, team: Team
) -> None:
    pool = f"p-{uuid.uuid4().hex[:6]}"
    executor = _executor(db, team.tenant.org_id, pool, f"{pool}-x", "1 second")
    submit(db, team.tenant, [task("a", pool=pool), task("b", pool=pool, depends_on=["a"])])
    for _ in range(2):  # a then b, each claimed and finished within the same second
        (leased,) = claim(db, executor)
        finalize(db, leased["task_id"], leased["lease_token"])
    series = [row for row in _as(database_url, team.viewer.principal, executors.pool_load) if row["pool"] == pool]
    assert max(row["running"] for row in series) == 1
    assert series[-1]["running"] == 1 or series[-2]["running"] == 1  # the bucket of now (or the one before)
