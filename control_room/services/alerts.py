"""Alert rules and incidents: the evaluator's signal reads, firing and resolving (in SQL), operator actions."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.types.json import Jsonb

from control_room.db.rows import dict_rows, first_model, model_list
from control_room.db.tables import AlertDelivery, AlertIncidentEvent, AlertRule
from control_room.services import deliveries
from control_room.services.errors import NotFound
from control_room.services.pagination import Keyset, ListQuery, Page, decode_cursor, encode_cursor, escape_like

Row = dict[str, Any]

TERMINAL_FAILURES = ("failed", "timed_out", "lost")

# A run's job: its template's name, else the run's name, within its project.
_RUN_SIGNAL = """
select r.id, r.org_id, r.project_id, r.status, r.name, r.error, r.template_id, r.schedule_id,
       r.created_at, r.started_at, r.finished_at, e.name as environment, p.slug as project_slug,
       p.slug || '/' || coalesce(jt.name, r.name) as job,
       extract(epoch from coalesce(r.finished_at, %(now)s) - coalesce(r.started_at, r.created_at))::float as duration_s,
       (select t.route_rule_id from ops.tasks t where t.run_id = r.id and t.route_rule_id is not null
        order by (t.status in ('failed', 'timed_out', 'lost')) desc, t.key limit 1) as route_rule_id,
       (select array_agg(t.key order by t.key) from ops.tasks t
        where t.run_id = r.id and t.status in ('failed', 'timed_out', 'lost')) as failed_tasks
from ops.runs r
join ops.environments e on e.id = r.environment_id
join ops.projects p on p.id = r.project_id
left join ops.job_templates jt on jt.id = r.template_id
"""


@dataclass(frozen=True)
class Firing:
    """One firing that this caller won (no other replica recorded the same window)."""

    incident_id: uuid.UUID
    event_id: int
    kind: str  # fired | refired
    snoozed: bool


async def enabled_rules(conn: AsyncConnection, kinds: tuple[str, ...] | None = None) -> list[AlertRule]:
    """Enabled alert rules (of these kinds), with the environment-free columns the evaluator matches on."""
    return await model_list(
        conn,
        AlertRule,
        "select * from ops.alert_rules where enabled and (%(kinds)s::text[] is null or kind = any(%(kinds)s)) "
        "order by org_id, name",
        {"kinds": list(kinds) if kinds else None},
    )


async def run_signal(conn: AsyncConnection, run_id: uuid.UUID | str, now: datetime) -> Row | None:
    """A run with what rules match on: job, environment, duration, failed task keys, routing rule."""
    rows = await dict_rows(conn, _RUN_SIGNAL + " where r.id = %(run)s", {"run": run_id, "now": now})
    return rows[0] if rows else None


async def task_signal(conn: AsyncConnection, task_id: uuid.UUID | str) -> Row | None:
    """A task with its attempts, status and the job it belongs to."""
    rows = await dict_rows(
        conn,
        "select t.id, t.run_id, t.org_id, t.project_id, t.key, t.status, t.attempt, t.max_attempts, t.error, "
        "t.route_rule_id, t.pool, t.finished_at, r.template_id, e.name as environment, "
        "p.slug || '/' || coalesce(jt.name, r.name) as job "
        "from ops.tasks t join ops.runs r on r.id = t.run_id join ops.environments e on e.id = t.environment_id "
        "join ops.projects p on p.id = t.project_id left join ops.job_templates jt on jt.id = r.template_id "
        "where t.id = %s",
        (task_id,),
    )
    return rows[0] if rows else None


async def recently_finished_runs(conn: AsyncConnection, since: datetime, now: datetime) -> list[Row]:
    """Runs that ended since a time: the catch-up after the evaluator was not listening."""
    return await dict_rows(
        conn,
        _RUN_SIGNAL + " where r.finished_at >= %(since)s and r.status in ('succeeded', 'failed', 'cancelled') "
        "order by r.finished_at",
        {"since": since, "now": now},
    )


async def recently_failed_tasks(conn: AsyncConnection, since: datetime) -> list[Row]:
    """Ids of tasks that ended in a failure since a time (catch-up)."""
    return await dict_rows(
        conn,
        "select id from ops.tasks where finished_at >= %s and status in ('failed', 'timed_out', 'lost')",
        (since,),
    )


async def job_duration_p95(
    conn: AsyncConnection, *, project_id: uuid.UUID, job: str, last: int, before: uuid.UUID
) -> float | None:
    """The p95 duration (s) of the job's last N succeeded runs other than ``before``; None below 2 runs."""
    rows = await dict_rows(
        conn,
        "with recent as (select extract(epoch from r.finished_at - coalesce(r.started_at, r.created_at))::float d "
        "from ops.runs r join ops.projects p on p.id = r.project_id "
        "left join ops.job_templates jt on jt.id = r.template_id "
        "where r.project_id = %s and p.slug || '/' || coalesce(jt.name, r.name) = %s and r.status = 'succeeded' "
        "and r.id <> %s order by r.finished_at desc limit %s) "
        "select count(*) n, percentile_cont(0.95) within group (order by d) p95 from recent",
        (project_id, job, before, last),
    )
    if not rows or rows[0]["n"] < 2:
        return None
    return float(rows[0]["p95"])


async def running_runs(conn: AsyncConnection, now: datetime) -> list[Row]:
    """Runs still going (for duration rules while they run)."""
    return await dict_rows(conn, _RUN_SIGNAL + " where r.status in ('queued', 'running')", {"now": now})


async def job_last_success(conn: AsyncConnection, *, org_id: uuid.UUID, rule: AlertRule) -> list[Row]:
    """Per job matching the rule (template jobs of its project): the last success time, for SLA rules."""
    return await dict_rows(
        conn,
        "select jt.id as template_id, jt.project_id, p.slug || '/' || jt.name as job, "
        "(select max(r.finished_at) from ops.runs r where r.template_id = jt.id and r.status = 'succeeded' "
        " and (%(env)s::text is null or r.environment_id in "
        "      (select e.id from ops.environments e where e.project_id = jt.project_id and e.name = %(env)s))) "
        "  as last_success "
        "from ops.job_templates jt join ops.projects p on p.id = jt.project_id "
        "where jt.org_id = %(org)s and jt.archived_at is null "
        "and (%(project)s::uuid is null or jt.project_id = %(project)s) "
        "and (%(template)s::uuid is null or jt.id = %(template)s)",
        {
            "org": org_id,
            "env": rule.match_environment,
            "project": rule.project_id,
            "template": rule.match_template_id,
        },
    )


async def local_day_start(conn: AsyncConnection, *, now: datetime, timezone: str, at: Any) -> tuple[datetime, str]:
    """The instant of time-of-day ``at`` today in ``timezone``, and today's local date (ISO)."""
    rows = await dict_rows(
        conn,
        "select ((%(now)s at time zone %(tz)s)::date + %(at)s::time) at time zone %(tz)s as due, "
        "(%(now)s at time zone %(tz)s)::date::text as day",
        {"now": now, "tz": timezone, "at": at},
    )
    return rows[0]["due"], rows[0]["day"]


async def queued_too_long(
    conn: AsyncConnection, *, org_id: uuid.UUID, seconds: int, pool: str | None, now: datetime
) -> list[Row]:
    """Tasks of the org queued longer than ``seconds`` (with why they are still queued)."""
    return await dict_rows(
        conn,
        "select t.id, t.run_id, t.key, t.pool, t.project_id, t.queued_at, t.route_rule_id, "
        "extract(epoch from %(now)s - t.queued_at)::float as waited_s, "
        "case when not exists (select 1 from ops.executors x where x.org_id = t.org_id and x.pool = t.pool "
        "  and x.status = 'online') then 'no online executor in pool ' || coalesce(t.pool, 'default') "
        "  else 'executors of pool ' || coalesce(t.pool, 'default') || ' are busy or lack the engine/labels' end "
        "  as why "
        "from ops.tasks t where t.org_id = %(org)s and t.status = 'queued' "
        "and t.queued_at < %(now)s - make_interval(secs => %(s)s) and (%(pool)s::text is null or t.pool = %(pool)s) "
        "order by t.queued_at limit 500",
        {"org": org_id, "s": seconds, "pool": pool, "now": now},
    )


async def executors_of_org(conn: AsyncConnection, *, org_id: uuid.UUID, pool: str | None) -> list[Row]:
    """The org's executors (not revoked) with status and last heartbeat."""
    return await dict_rows(
        conn,
        "select id, name, pool, status, last_heartbeat_at from ops.executors "
        "where org_id = %s and status <> 'revoked' and (%s::text is null or pool = %s)",
        (org_id, pool, pool),
    )


async def cap_levels(conn: AsyncConnection, *, org_id: uuid.UUID, day: Any) -> list[Row]:
    """Today's use of the org's per-day caps, as a share of their limit, and refusals (breaches)."""
    return await dict_rows(
        conn,
        "select c.id, c.name, c.kind, c.limit_value, c.project_id, coalesce(u.breaches, 0) as breaches, "
        "case c.kind when 'runs_per_day' then coalesce(u.runs, 0) "
        "  when 'compute_seconds_per_day' then coalesce(u.compute_seconds, 0) else null end as used "
        "from ops.caps c left join ops.cap_usage u on u.cap_id = c.id and u.day = %s "
        "where c.org_id = %s and c.enabled",
        (day, org_id),
    )


async def schedule_fires_missed(
    conn: AsyncConnection, *, org_id: uuid.UUID, project_id: uuid.UUID | None, since: datetime
) -> list[Row]:
    """Schedule fires recorded as missed or skipped since a time (ops.schedule_fires of the scheduler)."""
    return await dict_rows(
        conn,
        "select f.id, f.schedule_id, f.project_id, f.fire_time, f.status, f.reason, s.name as schedule "
        "from ops.schedule_fires f join ops.schedules s on s.id = f.schedule_id "
        "where f.org_id = %s and f.status in ('missed', 'skipped') and f.created_at >= %s "
        "and (%s::uuid is null or f.project_id = %s) order by f.created_at",
        (org_id, since, project_id, project_id),
    )


async def dataset_writes(conn: AsyncConnection, *, org_id: uuid.UUID, rule: AlertRule) -> list[Row]:
    """Datasets named by a freshness rule with their last write (the run that last wrote them)."""
    return await dict_rows(
        conn,
        "select d.id, d.namespace, d.name, d.project_id, d.last_run_id, "
        "coalesce(r.finished_at, d.updated_at) as last_write "
        "from ops.datasets d join ops.projects p on p.id = d.project_id "
        "left join ops.runs r on r.id = d.last_run_id "
        "where p.org_id = %s and (d.name = %s or d.namespace || '/' || d.name = %s) "
        "and (%s::uuid is null or d.project_id = %s)",
        (org_id, rule.dataset_name, rule.dataset_name, rule.project_id, rule.project_id),
    )


async def events_after(conn: AsyncConnection, *, run_id: str, after_id: int) -> list[Row]:
    """A run's events after an id: read on the run's NOTIFY, never by polling."""
    return await dict_rows(
        conn,
        "select id, run_id, task_id, type, level, message, data, ts from ops.events "
        "where run_id = %s and id > %s order by id limit 1000",
        (run_id, after_id),
    )


async def active_mute(conn: AsyncConnection, *, org_id: uuid.UUID, job: str | None, now: datetime) -> bool:
    """True when the job is muted for the org at ``now``."""
    if job is None:
        return False
    rows = await dict_rows(
        conn,
        "select 1 from ops.alert_mutes where org_id = %s and job = %s and (until is null or until > %s)",
        (org_id, job, now),
    )
    return bool(rows)


async def fire(
    conn: AsyncConnection,
    *,
    rule_id: uuid.UUID,
    subject: str,
    window: str,
    at: datetime,
    title: str,
    summary: str,
    detail: dict[str, Any] | None = None,
    project_id: uuid.UUID | None = None,
    run_id: uuid.UUID | None = None,
    task_id: uuid.UUID | None = None,
    job: str | None = None,
    route_rule_id: uuid.UUID | None = None,
) -> Firing | None:
    """Fire (rule, subject, window) once: the firing this caller won, or None if it fired before."""
    rows = await dict_rows(
        conn,
        "select * from ops.fire_alert(%s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s, %s, %s)",
        (
            rule_id,
            subject,
            window,
            at,
            title,
            summary,
            json.dumps(detail or {}, default=str),
            project_id,
            run_id,
            task_id,
            job,
            route_rule_id,
        ),
    )
    if not rows:
        return None
    row = rows[0]
    return Firing(row["incident_id"], int(row["event_id"]), row["event_kind"], bool(row["snoozed"]))


async def resolve(
    conn: AsyncConnection, *, rule_id: uuid.UUID, subject: str, at: datetime, reason: str, by: str = "evaluator"
) -> tuple[uuid.UUID, int] | None:
    """Resolve the open incident of (rule, subject): its id and resolved event, or None if none was open."""
    rows = await dict_rows(
        conn, "select * from ops.resolve_alert(%s, %s, %s, %s, %s)", (rule_id, subject, at, by, reason)
    )
    return (rows[0]["incident_id"], int(rows[0]["event_id"])) if rows else None


async def open_subjects(conn: AsyncConnection, *, rule_id: uuid.UUID) -> list[str]:
    """Subjects with an open (or acked) incident of a rule: candidates for resolving."""
    rows = await dict_rows(
        conn, "select subject from ops.alert_incidents where rule_id = %s and state <> 'resolved'", (rule_id,)
    )
    return [r["subject"] for r in rows]


async def escalate_due(conn: AsyncConnection, *, now: datetime) -> list[Row]:
    """Escalate unacknowledged incidents whose delay passed; one row per escalation made."""
    return await dict_rows(conn, "select * from ops.escalate_incidents(%s)", (now,))


async def incident(conn: AsyncConnection, incident_id: uuid.UUID | str) -> Row | None:
    """One incident with its rule's name, kind, notify targets and escalate flag."""
    rows = await dict_rows(
        conn,
        "select i.*, coalesce(r.name, 'org-wide rule') as rule_name, coalesce(r.kind, '') as rule_kind, "
        "coalesce(r.notify, '{}') as notify, coalesce(r.escalate, false) as escalate "
        "from ops.alert_incidents i left join ops.alert_rules r on r.id = i.rule_id where i.id = %s",
        (incident_id,),
    )
    return rows[0] if rows else None


async def route_owner(conn: AsyncConnection, route_rule_id: uuid.UUID | None) -> str | None:
    """The owner of a routing rule (who is paged first when a rule escalates)."""
    if route_rule_id is None:
        return None
    rows = await dict_rows(conn, "select owner from ops.routing_rules where id = %s", (route_rule_id,))
    return rows[0]["owner"] if rows else None


async def list_incidents(
    conn: AsyncConnection, *, org_ids: list[uuid.UUID] | None = None, state: str | None = None, limit: int = 100
) -> list[Row]:
    """Incidents (of these orgs; all the caller may read when None), newest activity first."""
    return await dict_rows(
        conn,
        "select i.*, coalesce(r.name, 'org-wide rule') as rule_name, coalesce(r.kind, '') as rule_kind "
        "from ops.alert_incidents i left join ops.alert_rules r on r.id = i.rule_id "
        "where (%s::uuid[] is null or i.org_id = any(%s)) and (%s::text is null or i.state = %s) "
        "order by i.last_fired_at desc limit %s",
        (org_ids, org_ids, state, state, limit),
    )


@dataclass(frozen=True)
class IncidentTimeline:
    """An incident's events (fired, escalated, acked, ...) and its deliveries log."""

    events: list[AlertIncidentEvent]
    deliveries: list[AlertDelivery]


async def incident_timeline(conn: AsyncConnection, incident_id: uuid.UUID) -> IncidentTimeline:
    """An incident's events and its deliveries log."""
    events = await model_list(
        conn, AlertIncidentEvent, "select * from ops.alert_incident_events where incident_id = %s order by id",
        (incident_id,),
    )
    return IncidentTimeline(events, await deliveries.deliveries_of(conn, incident_id=incident_id))


async def act(
    conn: AsyncConnection,
    *,
    incident_id: uuid.UUID,
    action: str,
    user_id: uuid.UUID | None,
    actor: str,
    until: datetime | None = None,
    at: datetime | None = None,
) -> Row:
    """Ack, snooze or resolve an incident as ``user_id`` (operator of its project or org)."""
    rows = await dict_rows(
        conn,
        "select * from ops.act_on_incident(%s, %s, %s, %s, %s, coalesce(%s, now()))",
        (incident_id, action, user_id, actor, until, at),
    )
    return rows[0]


async def list_rules(conn: AsyncConnection, *, org_ids: list[uuid.UUID] | None = None) -> list[Row]:
    """Rules (of these orgs; all the caller may read when None) with their last firing and incident counts."""
    return await dict_rows(
        conn,
        "select r.*, (select max(i.last_fired_at) from ops.alert_incidents i where i.rule_id = r.id) as last_fired_at, "
        "(select count(*) from ops.alert_incidents i where i.rule_id = r.id and i.state <> 'resolved') "
        "  as open_incidents, "
        "(select count(*) from ops.alert_incidents i where i.rule_id = r.id) as incidents "
        "from ops.alert_rules r where (%s::uuid[] is null or r.org_id = any(%s)) order by r.name",
        (org_ids, org_ids),
    )


async def set_mute(
    conn: AsyncConnection,
    *,
    org_id: uuid.UUID,
    job: str,
    mute: bool,
    until: datetime | None,
    user_id: uuid.UUID | None,
    actor: str,
) -> bool:
    """Mute (or unmute) a job for the whole org."""
    rows = await dict_rows(
        conn, "select ops.set_job_mute(%s, %s, %s, %s, %s, %s) as muted", (org_id, job, mute, until, user_id, actor)
    )
    return bool(rows[0]["muted"])


RULE_FIELDS = (
    "name",
    "kind",
    "project_id",
    "match_environment",
    "match_template_id",
    "threshold",
    "window_s",
    "severity",
    "notify",
    "escalate",
    "enabled",
    "description",
    "factor",
    "baseline_runs",
    "sla_time",
    "sla_timezone",
    "cap_percent",
    "match_pool",
    "event_type",
    "event_level",
    "event_attributes",
    "dataset_name",
    "escalate_after_s",
)


def _rule_values(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: (Jsonb(v) if k == "event_attributes" else v) for k, v in fields.items() if k in RULE_FIELDS}


async def rule(conn: AsyncConnection, rule_id: uuid.UUID) -> AlertRule | None:
    """One rule, when the caller may read it."""
    return await first_model(conn, AlertRule, "select * from ops.alert_rules where id = %s", (rule_id,))


async def create_rule(conn: AsyncConnection, *, org_id: uuid.UUID, fields: dict[str, Any]) -> AlertRule:
    """Create a rule (RLS: org admins for org-wide rules, project admins for a project's)."""
    values = {"org_id": org_id, **_rule_values(fields)}
    statement = sql.SQL("insert into ops.alert_rules ({}) values ({}) returning *").format(
        sql.SQL(", ").join(map(sql.Identifier, values)), sql.SQL(", ").join(sql.Placeholder() * len(values))
    )
    created = await first_model(conn, AlertRule, statement, list(values.values()))
    assert created is not None  # an insert that did not raise returned its row
    return created


async def update_rule(
    conn: AsyncConnection, *, rule_id: uuid.UUID, fields: dict[str, Any]
) -> AlertRule | None:
    """Change a rule's fields (RLS decides who may); None when the caller cannot see or change it."""
    values = _rule_values(fields)
    if not values:
        return await rule(conn, rule_id)
    statement = sql.SQL("update ops.alert_rules set {}, updated_at = now() where id = {} returning *").format(
        sql.SQL(", ").join(sql.SQL("{} = {}").format(sql.Identifier(k), sql.Placeholder()) for k in values),
        sql.Placeholder(),
    )
    return await first_model(conn, AlertRule, statement, [*values.values(), rule_id])


async def delete_rule(conn: AsyncConnection, *, rule_id: uuid.UUID) -> bool:
    """Delete a rule and its incidents (RLS decides who may)."""
    rows = await dict_rows(conn, "delete from ops.alert_rules where id = %s returning id", (rule_id,))
    return bool(rows)


INCIDENT_STATES = ("open", "acked", "resolved")
SEVERITIES = ("info", "warning", "critical")
_INCIDENT_KEYSET = Keyset(key="i.last_fired_at", row_id="i.id")


@dataclass(frozen=True)
class IncidentsQuery:
    """Filters of the incidents list (each optional)."""

    states: tuple[str, ...] = ()
    severity: str | None = None
    rule_id: uuid.UUID | None = None
    project_id: uuid.UUID | None = None
    text: str | None = None


async def incidents_page(
    conn: AsyncConnection, *, query: IncidentsQuery, cursor: str | None = None, limit: int = 50
) -> Page:
    """One keyset page of the incidents the caller may read, most recently fired first."""
    conditions = ListQuery()
    conditions.one_of("i.state", query.states, allowed=INCIDENT_STATES, field="state")
    if query.severity:
        conditions.one_of("i.severity", (query.severity,), allowed=SEVERITIES, field="severity")
    conditions.equal("i.rule_id", query.rule_id)
    conditions.equal("i.project_id", query.project_id)
    if query.text:
        conditions.add("(i.title ilike %s or i.subject ilike %s)", *([f"%{escape_like(query.text)}%"] * 2))
    if cursor:
        fired_at, row_id = decode_cursor(cursor)
        conditions.after(_INCIDENT_KEYSET, fired_at, row_id)
    return await conditions.page(
        conn,
        columns="i.*, coalesce(r.name, 'org-wide rule') as rule_name, coalesce(r.kind, '') as rule_kind",
        source="ops.alert_incidents i left join ops.alert_rules r on r.id = i.rule_id",
        keyset=_INCIDENT_KEYSET,
        limit=limit,
        cursor_of=lambda row: encode_cursor(row["last_fired_at"], row["id"]),
    )


async def mutes(conn: AsyncConnection, *, org_ids: list[uuid.UUID] | None = None, now: datetime) -> list[Row]:
    """Jobs muted for their org at ``now`` (of these orgs; all the caller may read when None)."""
    return await dict_rows(
        conn,
        "select org_id, job, until, muted_by, created_at from ops.alert_mutes "
        "where (%s::uuid[] is null or org_id = any(%s)) and (until is null or until > %s) order by job",
        (org_ids, org_ids, now),
    )


async def project_org(conn: AsyncConnection, project_id: uuid.UUID) -> uuid.UUID:
    """The org of a project the caller can see (NotFound naming `project` otherwise)."""
    rows = await dict_rows(conn, "select org_id from ops.projects where id = %s", (project_id,))
    if not rows:
        raise NotFound(f"project {project_id} does not exist or is not visible to you", field="project")
    return uuid.UUID(str(rows[0]["org_id"]))
