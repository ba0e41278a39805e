"""Governance fixtures: an org deployed from the demo bundle, its people by role, and async calls as them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest

from control_room.bundle.deploy import deploy_bundle
from control_room.bundle.loader import load_bundle
from control_room.services.auth import Principal, ServicePrincipal, UserPrincipal, scoped
from control_room.services.errors import from_db_error
from tests.bundle.conftest import DemoLikeOrg, copy_bundle, lakehouse, make_demo_like_org

T = TypeVar("T")
__all__ = ["lakehouse"]  # the real CLI fixture, shared with the bundle tests
ROLES = ("viewer", "operator", "project_admin", "org_admin", "stranger")


@dataclass
class GovWorld:
    """An org deployed from a copy of examples/bundle, with one person per role and its bundle folder."""

    url: str
    org: DemoLikeOrg
    bundle_dir: Path
    users: dict[str, uuid.UUID]

    def principal(self, role: str) -> Principal:
        if role == "service":
            return ServicePrincipal("tests")
        return UserPrincipal(user_id=self.users[role], email=f"{role}-{self.org.slug}@test.example")

    def call(self, role: str, work: Callable[[psycopg.AsyncConnection], Awaitable[T]]) -> T:
        """``work`` in one transaction as ``role``; database errors come back as the services' errors."""

        async def main() -> T:
            async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
                try:
                    async with scoped(conn, self.principal(role)):
                        return await work(conn)
                except psycopg.Error as exc:
                    raise from_db_error(exc) or exc from exc

        return asyncio.run(main())


def add_people(conn: psycopg.Connection, org: DemoLikeOrg) -> dict[str, uuid.UUID]:
    """One user per role in the org: project roles on lakehouse, org admin, and an admin of another org."""
    users = {role: uuid.uuid4() for role in ROLES}
    for role, user in users.items():
        conn.execute("insert into ops.users (id, email) values (%s, %s)", (user, f"{role}-{org.slug}@test.example"))
    lakehouse = conn.execute(
        "select id from ops.projects where org_id = %s and slug = 'lakehouse'", (org.org_id,)
    ).fetchone()
    assert lakehouse
    for role in ("viewer", "operator"):
        conn.execute(
            "insert into ops.project_members (project_id, user_id, role) values (%s, %s, %s)",
            (lakehouse[0], users[role], role),
        )
    conn.execute(
        "insert into ops.project_members (project_id, user_id, role) values (%s, %s, 'admin')",
        (lakehouse[0], users["project_admin"]),
    )
    conn.execute(
        "insert into ops.org_members (org_id, user_id, role) values (%s, %s, 'admin')", (org.org_id, users["org_admin"])
    )
    other = make_demo_like_org(conn)
    conn.execute(
        "insert into ops.org_members (org_id, user_id, role) values (%s, %s, 'admin')",
        (other.org_id, users["stranger"]),
    )
    return users


def add_executor(conn: psycopg.Connection, org: DemoLikeOrg, *, pool: str, engines: list[str], **extra: Any) -> str:
    """An online executor of the org; returns its name."""
    name = f"gov-{uuid.uuid4().hex[:8]}"
    conn.execute(
        "insert into ops.executors (org_id, name, pool, engines, labels, max_concurrency, status, last_heartbeat_at) "
        "values (%s, %s, %s, %s, %s, %s, 'online', now())",
        (org.org_id, name, pool, engines, extra.get("labels", []), extra.get("max_concurrency", 1)),
    )
    return name


@pytest.fixture
def gov(db: psycopg.Connection, database_url: str, tmp_path: Path) -> GovWorld:
    org = make_demo_like_org(db)
    bundle_dir = copy_bundle(tmp_path / "bundle", org.slug)
    deploy_bundle(db, load_bundle(bundle_dir), actor="tests")
    return GovWorld(database_url, org, bundle_dir, add_people(db, org))
