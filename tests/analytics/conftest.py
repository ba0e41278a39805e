"""Analytics fixtures: the demo org (with its queued runs) and org B, people by role, async calls as them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
import pytest

from control_room.db.migrate import migrate
from control_room.services.auth import UserPrincipal, scoped
from control_room.services.demo import DEMO_PROJECT_ID, load_demo_data
from control_room.services.errors import from_db_error
from tests.integration.factories import make_tenant, submit, task

T = TypeVar("T")


@dataclass
class AnalyticsWorld:
    """The demo project (A) with a viewer and an operator, and org B with its own admin and one run."""

    url: str
    project: uuid.UUID
    b_project: uuid.UUID
    users: dict[str, uuid.UUID]

    def call(self, who: str, work: Callable[[psycopg.AsyncConnection], Awaitable[T]]) -> T:
        """``work`` in one transaction as the person; database errors come back as the services' errors."""

        async def main() -> T:
            async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
                try:
                    async with scoped(conn, UserPrincipal(user_id=self.users[who], email=f"{who}@test.example")):
                        return await work(conn)
                except psycopg.Error as exc:
                    raise from_db_error(exc) or exc from exc

        return asyncio.run(main())

    def call_unscoped(self, work: Callable[[psycopg.AsyncConnection], Awaitable[Any]]) -> Any:
        async def main() -> Any:
            async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
                return await work(conn)

        return asyncio.run(main())


@pytest.fixture(scope="module")
def world(pg_server: Any) -> AnalyticsWorld:
    url = pg_server.create_database("lh_analytics")
    migrate(url)
    assert load_demo_data(url)
    users = {who: uuid.uuid4() for who in ("viewer", "operator", "b_admin")}
    with psycopg.connect(url, autocommit=True) as conn:
        for who, user in users.items():
            conn.execute("insert into ops.users (id, email) values (%s, %s)", (user, f"{who}@test.example"))
        for who in ("viewer", "operator"):
            conn.execute(
                "insert into ops.project_members (project_id, user_id, role) values (%s, %s, %s)",
                (DEMO_PROJECT_ID, users[who], who),
            )
        b = make_tenant(conn, "org-b-analytics")
        conn.execute(
            "insert into ops.project_members (project_id, user_id, role) values (%s, %s, 'admin')",
            (b.project_id, users["b_admin"]),
        )
        submit(conn, b, [task("b_only")], name="org b secret run")
    return AnalyticsWorld(url, uuid.UUID(DEMO_PROJECT_ID), b.project_id, users)
