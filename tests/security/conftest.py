"""The red team's world: org A (the demo org, with a run that went through claim, events and finalize,
and a row in every ops table) and org B, whose members attack A's rows."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
import pytest

from control_room.db.migrate import migrate
from control_room.services import users
from control_room.services.auth import EXECUTOR_TOKEN_PREFIX, USER_TOKEN_PREFIX, hash_token, new_token
from control_room.services.demo import DEMO_ORG_SLUG, load_demo_data
from tests.integration.factories import Tenant, make_tenant
from tests.live import LiveServer, Provisioner


@dataclass(frozen=True)
class RedWorld:
    """Who attacks whom: org A's ids, org B's tenant and B's strongest member (an org admin)."""

    url: str
    a_org: uuid.UUID
    a_project: uuid.UUID
    a_user: uuid.UUID
    a_executor_token: str
    b: Tenant
    b_admin: uuid.UUID
    b_executor_token: str


@contextmanager
def as_member(conn: psycopg.Connection, user_id: uuid.UUID) -> Iterator[None]:
    """Statements as PostgREST runs them for a signed-in user: SET LOCAL ROLE and the JWT claims, rolled back."""
    with conn.transaction(force_rollback=True):
        conn.execute("set local role authenticated")
        claims = {"sub": str(user_id), "role": "authenticated", "aud": "authenticated"}
        conn.execute("select set_config('request.jwt.claims', %s, true)", (json.dumps(claims),))
        yield


def _seed_org_a(conn: psycopg.Connection, a_org: uuid.UUID) -> tuple[uuid.UUID, str]:
    """Rows of org A in the tables the demo data leaves empty: a finished attempt, events, artifacts,
    uploads, lineage, query history, a user with a token and a session. Returns (user id, executor token)."""
    token = new_token(EXECUTOR_TOKEN_PREFIX)
    executor = conn.execute(
        "insert into ops.executors (org_id, name, pool, engines, max_concurrency, status, token_hash) "
        "values (%s, %s, 'default', '{shell,python,sql,dbt,duckdb}', 10, 'online', %s) returning id",
        (a_org, f"a-agent-{uuid.uuid4().hex[:6]}", hash_token(token)),
    ).fetchone()
    assert executor
    claimed = conn.execute(
        "select task_id, run_id, attempt, lease_token, project_id from ops.claim_tasks(%s, null, null, 1, 60)",
        (executor[0],),
    ).fetchone()
    assert claimed, "the demo data queues a task the org's executor can claim"
    task_id, run_id, attempt, lease, project = claimed
    conn.execute(
        "select ops.append_events(%s, %s, %s::jsonb)",
        (task_id, lease, json.dumps([
            {"seq": 0, "message": "org A secret log line"},
            # A refusal of the access guard (recorded in ops.access_refusals by a trigger).
            {"seq": 1, "type": "sql.statement.refused", "message": "access denied",
             "data": {"access": {"dataset": "warehouse.main.secret", "privilege": "read", "reason": "no grant"}}},
        ])),
    )
    sha = "a" * 64
    conn.execute(
        "insert into ops.artifact_uploads (task_id, attempt, run_id, project_id, lease_token, name, size_bytes, "
        "sha256, content_type, storage_key, expires_at) values (%s, %s, %s, %s, %s, 'a.csv', 1, %s, 'text/csv', 'k', "
        "now() + interval '1 hour')",
        (task_id, attempt, run_id, project, lease, sha),
    )
    conn.execute(
        "insert into ops.artifacts (run_id, project_id, task_id, attempt, name, uri, size_bytes, sha256) "
        "values (%s, %s, %s, %s, 'a.csv', 'file:///srv/lakehouse/a.csv', 1, %s)",
        (run_id, project, task_id, attempt, sha),
    )
    datasets = [
        conn.execute(
            "insert into ops.datasets (project_id, namespace, name, kind, first_run_id, last_run_id, last_task_id) "
            "values (%s, 'file', %s, 'table', %s, %s, %s) returning id",
            (project, name, run_id, run_id, task_id),
        ).fetchone()
        for name in ("a_in", "a_out")
    ]
    assert datasets[0] and datasets[1]
    conn.execute(
        "insert into ops.lineage_edges (project_id, upstream_id, downstream_id, first_run_id, last_run_id, "
        "last_task_id) values (%s, %s, %s, %s, %s, %s)",
        (project, datasets[0][0], datasets[1][0], run_id, run_id, task_id),
    )
    conn.execute(
        "insert into ops.openlineage_events (project_id, run_id, task_id, attempt, event_type, event_time, "
        "job_namespace, job_name, openlineage_run_id, event) values (%s, %s, %s, %s, 'COMPLETE', now(), 'a', 'a', "
        "%s, '{}')",
        (project, run_id, task_id, attempt, uuid.uuid4()),
    )
    job = conn.execute(
        "insert into ops.lineage_jobs (project_id, namespace, name) values (%s, 'airflow', 'a_job') returning id",
        (project,),
    ).fetchone()
    assert job
    conn.execute(
        "insert into ops.lineage_job_datasets (job_id, dataset_id, direction) values (%s, %s, 'output')",
        (job[0], datasets[1][0]),
    )
    conn.execute(
        "insert into ops.dataset_schema_changes (dataset_id, project_id, run_id, changes) "
        'values (%s, %s, %s, \'[{"column": "secret", "change": "added"}]\')',
        (datasets[1][0], project, run_id),
    )
    conn.execute(
        "insert into ops.query_history (run_id, task_id, attempt, project_id, statement_index, engine, sql_text, "
        "state, started_at) values (%s, %s, %s, %s, 1, 'duckdb', 'select secret from a', 'finished', now())",
        (run_id, task_id, attempt, project),
    )
    conn.execute(
        "insert into ops.task_datasets (task_id, project_id, dataset_id, direction) values (%s, %s, %s, 'input')",
        (task_id, project, datasets[0][0]),
    )
    conn.execute(
        "insert into ops.policy_previews (run_id, org_id, project_id, dataset_id, principal_kind, principal, "
        "requested_by_name) values (%s, %s, %s, %s, 'group', 'analysts', 'a-admin')",
        (run_id, a_org, project, datasets[0][0]),
    )
    conn.execute("select * from ops.finalize_task(%s, %s, 'succeeded', '{}'::jsonb, null)", (task_id, lease))
    _seed_jobs_tables(conn, a_org, project, run_id)
    user = conn.execute(
        "insert into ops.users (email, password_hash) values (%s, 'scrypt$not-a-real-hash') returning id",
        (f"a-{uuid.uuid4().hex[:6]}@a.example",),
    ).fetchone()
    assert user
    conn.execute("insert into ops.org_members (org_id, user_id, role) values (%s, %s, 'admin')", (a_org, user[0]))
    conn.execute(
        "insert into ops.project_members (project_id, user_id, role) values (%s, %s, 'operator')", (project, user[0])
    )
    conn.execute(
        "insert into ops.api_tokens (user_id, name, token_prefix, token_hash) values (%s, 'ci', 'lhu_xxxx', %s)",
        (user[0], hash_token(new_token(USER_TOKEN_PREFIX))),
    )
    conn.execute(
        "insert into ops.user_sessions (user_id, token_hash, expires_at) values (%s, %s, now() + interval '1 day')",
        (user[0], hash_token(new_token("lhs_"))),
    )
    conn.execute("insert into ops.sign_in_failures (email, client) values (%s, '203.0.113.7')", (f"x@{a_org}.example",))
    _seed_alert_tables(conn, a_org, project, run_id, uuid.UUID(str(user[0])))
    _seed_governance_tables(conn, a_org)
    _seed_access_policy_tables(conn, a_org)
    _seed_analytics_tables(conn, project)
    _seed_serving_tables(conn, project)
    _seed_retention_tables(conn, project, run_id)
    return uuid.UUID(str(user[0])), token


def _seed_retention_tables(conn: psycopg.Connection, project: uuid.UUID, run_id: uuid.UUID) -> None:
    """An archive of org A's finished run, as the retention loop records it (done: no loop deletes its rows)."""
    conn.execute(
        "insert into ops.event_archives (run_id, org_id, project_id, status, retention_days, last_event_id, "
        "event_count, attempt_count, events_key, events_size_bytes, events_sha256, attempts_key, "
        "attempts_size_bytes, attempts_sha256, archived_at) select r.id, r.org_id, r.project_id, 'done', 30, "
        "0, 2, 1, 'retention/a/events.parquet', 10, %s, 'retention/a/attempts.parquet', 10, %s, now() "
        "from ops.runs r where r.id = %s",
        ("e" * 64, "f" * 64, run_id),
    )


def _seed_governance_tables(conn: psycopg.Connection, a_org: uuid.UUID) -> None:
    """Org A's governance switches (unlocked), one recorded bundle deployment, and a submit a cap refused
    (the cap is disabled afterwards so that org A's other runs are not refused)."""
    conn.execute("select ops.set_governance_lock(%s, false, 'git@a.example:a/bundle.git', 'tests')", (a_org,))
    cap = conn.execute(
        "insert into ops.caps (org_id, name, scope, kind, limit_value) values (%s, 'a-no-runs', 'org', "
        "'runs_per_day', 0) returning id",
        (a_org,),
    ).fetchone()
    project = conn.execute("select id from ops.projects where org_id = %s order by slug limit 1", (a_org,)).fetchone()
    assert cap and project
    refused = conn.execute(
        "select refusal from ops.submit_run(%s, 'dev', %s::jsonb)",
        (project[0], json.dumps({"name": "a-secret-run", "tasks": [{"key": "a", "engine": "shell"}]})),
    ).fetchone()
    assert refused and refused[0], "org A's cap of no runs refuses the submit"
    conn.execute("update ops.caps set enabled = false where id = %s", (cap[0],))
    conn.execute(
        "insert into ops.bundle_deployments (org_id, content, content_sha256, deployed_by) "
        "values (%s, '{\"org\": \"a\"}', %s, 'tests')",
        (a_org, "b" * 64),
    )


def _seed_access_policy_tables(conn: psycopg.Connection, a_org: uuid.UUID) -> None:
    """A service principal, a group with it as member, and a policy of org A (as a trusted caller)."""
    conn.execute("select ops.save_service_principal(%s, 'a-robot', '', 'tests')", (a_org,))
    conn.execute(
        "select ops.save_principal_group(%s, 'a-analysts', '', %s::jsonb, 'tests')",
        (a_org, '[{"kind": "service_principal", "name": "a-robot"}]'),
    )
    conn.execute(
        "select ops.save_access_policy(%s, null, %s::jsonb, 'tests')",
        (a_org, '{"name": "a-read", "kind": "grant", "target_kind": "tag", "target": "pii", '
         '"principal_kind": "group", "principal": "a-analysts", "privilege": "read"}'),
    )  # fmt: skip


def _seed_analytics_tables(conn: psycopg.Connection, project: uuid.UUID) -> None:
    """A saved dashboard of org A (one version) and a question asked on its Ask page."""
    conn.execute(
        "select * from ops.save_dashboard(%s, 'a-health', 'A health', 'run-health', '{\"title\": \"A\"}'::jsonb, "
        "'title: A', %s, 'first', null, 'tests')",
        (project, "c" * 64),
    )
    conn.execute(
        "select ops.record_nl2sql_question(%s, 'how many orders?', 'builtin', 'translated', "
        "'select count(*) from fct_orders', '', 'tests')",
        (project,),
    )


def _seed_serving_tables(conn: psycopg.Connection, project: uuid.UUID) -> None:
    """A serving endpoint of org A (its replica task queued), a token and a stats bucket."""
    endpoint = conn.execute(
        "select ops.create_serving_endpoint(%s, 'dev', 'a-churn', 'a-model', '1', 1, null, null, 'tests')", (project,)
    ).fetchone()
    assert endpoint is not None
    conn.execute("select ops.create_serving_token(%s, 'a', 'lhe_a', %s, 'tests')", (endpoint[0], "d" * 64))
    conn.execute("select ops.record_serving_requests(%s, now(), '1', 3, 0, 12.5, %s)", (endpoint[0], [3] + [0] * 21))


def _seed_jobs_tables(conn: psycopg.Connection, a_org: uuid.UUID, project: uuid.UUID, run_id: uuid.UUID) -> None:
    """A schedule fire and a backfill with one interval of org A (the demo bundle has schedules and templates)."""
    schedule = conn.execute("select id from ops.schedules where org_id = %s limit 1", (a_org,)).fetchone()
    template = conn.execute(
        "select t.id, e.id from ops.job_templates t join ops.environments e on e.project_id = t.project_id "
        "where t.org_id = %s limit 1",
        (a_org,),
    ).fetchone()
    assert schedule and template, "the demo bundle defines schedules and job templates"
    conn.execute(
        "insert into ops.schedule_fires (schedule_id, org_id, project_id, fire_time, due_at, status, run_id) "
        "values (%s, %s, %s, now(), now(), 'fired', %s)",
        (schedule[0], a_org, project, run_id),
    )
    backfill = conn.execute(
        "insert into ops.backfills (org_id, project_id, template_id, environment_id, range_start, range_end, step, "
        "total) values (%s, (select project_id from ops.job_templates where id = %s), %s, %s, "
        "now() - interval '2 days', now(), 'day', 2) returning id",
        (a_org, template[0], template[0], template[1]),
    ).fetchone()
    assert backfill
    conn.execute(
        "insert into ops.backfill_intervals (backfill_id, position, data_interval_start, data_interval_end) "
        "values (%s, 1, now() - interval '2 days', now() - interval '1 day')",
        (backfill[0],),
    )
    # Promotions: a deployment, a request with a decision, and a CI check report.
    conn.execute(
        "insert into ops.deployments (org_id, project_id, template_id, environment_id, environment, version, "
        "version_id, action, actor) select t.org_id, t.project_id, t.id, e.id, e.name, v.version, v.id, 'promote', "
        "'red' from ops.job_templates t join ops.environments e on e.project_id = t.project_id "
        "join ops.job_template_versions v on v.template_id = t.id where t.id = %s and e.id = %s limit 1",
        (template[0], template[1]),
    )
    request = conn.execute(
        "insert into ops.promotion_requests (org_id, project_id, template_id, version, version_id, from_environment, "
        "to_environment, gate, requested_by) select t.org_id, t.project_id, t.id, v.version, v.id, 'dev', 'staging', "
        "'{\"name\": \"red\"}'::jsonb, 'red' from ops.job_templates t join ops.job_template_versions v "
        "on v.template_id = t.id where t.id = %s limit 1 returning id",
        (template[0],),
    ).fetchone()
    assert request
    conn.execute(
        "insert into ops.promotion_decisions (request_id, org_id, decision, actor, evidence_epoch) "
        "values (%s, %s, 'approve', 'red', 0)",
        (request[0], a_org),
    )
    notice = conn.execute(
        "insert into ops.promotion_notices (org_id, project_id, request_id, event) "
        "select x.org_id, x.project_id, x.id, 'opened' from ops.promotion_requests x where x.id = %s returning id",
        (request[0],),
    ).fetchone()
    assert notice
    conn.execute(  # a promotion message in the alert outbox (its own read policy)
        "insert into ops.alert_deliveries (org_id, promotion_notice_id, channel, target, payload) "
        "values (%s, %s, 'email', 'red@example.test', '{}')",
        (a_org, notice[0]),
    )
    conn.execute(
        "insert into ops.version_check_reports (org_id, project_id, template_id, version, name, status, reported_by) "
        "select t.org_id, t.project_id, t.id, 1, 'pr-gate', 'passed', 'red' from ops.job_templates t where t.id = %s",
        (template[0],),
    )


def _seed_alert_tables(
    conn: psycopg.Connection, a_org: uuid.UUID, project: uuid.UUID, run_id: uuid.UUID, user: uuid.UUID
) -> None:
    """An incident of org A with its event, a delivery, a notification, preferences, a mute and a channel."""
    conn.execute(
        "insert into ops.alert_channels (org_id, name, kind, url_env) values (%s, 'red-hook', 'webhook', 'RED_HOOK')",
        (a_org,),
    )
    rule = conn.execute("select id from ops.alert_rules where org_id = %s limit 1", (a_org,)).fetchone()
    assert rule, "the demo bundle defines alert rules"
    fired = conn.execute(
        "select event_id from ops.fire_alert(%s, 'job:red', 'w1', now(), 'red', '', '{}'::jsonb, %s, %s)",
        (rule[0], project, run_id),
    ).fetchone()
    assert fired
    conn.execute("select ops.enqueue_delivery(%s, 'email', 'a@a.example', '{}'::jsonb)", (fired[0],))
    conn.execute("select ops.add_notification(%s, %s, 'red', '', null)", (user, fired[0]))
    conn.execute("select ops.put_notification_preferences(%s, %s, %s, '{}'::jsonb)", (a_org, user, user))
    conn.execute("select ops.set_job_mute(%s, 'red/job', true, null, null, 'tests')", (a_org,))


@pytest.fixture(scope="session")
def red_world(pg_server: object) -> RedWorld:
    """A database of its own: the demo org as A (every ops table holds some of its rows) and org B."""
    create: Callable[[str], str] = pg_server.create_database  # type: ignore[attr-defined]
    url = create("lh_redteam")
    migrate(url)
    assert load_demo_data(url)
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "select o.id, p.id from ops.orgs o join ops.projects p on p.org_id = o.id "
            "where o.slug = %s order by p.created_at limit 1",
            (DEMO_ORG_SLUG,),
        ).fetchone()
        assert row
        a_org, a_project = uuid.UUID(str(row[0])), uuid.UUID(str(row[1]))
        a_user, a_token = _seed_org_a(conn, a_org)
        b = make_tenant(conn, allow_pool_override=False)
        b_admin = uuid.uuid4()
        conn.execute("insert into ops.users (id, email) values (%s, %s)", (b_admin, f"b-{b_admin.hex[:6]}@b.example"))
        conn.execute(
            "insert into ops.org_members (org_id, user_id, role) values (%s, %s, 'admin')", (b.org_id, b_admin)
        )
        b_token = new_token(EXECUTOR_TOKEN_PREFIX)
        conn.execute(
            "insert into ops.executors (org_id, name, pool, engines, max_concurrency, status, token_hash) "
            "values (%s, %s, 'default', '{shell,python,sql,dbt,duckdb}', 10, 'online', %s)",
            (b.org_id, f"b-agent-{uuid.uuid4().hex[:6]}", hash_token(b_token)),
        )
    return RedWorld(url, a_org, a_project, a_user, a_token, b, b_admin, b_token)


Person = tuple[str, str, uuid.UUID]  # email, password, user id


@pytest.fixture
def person(live_api: LiveServer, provision: Provisioner) -> Person:
    """A local account with a password, operator on the main tenant's project."""
    email, password = f"signin-{uuid.uuid4().hex[:8]}@test.example", users.generate_password()

    async def create() -> uuid.UUID:
        async with await psycopg.AsyncConnection.connect(provision.database_url, autocommit=True) as conn:
            return await users.create_local_user(conn, email=email, password=password)

    user_id = asyncio.run(create())
    with psycopg.connect(provision.database_url, autocommit=True) as conn:
        conn.execute(
            "insert into ops.project_members (project_id, user_id, role) values (%s, %s, 'operator')",
            (provision.tenant().project_id, user_id),
        )
    return email, password, user_id
