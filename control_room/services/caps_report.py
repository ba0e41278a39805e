"""Reads behind `lakehouse caps report`: each cap of an org with its recorded usage (ops.cap_usage) over a period."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

# The usage columns a cap's busiest day can be ranked by.
MEASURES = ("runs", "compute_seconds", "scanned_bytes", "peak_concurrency", "max_runtime_s")

_REPORT_SQL = """
select c.id, c.name, c.scope, c.kind, c.limit_value, c.enabled,
       p.slug as project, ep.slug as env_project, e.name as environment, c.pool, c.engine,
       count(u.day) as days,
       coalesce(sum(u.runs), 0) as runs,
       coalesce(sum(u.compute_seconds), 0) as compute_seconds,
       coalesce(max(u.peak_concurrency), 0) as peak_concurrency,
       coalesce(max(u.max_runtime_s), 0) as max_runtime_s,
       coalesce(sum(u.scanned_bytes), 0) as scanned_bytes,
       coalesce(sum(u.breaches), 0) as breaches,
       coalesce(max(u.runs), 0) as busiest_runs,
       coalesce(max(u.compute_seconds), 0) as busiest_compute_seconds,
       coalesce(max(u.scanned_bytes), 0) as busiest_scanned_bytes
from ops.caps c
join ops.orgs o on o.id = c.org_id
left join ops.projects p on p.id = c.project_id
left join ops.environments e on e.id = c.environment_id
left join ops.projects ep on ep.id = e.project_id
left join ops.cap_usage u on u.cap_id = c.id and u.day between %(start)s and %(end)s
where o.slug = %(org)s
group by c.id, p.slug, ep.slug, e.name
order by array_position(array['org', 'project', 'environment', 'pool', 'engine'], c.scope), c.name
"""

_PEAK_DAY_SQL = """
select u.day from ops.cap_usage u where u.cap_id = %(cap)s and u.day between %(start)s and %(end)s
order by {column} desc, u.day limit 1
"""


def org_exists(conn: psycopg.Connection[Any], *, org: str) -> bool:
    """Whether an org with this slug exists."""
    return conn.execute("select 1 from ops.orgs where slug = %s", (org,)).fetchone() is not None


def usage_by_cap(conn: psycopg.Connection[Any], *, org: str, start: date, end: date) -> list[dict[str, Any]]:
    """Every cap of ``org`` with its usage totals and busiest-day figures from ``start`` to ``end``."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_REPORT_SQL, {"org": org, "start": start, "end": end}).fetchall()


def busiest_day(
    conn: psycopg.Connection[Any], *, cap_id: uuid.UUID, measure: str, start: date, end: date
) -> date | None:
    """The day in the period on which ``measure`` (one of ``MEASURES``) was highest for the cap."""
    if measure not in MEASURES:
        raise ValueError(f"unknown usage measure {measure!r}; use one of {', '.join(MEASURES)}")
    query = sql.SQL(_PEAK_DAY_SQL).format(column=sql.Identifier("u", measure))
    row = conn.execute(query, {"cap": cap_id, "start": start, "end": end}).fetchone()
    return row[0] if row else None
