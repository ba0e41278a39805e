"""Row-level security of the GitOps tables: readable by the org's members, written by admins only."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from control_room.bundle.deploy import deploy_bundle
from control_room.bundle.loader import load_bundle
from tests.bundle.conftest import DemoLikeOrg, make_demo_like_org

pytestmark = pytest.mark.migrations

TABLES = ("job_templates", "job_template_versions", "schedules", "alert_rules", "promotion_gates")


@contextmanager
def as_user(conn: psycopg.Connection, user_id: uuid.UUID) -> Iterator[None]:
    """Statements as PostgREST runs them for a signed-in user (rolled back afterwards)."""
    with conn.transaction(force_rollback=True):
        conn.execute("set local role authenticated")
        conn.execute(
            "select set_config('request.jwt.claims', %s, true)",
            (json.dumps({"sub": str(user_id), "role": "authenticated"}),),
        )
        yield


def _count(conn: psycopg.Connection, table: str) -> int:
    row = conn.execute(f"select count(*) from ops.{table}").fetchone()
    assert row
    return int(row[0])


def _project(conn: psycopg.Connection, org: DemoLikeOrg, slug: str) -> uuid.UUID:
    row = conn.execute("select id from ops.projects where org_id = %s and slug = %s", (org.org_id, slug)).fetchone()
    assert row
    return uuid.UUID(str(row[0]))


@pytest.fixture
def deployed(db: psycopg.Connection, bundle_dir: Path, org: DemoLikeOrg) -> dict[str, uuid.UUID]:
    deploy_bundle(db, load_bundle(bundle_dir), actor="test")
    other = make_demo_like_org(db)
    users = {name: uuid.uuid4() for name in ("member", "project_admin", "org_admin", "stranger")}
    db.execute(
        "insert into ops.org_members (org_id, user_id, role) values (%s, %s, 'viewer')", (org.org_id, users["member"])
    )
    db.execute(
        "insert into ops.org_members (org_id, user_id, role) values (%s, %s, 'admin')", (org.org_id, users["org_admin"])
    )
    db.execute(
        "insert into ops.project_members (project_id, user_id, role) values (%s, %s, 'admin')",
        (_project(db, org, "lakehouse"), users["project_admin"]),
    )
    db.execute(
        "insert into ops.org_members (org_id, user_id, role) values (%s, %s, 'admin')",
        (other.org_id, users["stranger"]),
    )
    return users


def test_org_members_read_and_strangers_do_not(db: psycopg.Connection, deployed: dict[str, uuid.UUID]) -> None:
    with as_user(db, deployed["member"]):
        seen = {table: _count(db, table) for table in TABLES}
    assert seen == {
        "job_templates": 5,
        "job_template_versions": 5,
        "schedules": 5,
        "alert_rules": 6,  # with demo-run-failed (issue 20), a rule of project lakehouse
        "promotion_gates": 3,
    }
    with as_user(db, deployed["stranger"]):
        assert {table: _count(db, table) for table in TABLES} == dict.fromkeys(TABLES, 0)


def test_viewers_cannot_write(db: psycopg.Connection, org: DemoLikeOrg, deployed: dict[str, uuid.UUID]) -> None:
    with as_user(db, deployed["member"]):
        assert db.execute("update ops.schedules set enabled = false").rowcount == 0
        assert db.execute("delete from ops.alert_rules").rowcount == 0
    with as_user(db, deployed["member"]), pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute(
            "insert into ops.job_templates (org_id, project_id, name) values (%s, %s, 'sneaky')",
            (org.org_id, _project(db, org, "lakehouse")),
        )


def test_project_admins_write_their_project_and_org_admins_org_rules(
    db: psycopg.Connection, org: DemoLikeOrg, deployed: dict[str, uuid.UUID]
) -> None:
    lakehouse, ml = _project(db, org, "lakehouse"), _project(db, org, "ml")
    with as_user(db, deployed["project_admin"]):
        assert db.execute("update ops.schedules set enabled = false where project_id = %s", (lakehouse,)).rowcount == 3
        assert db.execute("update ops.schedules set enabled = false where project_id = %s", (ml,)).rowcount == 0
        # Org-wide alert rules belong to org admins.
        assert db.execute("update ops.alert_rules set severity = 'info' where project_id is null").rowcount == 0
    with as_user(db, deployed["project_admin"]), pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute(
            "insert into ops.promotion_gates (org_id, project_id, name, from_environment, to_environment) "
            "values (%s, %s, 'ml-gate', 'dev', 'prod')",
            (org.org_id, ml),
        )
    with as_user(db, deployed["org_admin"]):
        assert db.execute("update ops.alert_rules set severity = 'info' where project_id is null").rowcount == 4
        assert db.execute("update ops.promotion_gates set required_approvals = 2").rowcount == 3
