"""Service-level tests of what the UI uses: real Postgres (RLS as the user), real stores, real servers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import psycopg
import pytest

from control_room.services import users
from control_room.services.auth import UserPrincipal
from tests.integration.factories import Tenant, make_tenant

T = TypeVar("T")


def run_async(database_url: str, work: Callable[[psycopg.AsyncConnection], Awaitable[T]]) -> T:
    """Run ``work`` on a fresh async autocommit connection (each test owns its event loop)."""

    async def main() -> T:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            return await work(conn)

    return asyncio.run(main())


@dataclass
class Person:
    """A local account with a role on the tenant's project."""

    user_id: uuid.UUID
    email: str
    password: str

    @property
    def principal(self) -> UserPrincipal:
        return UserPrincipal(user_id=self.user_id, email=self.email)


@dataclass
class Team:
    tenant: Tenant
    viewer: Person
    operator: Person
    admin: Person  # project admin
    org_admin: Person
    outsider: Person  # member of another tenant only


@pytest.fixture
def team(database_url: str, db: psycopg.Connection) -> Team:
    """A fresh tenant with one person per role, plus an org admin and someone from another tenant."""
    tenant, other = make_tenant(db), make_tenant(db)

    def person(role: str, project_id: uuid.UUID | None, org_id: uuid.UUID | None = None) -> Person:
        email = f"{role}-{uuid.uuid4().hex[:8]}@ui.example"
        password = users.generate_password()
        user_id = run_async(database_url, lambda c: users.create_local_user(c, email=email, password=password))
        if project_id is not None:
            db.execute(
                "insert into ops.project_members (project_id, user_id, role) values (%s, %s, %s)",
                (project_id, user_id, role),
            )
        if org_id is not None:
            db.execute(
                "insert into ops.org_members (org_id, user_id, role) values (%s, %s, 'admin')", (org_id, user_id)
            )
        return Person(user_id, email, password)

    return Team(
        tenant=tenant,
        viewer=person("viewer", tenant.project_id),
        operator=person("operator", tenant.project_id),
        admin=person("admin", tenant.project_id),
        org_admin=person("org-admin", None, tenant.org_id),
        outsider=person("viewer", other.project_id),
    )
