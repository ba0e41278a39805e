"""Row-level security exercised for real: SET ROLE authenticated with request.jwt.claims as PostgREST sets it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest

from tests.integration.factories import Tenant, make_tenant, submit, task

pytestmark = pytest.mark.migrations


@contextmanager
def as_user(conn: psycopg.Connection, user_id: uuid.UUID | None, role: str = "authenticated") -> Iterator[None]:
    """Run statements the way PostgREST does: SET LOCAL ROLE plus request.jwt.claims for the transaction."""
    with conn.transaction(force_rollback=True):
        conn.execute(f"set local role {role}")
        claims = {"role": role} if user_id is None else {"sub": str(user_id), "role": role}
        conn.execute("select set_config('request.jwt.claims', %s, true)", (json.dumps(claims),))
        yield


@pytest.fixture
def world(db: psycopg.Connection) -> dict[str, object]:
    a, b = make_tenant(db), make_tenant(db)
    users = {name: uuid.uuid4() for name in ("viewer", "operator", "admin", "org_admin")}
    for name in ("viewer", "operator", "admin"):
        db.execute(
            "insert into ops.project_members (project_id, user_id, role) values (%s, %s, %s)",
            (a.project_id, users[name], name),
        )
    db.execute(
        "insert into ops.org_members (org_id, user_id, role) values (%s, %s, 'admin')", (b.org_id, users["org_admin"])
    )
    run_a = submit(db, a, [task("x", pool="rls-a")])
    run_b = submit(db, b, [task("x", pool="rls-b")])
    return {"a": a, "b": b, "users": users, "run_a": run_a, "run_b": run_b}


def _run_ids(conn: psycopg.Connection) -> set[uuid.UUID]:
    return {r[0] for r in conn.execute("select id from ops.runs").fetchall()}


def test_viewer_reads_only_their_projects_rows(db: psycopg.Connection, world: dict[str, object]) -> None:
    users = world["users"]
    assert isinstance(users, dict)
    with as_user(db, users["viewer"]):
        assert _run_ids(db) == {world["run_a"]}
        tasks = db.execute("select distinct run_id from ops.tasks").fetchall()
        assert tasks == [(world["run_a"],)]
        assert db.execute("select count(*) from ops.runs where id = %s", (world["run_b"],)).fetchone() == (0,)
        projects = {r[0] for r in db.execute("select id from ops.projects").fetchall()}
        a = world["a"]
        assert isinstance(a, Tenant)
        assert projects == {a.project_id}
    with as_user(db, users["org_admin"]):
        assert _run_ids(db) == {world["run_b"]}, "org admins see every project of their org only"


def test_viewer_cannot_insert_or_submit_a_run(db: psycopg.Connection, world: dict[str, object]) -> None:
    users, a = world["users"], world["a"]
    assert isinstance(users, dict) and isinstance(a, Tenant)
    with as_user(db, users["viewer"]), pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute(
            "insert into ops.runs (org_id, project_id, environment_id, name, spec) values (%s, %s, %s, 'x', '{}')",
            (a.org_id, a.project_id, a.environments["dev"]),
        )
    with as_user(db, users["viewer"]), pytest.raises(psycopg.Error) as err:
        db.execute(
            "select * from ops.submit_run(%s, 'dev', %s::jsonb)", (a.project_id, json.dumps({"tasks": [task("x")]}))
        )
    assert err.value.sqlstate == "LH403"
    assert "operator role" in str(err.value)


def test_operator_submits_and_cancels_in_own_project_only(db: psycopg.Connection, world: dict[str, object]) -> None:
    users, a, b = world["users"], world["a"], world["b"]
    assert isinstance(users, dict) and isinstance(a, Tenant) and isinstance(b, Tenant)
    with as_user(db, users["operator"]):
        row = db.execute(
            "select run_id, created from ops.submit_run(%s, 'dev', %s::jsonb)",
            (a.project_id, json.dumps({"tasks": [task("x", pool="rls-a")]})),
        ).fetchone()
        assert row is not None and row[1] is True
        assert db.execute("select ops.cancel_run(%s)", (world["run_a"],)).fetchone() == ("cancelled",)
    with as_user(db, users["operator"]), pytest.raises(psycopg.Error) as err:
        db.execute(
            "select * from ops.submit_run(%s, 'dev', %s::jsonb)", (b.project_id, json.dumps({"tasks": [task("x")]}))
        )
    assert err.value.sqlstate == "LH403"
    with as_user(db, users["viewer"]), pytest.raises(psycopg.Error) as err2:
        db.execute("select ops.cancel_run(%s)", (world["run_a"],))
    assert err2.value.sqlstate == "LH403"
    # The forced rollbacks above left the seeded run untouched.
    assert db.execute("select status from ops.runs where id = %s", (world["run_a"],)).fetchone() == ("queued",)


def test_users_cannot_call_executor_functions_or_edit_history(db: psycopg.Connection, world: dict[str, object]) -> None:
    users = world["users"]
    assert isinstance(users, dict)
    with as_user(db, users["admin"]), pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute("select * from ops.claim_tasks(%s)", (uuid.uuid4(),))
    with as_user(db, users["admin"]), pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute("select ops.requeue_expired()")
    with as_user(db, users["admin"]), pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute("update ops.runs set spec = '{}'::jsonb where id = %s", (world["run_a"],))


def test_anonymous_sees_nothing(db: psycopg.Connection, world: dict[str, object]) -> None:
    with as_user(db, None, role="anon"), pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute("select id from ops.runs")
    with as_user(db, uuid.uuid4()):
        assert _run_ids(db) == set(), "a signed-in user with no membership sees no runs"


def test_admin_configures_routing_viewer_cannot(db: psycopg.Connection, world: dict[str, object]) -> None:
    """Routing rules are written only through ops.apply_routing_rules (org admins); direct writes are refused
    for everybody, admins included (20261205000300_governance_edits.sql)."""
    users, b = world["users"], world["b"]
    assert isinstance(users, dict) and isinstance(b, Tenant)
    rules = json.dumps([{"name": "org-rule", "position": 1, "pool": "etl"}])
    with as_user(db, users["org_admin"]):
        db.execute("select ops.apply_routing_rules(%s, %s::jsonb, null, null)", (b.org_id, rules))
        assert db.execute("select pool from ops.routing_rules where org_id = %s", (b.org_id,)).fetchall() == [("etl",)]
    for who in ("viewer", "admin"):
        with as_user(db, users[who]), pytest.raises(psycopg.DatabaseError) as refused:
            db.execute("select ops.apply_routing_rules(%s, %s::jsonb, null, null)", (b.org_id, rules))
        assert refused.value.sqlstate == "LH403"
    with as_user(db, users["org_admin"]), pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute("insert into ops.routing_rules (org_id, name, position, pool) values (%s, 'x', 6, 'x')", (b.org_id,))
