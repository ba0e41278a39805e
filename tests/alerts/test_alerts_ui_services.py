"""Services behind the alerts UI on a real Postgres: the bell's NOTIFY, the audit of rule edits by people,
incidents in keyset pages with filters, the 7-day rule preview, the jobs a user can follow or mute."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from control_room.db.notify import NOTIFICATIONS_CHANNEL
from control_room.loops.alerts import AlertEvaluator
from control_room.services import alert_preview, alerts, notifications
from control_room.services.auth import UserPrincipal, scoped
from control_room.services.errors import Invalid
from control_room.state.alerts.rule_editor import BLANK_FORM, rule_fields
from tests.alerts.test_alerts import BASE, add_rule, add_user, run, run_job, signal, with_conn
from tests.integration.factories import Tenant, make_tenant


def as_user(url: str, user: UserPrincipal, fn: Any) -> Any:
    async def go(conn: psycopg.AsyncConnection) -> Any:
        async with scoped(conn, user):
            return await fn(conn)

    return run(with_conn(url, go))


def fired(db: psycopg.Connection, database_url: str, tenant: Tenant, pool: str, n: int, **rule: Any) -> uuid.UUID:
    """A run_failed rule and ``n`` failing runs of distinct jobs, each fired by the evaluator."""
    rule_id = add_rule(db, tenant, "run_failed", **rule)
    evaluator = AlertEvaluator(base_url=BASE)
    for i in range(n):
        run_id, _ = run_job(db, tenant, pool, name=f"job-{i}", outcome="failed")
        signal(database_url, evaluator, f"run:{run_id}", datetime.now(UTC))
    return rule_id


def test_the_bell_hears_its_users_notifications_added_and_read(
    db: psycopg.Connection, database_url: str, tenant: Tenant, pool: str
) -> None:
    user_id, _ = add_user(db, tenant)
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute(f"listen {NOTIFICATIONS_CHANNEL}")
        fired(db, database_url, tenant, pool, 1)
        added = {n.payload for n in listener.notifies(timeout=5, stop_after=1)}
        assert str(user_id) in added
        assert run(with_conn(database_url, lambda c: notifications.unread_count(c, user_id=user_id))) == 1
        marked = run(with_conn(database_url, lambda c: notifications.mark_read(c, user_id=user_id, ids=None)))
        assert marked == 1
        read = [n.payload for n in listener.notifies(timeout=5, stop_after=1)]
    assert read == [str(user_id)]


def test_rule_edits_by_people_are_audited_and_trusted_writes_are_not(
    db: psycopg.Connection, database_url: str, tenant: Tenant
) -> None:
    admin_id, email = add_user(db, tenant, role="admin")
    admin = UserPrincipal(user_id=admin_id, email=email)
    fields = {"name": "api-made", "kind": "queue_wait", "threshold": 600, "project_id": tenant.project_id}
    created = as_user(database_url, admin, lambda c: alerts.create_rule(c, org_id=tenant.org_id, fields=fields))
    as_user(database_url, admin, lambda c: alerts.update_rule(c, rule_id=created.id, fields={"threshold": 900}))
    as_user(database_url, admin, lambda c: alerts.delete_rule(c, rule_id=created.id))
    add_rule(db, tenant, "run_failed")  # a trusted write (bundle deploy, CLI): audited by its caller
    rows = db.execute(
        "select actor, action, project_id, detail from ops.audit_log where entity = 'alert_rules' "
        "and detail ->> 'org_id' = %s order by id",
        (str(tenant.org_id),),
    ).fetchall()
    assert [(r[0], r[1]) for r in rows] == [(email, "create"), (email, "update"), (email, "delete")]
    assert all(r[2] == tenant.project_id for r in rows)
    assert {"field": "threshold", "old": 600, "new": 900} in rows[1][3]["changes"]
    assert rows[1][3]["source"] == "api" and rows[1][3]["key"] == "api-made"


def test_incidents_come_in_keyset_pages_with_filters(
    db: psycopg.Connection, database_url: str, tenant: Tenant, pool: str
) -> None:
    rule_id = fired(db, database_url, tenant, pool, 5, severity="critical")
    [(one,)] = db.execute("select id from ops.alert_incidents where rule_id = %s limit 1", (rule_id,)).fetchall()
    db.execute("select ops.act_on_incident(%s, 'ack', null, 'tester')", (one,))

    def page(query: alerts.IncidentsQuery, cursor: str | None) -> Any:
        return run(with_conn(database_url, lambda c: alerts.incidents_page(c, query=query, cursor=cursor, limit=2)))

    seen: list[uuid.UUID] = []
    cursor = None
    query = alerts.IncidentsQuery(rule_id=rule_id)
    while True:
        rows, cursor = page(query, cursor)
        seen += [r["id"] for r in rows]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 5
    opened, _ = page(alerts.IncidentsQuery(rule_id=rule_id, states=("open",), severity="critical"), None)
    acked, _ = page(alerts.IncidentsQuery(rule_id=rule_id, states=("acked",)), None)
    assert [r["id"] for r in acked] == [one] and one not in [r["id"] for r in opened]
    found, _ = page(alerts.IncidentsQuery(rule_id=rule_id, text="job-3"), None)
    [(slug,)] = db.execute("select slug from ops.projects where id = %s", (tenant.project_id,)).fetchall()
    assert [r["subject"] for r in found] == [f"job:{slug}/job-3"]
    with pytest.raises(Invalid, match="state"):
        page(alerts.IncidentsQuery(states=("sleeping",)), None)


def test_the_preview_replays_the_last_seven_days(
    db: psycopg.Connection, database_url: str, tenant: Tenant, pool: str
) -> None:
    for name in ("a", "a", "b"):
        run_job(db, tenant, pool, name=f"preview-{name}", outcome="failed")
    run_job(db, tenant, pool, name="preview-ok", outcome="succeeded")
    now = datetime.now(UTC) + timedelta(seconds=1)

    def preview(rule: dict[str, Any], at: datetime = now) -> alert_preview.RulePreview:
        return run(with_conn(database_url, lambda c: alert_preview.preview_rule(c, org_id=tenant.org_id, rule=rule,
                                                                                 now=at)))  # fmt: skip

    failed = preview({"kind": "run_failed", "project_id": tenant.project_id})
    assert (failed.firings, failed.subjects) == (3, 2)
    assert failed.top_subjects[0][1] == 2 and failed.by_day[0][1] == 3
    assert preview({"kind": "task_failed", "match_pool": pool}).firings == 3
    assert preview({"kind": "task_failed", "match_pool": "elsewhere"}).firings == 0
    assert preview({"kind": "run_failed"}, now + timedelta(days=8)).firings == 0  # out of the window
    assert preview({"kind": "executor_offline", "threshold": 90}).note  # no history: says so
    with pytest.raises(Invalid, match="threshold"):
        preview({"kind": "queue_wait"})


def test_known_jobs_name_runs_by_project_and_job(
    db: psycopg.Connection, database_url: str, tenant: Tenant, pool: str
) -> None:
    run_job(db, tenant, pool, name="nightly-thing", outcome="succeeded")
    jobs = run(with_conn(database_url, lambda c: notifications.known_jobs(c, org_id=tenant.org_id)))
    assert any(job.endswith("/nightly-thing") for job in jobs)


def test_the_editor_turns_its_text_fields_into_rule_columns() -> None:
    form = {**BLANK_FORM, "name": "slow", "kind": "run_duration", "threshold": "600", "factor": "2.5",
            "sla_time": "06:00", "notify": "a@x.example, slack:#ops"}  # fmt: skip
    fields = rule_fields(form, escalate=True, enabled=False)
    assert fields["threshold"] == 600 and fields["factor"] == 2.5 and fields["baseline_runs"] == 20
    assert fields["sla_time"] is None  # not a run_duration setting
    assert fields["notify"] == ["a@x.example", "slack:#ops"] and fields["enabled"] is False
    with pytest.raises(Invalid, match="threshold"):
        rule_fields({**form, "threshold": "ten"}, escalate=False, enabled=True)
    bad_json = {**BLANK_FORM, "kind": "event_match", "event_type": "x", "event_attributes": "[1]"}
    with pytest.raises(Invalid, match="JSON object"):
        rule_fields(bad_json, escalate=False, enabled=True)
    assert json.dumps(rule_fields({**bad_json, "event_attributes": '{"a": 1}'}, escalate=False, enabled=True)
                      ["event_attributes"]) == '{"a": 1}'  # fmt: skip


def test_a_project_member_keeps_preferences_in_the_projects_org(
    db: psycopg.Connection, database_url: str, tenant: Tenant
) -> None:
    row = db.execute(
        "insert into ops.users (email) values (%s) returning id", (f"pm-{uuid.uuid4().hex[:8]}@x.example",)
    )
    [(user_id,)] = row.fetchall()
    db.execute(
        "insert into ops.project_members (project_id, user_id, role) values (%s, %s, 'viewer')",
        (tenant.project_id, user_id),
    )
    me = UserPrincipal(user_id=user_id, email="pm@x.example")
    prefs = {"digest_info": True, "muted_jobs": ["p/j"]}
    saved = as_user(
        database_url,
        me,
        lambda c: notifications.put_preferences(
            c, org_id=tenant.org_id, user_id=user_id, actor_id=user_id, prefs=prefs
        ),
    )
    assert saved.digest_info is True and saved.muted_jobs == ["p/j"]
    stranger = make_tenant(db)
    with pytest.raises(psycopg.Error, match="not a member"):
        as_user(
            database_url,
            me,
            lambda c: notifications.put_preferences(
                c, org_id=stranger.org_id, user_id=user_id, actor_id=user_id, prefs=prefs
            ),
        )
