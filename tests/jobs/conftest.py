"""Fixtures for job management: a database of its own per test (the scheduler ticks over every
schedule of a database), tenants with job templates and schedules, users with roles."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row

from control_room.db.migrate import migrate
from control_room.services import schedules
from tests.conftest import PostgresServer
from tests.integration.factories import Tenant, make_tenant

T = TypeVar("T")

PARAMS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "source": {"type": "string", "enum": ["orders", "customers"]},
        "limit": {"type": "integer", "minimum": 1},
        "full_refresh": {"type": "boolean", "default": False},
    },
    "required": ["source"],
    "additionalProperties": False,
}
TASKS: list[dict[str, Any]] = [
    {"key": "land", "engine": "shell", "config": {"command": "echo landed"}},
    {"key": "report", "engine": "shell", "depends_on": ["land"], "timeout_s": 60, "config": {"command": "echo ok"}},
]


@pytest.fixture(scope="session")
def jobs_template_db(pg_server: PostgresServer) -> str:
    """A migrated database used as the template of each test's database (copying is fast)."""
    url = pg_server.create_database("lh_jobs_tpl")
    migrate(url)
    return url


@pytest.fixture
def jobs_db(pg_server: PostgresServer, jobs_template_db: str) -> str:
    """A fresh migrated database for one test."""
    template = conninfo_to_dict(jobs_template_db)["dbname"]
    name = f"lh_jobs_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("create database {} template {}").format(sql.Identifier(name), sql.Identifier(str(template)))
        )
    pg_server.created.append(name)
    return pg_server.url_for(name)


@pytest.fixture
def conn(jobs_db: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(jobs_db, autocommit=True) as connection:
        yield connection


@dataclass
class JobWorld:
    """One tenant with a job template (two versions) and helpers to add schedules."""

    conn: psycopg.Connection
    tenant: Tenant
    template_id: uuid.UUID
    versions: dict[int, uuid.UUID] = field(default_factory=dict)

    def add_version(self, tasks: list[dict[str, Any]] | None = None, schema: dict[str, Any] | None = None) -> int:
        row = self.conn.execute(
            "insert into ops.job_template_versions (template_id, version, params_schema, tasks, max_attempts, "
            "retry_backoff_s, content_sha256) select %s, coalesce(max(version), 0) + 1, %s, %s, 2, 5, %s "
            "from ops.job_template_versions where template_id = %s returning id, version",
            (
                self.template_id,
                json.dumps(PARAMS_SCHEMA if schema is None else schema),
                json.dumps(tasks or TASKS),
                uuid.uuid4().hex * 2,
                self.template_id,
            ),
        ).fetchone()
        assert row
        self.versions[row[1]] = row[0]
        return int(row[1])

    def schedule(
        self, cron: str = "* * * * *", *, timezone: str = "UTC", env: str = "dev", **columns: Any
    ) -> uuid.UUID:
        """A schedule of the template, planned as of ``planned_from`` (default: not planned)."""
        planned_from: datetime | None = columns.pop("planned_from", None)
        params = columns.pop("params", {"source": "orders"})
        names = ["org_id", "project_id", "name", "template_id", "environment_id", "cron", "timezone", "params"]
        values: list[Any] = [
            self.tenant.org_id,
            self.tenant.project_id,
            f"s-{uuid.uuid4().hex[:8]}",
            self.template_id,
            self.tenant.environments[env],
            cron,
            timezone,
            json.dumps(params),
        ]
        for key, value in columns.items():
            names.append(key)
            values.append(value)
        row = self.conn.execute(
            sql.SQL("insert into ops.schedules ({}) values ({}) returning id").format(
                sql.SQL(", ").join(map(sql.Identifier, names)), sql.SQL(", ").join(sql.Placeholder() * len(names))
            ),
            values,
        ).fetchone()
        assert row
        schedule_id = uuid.UUID(str(row[0]))
        if planned_from is not None:
            self.plan(schedule_id, planned_from)
        return schedule_id

    def plan(self, schedule_id: uuid.UUID, after: datetime) -> None:
        """Set the schedule's next fire as the scheduler would have planned it at ``after``."""
        cron, timezone, jitter_s = self.conn.execute(
            "select cron, timezone, jitter_s from ops.schedules where id = %s", (schedule_id,)
        ).fetchone()  # type: ignore[misc]
        nxt = schedules.CronSchedule.of(cron, timezone).next_after(after)
        due = nxt + schedules.jitter_offset(schedule_id, nxt, jitter_s)
        self.conn.execute(
            "update ops.schedules set next_fire_at = %s, next_due_at = %s where id = %s", (nxt, due, schedule_id)
        )

    def fires(self, schedule_id: uuid.UUID) -> list[dict[str, Any]]:
        with self.conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(
                "select f.*, r.params as run_params, r.trigger as run_trigger from ops.schedule_fires f "
                "left join ops.runs r on r.id = f.run_id where f.schedule_id = %s order by f.fire_time",
                (schedule_id,),
            ).fetchall()

    def user(self, role: str) -> uuid.UUID:
        row = self.conn.execute(
            "insert into ops.users (email) values (%s) returning id", (f"{role}-{uuid.uuid4().hex[:6]}@test.example",)
        ).fetchone()
        assert row
        self.conn.execute(
            "insert into ops.project_members (project_id, user_id, role) values (%s, %s, %s)",
            (self.tenant.project_id, row[0], role),
        )
        return uuid.UUID(str(row[0]))


def make_world(conn: psycopg.Connection) -> JobWorld:
    tenant = make_tenant(conn)
    row = conn.execute(
        "insert into ops.job_templates (org_id, project_id, name, tags, owner) "
        "values (%s, %s, %s, %s, %s) returning id",
        (tenant.org_id, tenant.project_id, f"job-{uuid.uuid4().hex[:6]}", ["ingest"], "team@test.example"),
    ).fetchone()
    assert row
    world = JobWorld(conn, tenant, uuid.UUID(str(row[0])))
    world.add_version()
    return world


@pytest.fixture
def world(conn: psycopg.Connection) -> JobWorld:
    return make_world(conn)


def run_async(database_url: str, work: Callable[[psycopg.AsyncConnection], Awaitable[T]]) -> T:
    """Run ``work`` on a fresh async autocommit connection, in a loop of its own."""

    async def main() -> T:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as aconn:
            return await work(aconn)

    return asyncio.run(main())


def tick(database_url: str, now: datetime) -> schedules.TickResult:
    """One scheduler tick at ``now`` on a connection of its own."""
    return run_async(database_url, lambda c: schedules.tick(c, now))


def end_run(conn: psycopg.Connection, run_id: uuid.UUID, status: str = "succeeded") -> None:
    """Finish every task of a run with ``status`` and let the run's status follow."""
    conn.execute(
        "update ops.tasks set status = %s, attempt = greatest(attempt, 1), started_at = coalesce(started_at, now()), "
        "finished_at = now() where run_id = %s",
        (status, run_id),
    )
    conn.execute("select ops.refresh_run_status(%s)", (run_id,))
