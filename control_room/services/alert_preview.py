"""'Test this rule against the last 7 days': how often a rule (saved or still being edited) would have fired.

Each kind replays its signal over the recorded history (runs, tasks, events, schedule fires, cap
usage) as the caller sees it through RLS. Executors and datasets keep no history of their state, so
those kinds show what would fire now, and say so.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from control_room.db.rows import dict_rows
from control_room.services.errors import Invalid

PREVIEW_DAYS = 7

# Runs of the rule's scope that finished in the window; every query below selects (day, subject).
_RUNS = """
from ops.runs r
join ops.environments e on e.id = r.environment_id
join ops.projects p on p.id = r.project_id
left join ops.job_templates jt on jt.id = r.template_id
where r.org_id = %(org)s and (%(project)s::uuid is null or r.project_id = %(project)s)
  and (%(env)s::text is null or e.name = %(env)s) and (%(template)s::uuid is null or r.template_id = %(template)s)
  and r.finished_at >= %(since)s and r.finished_at < %(now)s
"""
_JOB = "p.slug || '/' || coalesce(jt.name, r.name)"
_DURATION = "extract(epoch from r.finished_at - coalesce(r.started_at, r.created_at))"

_TASKS = """
from ops.tasks t
join ops.runs r on r.id = t.run_id
join ops.environments e on e.id = t.environment_id
join ops.projects p on p.id = t.project_id
left join ops.job_templates jt on jt.id = r.template_id
where t.org_id = %(org)s and (%(project)s::uuid is null or t.project_id = %(project)s)
  and (%(env)s::text is null or e.name = %(env)s) and (%(template)s::uuid is null or r.template_id = %(template)s)
  and (%(pool)s::text is null or t.pool = %(pool)s)
"""

QUERIES: dict[str, str] = {
    "run_failed": f"select r.finished_at::date as day, {_JOB} as subject {_RUNS} and r.status = 'failed'",
    "task_failed": "select t.finished_at::date as day, "
    + _JOB
    + " || '/' || t.key as subject "
    + _TASKS
    + " and t.status in ('failed', 'timed_out', 'lost') and t.finished_at >= %(since)s and t.finished_at < %(now)s",
    "run_duration": f"""
        with done as (select r.finished_at, {_JOB} as job, {_DURATION} as d, r.status {_RUNS}
                      and r.status in ('succeeded', 'failed')),
             p95 as (select job, percentile_cont(0.95) within group (order by d) as p95, count(*) as n
                     from done where status = 'succeeded' group by job)
        select done.finished_at::date as day, done.job as subject from done left join p95 using (job)
        where done.d > least(coalesce(%(threshold)s::float, 'infinity'),
                             case when %(factor)s::float is not null and p95.n >= 2
                                  then %(factor)s::float * p95.p95 else 'infinity' end)""",
    "queue_wait": "select t.queued_at::date as day, 'pool:' || coalesce(t.pool, 'default') as subject "
    + _TASKS
    + " and t.queued_at >= %(since)s and t.queued_at < %(now)s"
    " and extract(epoch from coalesce(t.claimed_at, %(now)s) - t.queued_at) > %(threshold)s",
    "event_match": """
        select ev.ts::date as day, 'run:' || r.id as subject
        from ops.events ev join ops.runs r on r.id = ev.run_id
        join ops.environments e on e.id = r.environment_id join ops.projects p on p.id = r.project_id
        where r.org_id = %(org)s and (%(project)s::uuid is null or r.project_id = %(project)s)
          and (%(env)s::text is null or e.name = %(env)s)
          and (%(template)s::uuid is null or r.template_id = %(template)s)
          and ev.ts >= %(since)s and ev.ts < %(now)s and ev.type = %(event_type)s
          and array_position(array['debug', 'info', 'warning', 'error'], ev.level)
              >= array_position(array['debug', 'info', 'warning', 'error'], coalesce(%(event_level)s, 'debug'))
          and ev.data @> %(attributes)s""",
    "schedule_missed": """
        select f.created_at::date as day, 'schedule:' || s.name as subject
        from ops.schedule_fires f join ops.schedules s on s.id = f.schedule_id
        where f.org_id = %(org)s and (%(project)s::uuid is null or f.project_id = %(project)s)
          and f.status in ('missed', 'skipped') and f.created_at >= %(since)s and f.created_at < %(now)s""",
    "cap_breach": """
        select u.day, 'cap:' || c.name as subject
        from ops.cap_usage u join ops.caps c on c.id = u.cap_id
        where c.org_id = %(org)s and (%(project)s::uuid is null or c.project_id = %(project)s)
          and u.day >= %(since)s::date and u.day <= %(now)s::date
          and (u.breaches > 0 or (%(cap_percent)s::int is not null and c.limit_value > 0 and
               case c.kind when 'runs_per_day' then u.runs when 'compute_seconds_per_day' then u.compute_seconds end
               * 100.0 / c.limit_value >= %(cap_percent)s))""",
    # A local day whose deadline passed with no success of the job since that day began.
    "sla": """
        with days as (select d::date as day from generate_series((%(since)s at time zone %(tz)s)::date,
                          (%(now)s at time zone %(tz)s)::date, interval '1 day') d),
             jobs as (select jt.id, p.slug || '/' || jt.name as job from ops.job_templates jt
                      join ops.projects p on p.id = jt.project_id
                      where jt.org_id = %(org)s and jt.archived_at is null
                        and (%(project)s::uuid is null or jt.project_id = %(project)s)
                        and (%(template)s::uuid is null or jt.id = %(template)s))
        select days.day, 'job:' || jobs.job as subject from days cross join jobs
        where ((days.day + %(sla_time)s::time) at time zone %(tz)s) between %(since)s and %(now)s
          and not exists (
            select 1 from ops.runs r join ops.environments e on e.id = r.environment_id
            where r.template_id = jobs.id and r.status = 'succeeded' and (%(env)s::text is null or e.name = %(env)s)
              and r.finished_at >= (days.day::timestamp at time zone %(tz)s)
              and r.finished_at <= ((days.day + %(sla_time)s::time) at time zone %(tz)s))""",
    "executor_offline": """
        select %(now)s::date as day, 'executor:' || x.name as subject from ops.executors x
        where x.org_id = %(org)s and x.status <> 'revoked' and (%(pool)s::text is null or x.pool = %(pool)s)
          and (x.last_heartbeat_at is null
               or x.last_heartbeat_at < %(now)s - make_interval(secs => coalesce(%(threshold)s, 90)))""",
    "dataset_freshness": """
        select %(now)s::date as day, 'dataset:' || d.name as subject
        from ops.datasets d join ops.projects p on p.id = d.project_id left join ops.runs r on r.id = d.last_run_id
        where p.org_id = %(org)s and (d.name = %(dataset)s or d.namespace || '/' || d.name = %(dataset)s)
          and (%(project)s::uuid is null or d.project_id = %(project)s)
          and coalesce(r.finished_at, d.updated_at) < %(now)s - make_interval(secs => %(threshold)s)""",
}
NOW_ONLY = {
    "executor_offline": "executors keep no heartbeat history: this is what would fire now",
    "dataset_freshness": "datasets keep only their last write: this is what would fire now",
}
REQUIRED: dict[str, tuple[str, ...]] = {
    "queue_wait": ("threshold",),
    "dataset_freshness": ("threshold", "dataset_name"),
    "sla": ("sla_time",),
    "event_match": ("event_type",),
}


@dataclass(frozen=True)
class RulePreview:
    """How often the rule would have fired: firings (each a window), incidents (distinct subjects), by day."""

    firings: int
    subjects: int
    by_day: list[tuple[str, int]] = field(default_factory=list)
    top_subjects: list[tuple[str, int]] = field(default_factory=list)
    note: str = ""


async def preview_rule(
    conn: AsyncConnection, *, org_id: uuid.UUID, rule: dict[str, Any], now: datetime, days: int = PREVIEW_DAYS
) -> RulePreview:
    """Replay ``rule`` (the fields of ops.alert_rules) over the ``days`` before ``now``."""
    kind = rule.get("kind") or ""
    if kind not in QUERIES:
        raise Invalid(f'unknown rule kind "{kind}"; use one of {", ".join(QUERIES)}', field="kind")
    for name in REQUIRED.get(kind, ()):
        if rule.get(name) in (None, ""):
            raise Invalid(f"a {kind} rule needs {name}", field=name)
    if kind == "run_duration" and not (rule.get("threshold") or rule.get("factor")):
        raise Invalid("a run_duration rule needs threshold or factor", field="threshold")
    params = {
        "org": org_id,
        "project": rule.get("project_id"),
        "env": rule.get("match_environment"),
        "template": rule.get("match_template_id"),
        "pool": rule.get("match_pool"),
        "threshold": rule.get("threshold"),
        "factor": rule.get("factor"),
        "cap_percent": rule.get("cap_percent"),
        "event_type": rule.get("event_type"),
        "event_level": rule.get("event_level"),
        "attributes": Jsonb(rule.get("event_attributes") or {}),
        "dataset": rule.get("dataset_name"),
        "sla_time": rule.get("sla_time"),
        "tz": rule.get("sla_timezone") or "UTC",
        "since": now - timedelta(days=days),
        "now": now,
    }
    statement = f"select day::text as day, subject, count(*) as n from ({QUERIES[kind]}) x group by day, subject"
    rows = await dict_rows(conn, statement, params)
    by_day: dict[str, int] = {}
    by_subject: dict[str, int] = {}
    for row in rows:
        by_day[row["day"]] = by_day.get(row["day"], 0) + int(row["n"])
        by_subject[row["subject"]] = by_subject.get(row["subject"], 0) + int(row["n"])
    top = sorted(by_subject.items(), key=lambda item: (-item[1], item[0]))[:5]
    return RulePreview(
        firings=sum(by_day.values()),
        subjects=len(by_subject),
        by_day=sorted(by_day.items()),
        top_subjects=top,
        note=NOW_ONLY.get(kind, ""),
    )
