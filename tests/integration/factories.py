"""Factories for integration tests: tenants, executors and runs created through the real SQL."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row


@dataclass
class Tenant:
    org_id: uuid.UUID
    project_id: uuid.UUID
    environments: dict[str, uuid.UUID]


# The catch-all routing rule that make_tenant adds by default, so tests may keep each test's tasks
# in a pool of their own by naming it in the spec (routing decides the pool otherwise).
TEST_OVERRIDE_RULE = "tests-allow-pool-override"


def make_tenant(conn: psycopg.Connection, slug: str | None = None, *, allow_pool_override: bool = True) -> Tenant:
    """A fresh org with one project and its dev/staging/prod environments.

    With ``allow_pool_override`` (the default) a last, catch-all routing rule of the project routes
    to "default" and lets a task's spec name its pool; without it, the spec's pool is ignored.
    """
    slug = slug or f"t-{uuid.uuid4().hex[:8]}"
    org = conn.execute("insert into ops.orgs (slug, name) values (%s, %s) returning id", (slug, slug)).fetchone()
    assert org
    project = conn.execute(
        "insert into ops.projects (org_id, slug, name) values (%s, %s, %s) returning id", (org[0], slug, slug)
    ).fetchone()
    assert project
    envs = {}
    for name in ("dev", "staging", "prod"):
        row = conn.execute(
            "insert into ops.environments (project_id, name) values (%s, %s) returning id", (project[0], name)
        ).fetchone()
        assert row
        envs[name] = row[0]
    if allow_pool_override:
        conn.execute(
            "insert into ops.routing_rules (org_id, name, position, match_project_id, pool, allow_pool_override) "
            "values (%s, %s, 1000000, %s, 'default', true)",
            (org[0], TEST_OVERRIDE_RULE, project[0]),
        )
    return Tenant(org[0], project[0], envs)


def make_executor(
    conn: psycopg.Connection,
    tenant: Tenant,
    *,
    pool: str = "default",
    engines: tuple[str, ...] = ("shell", "python"),
    labels: tuple[str, ...] = (),
    max_concurrency: int = 100,
) -> uuid.UUID:
    row = conn.execute(
        "insert into ops.executors (org_id, name, pool, engines, labels, max_concurrency, status) "
        "values (%s, %s, %s, %s, %s, %s, 'online') returning id",
        (tenant.org_id, f"agent-{uuid.uuid4().hex[:8]}", pool, list(engines), list(labels), max_concurrency),
    ).fetchone()
    assert row
    return uuid.UUID(str(row[0]))


def task(key: str, engine: str = "shell", **fields: Any) -> dict[str, Any]:
    """A task spec; a shell task without a command gets ``true`` so the typed spec validates."""
    if engine == "shell" and "command" not in fields and "argv" not in fields:
        fields["command"] = "true"
    return {"key": key, "engine": engine, **fields}


def submit(
    conn: psycopg.Connection,
    tenant: Tenant,
    tasks: list[dict[str, Any]],
    *,
    environment: str = "dev",
    idempotency_key: str | None = None,
    name: str = "test-run",
    tags: list[str] | None = None,
    priority: int = 0,
) -> uuid.UUID:
    row = conn.execute(
        "select run_id, created, refusal from ops.submit_run(%s, %s, %s::jsonb, '{}'::jsonb, 'api', null, null, "
        "%s, %s, %s)",
        (
            tenant.project_id,
            environment,
            json.dumps({"name": name, "tasks": tasks}),
            idempotency_key,
            priority,
            tags or [],
        ),
    ).fetchone()
    assert row and row[0] is not None, row
    return uuid.UUID(str(row[0]))


def claim(
    conn: psycopg.Connection,
    executor: uuid.UUID,
    max_tasks: int = 1,
    lease_seconds: int = 60,
    engines: list[str] | None = None,
    claim_id: uuid.UUID | None = None,
) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "select * from ops.claim_tasks(%s, %s, null, %s, %s, %s)",
            (executor, engines, max_tasks, lease_seconds, claim_id),
        )
        return cur.fetchall()


def finalize(
    conn: psycopg.Connection,
    task_id: Any,
    lease: Any,
    outcome: str = "succeeded",
    result: dict[str, Any] | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "select * from ops.finalize_task(%s, %s, %s, %s::jsonb, %s)",
            (task_id, lease, outcome, json.dumps(result) if result is not None else None, error),
        )
        row = cur.fetchone()
        assert row
        return row


def task_status(conn: psycopg.Connection, run_id: uuid.UUID) -> dict[str, str]:
    rows = conn.execute("select key, status from ops.tasks where run_id = %s", (run_id,)).fetchall()
    return {k: s for k, s in rows}


def run_status(conn: psycopg.Connection, run_id: uuid.UUID) -> str:
    row = conn.execute("select status from ops.runs where id = %s", (run_id,)).fetchone()
    assert row
    return str(row[0])


def finished_run(
    conn: psycopg.Connection, tenant: Tenant, *, days_ago: float, events_per_task: int = 7, status: str = "succeeded"
) -> uuid.UUID:
    """A run of two tasks that each logged ``events_per_task`` events, finished ``days_ago`` days ago."""
    executor = make_executor(conn, tenant)
    run_id = submit(conn, tenant, [task("extract"), task("load")])
    for got in claim(conn, executor, max_tasks=2):
        batch = [
            {"seq": i, "type": "log", "level": "warning" if i % 3 == 0 else "info",
             "message": f"{got['task_id']} line {i}", "data": {"i": i, "stream": "stdout"}}
            for i in range(events_per_task)
        ]  # fmt: skip
        conn.execute(
            "select ops.append_events(%s, %s, %s::jsonb)", (got["task_id"], got["lease_token"], json.dumps(batch))
        )
        finalize(conn, got["task_id"], got["lease_token"], "succeeded" if status == "succeeded" else "failed")
    conn.execute(
        "update ops.runs set finished_at = now() - make_interval(secs => %s) where id = %s", (days_ago * 86400, run_id)
    )
    return run_id


def assert_lease_lost(conn: psycopg.Connection, held: dict[str, Any], outcome: str = "succeeded") -> None:
    """The lease of ``held`` (a claimed task's row) is refused, LH409, both to extend it and to finalize."""
    with pytest.raises(psycopg.Error) as extend_err:
        conn.execute("select * from ops.extend_lease(%s, %s)", (held["task_id"], held["lease_token"]))
    assert extend_err.value.sqlstate == "LH409"
    with pytest.raises(psycopg.Error) as final_err:
        finalize(conn, held["task_id"], held["lease_token"], outcome)
    assert final_err.value.sqlstate == "LH409"
