"""Run history of a job template: each run's duration and outcome, success per day, each task's durations."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection

from control_room.db.rows import dict_rows
from control_room.services.errors import Invalid

MAX_HISTORY_RUNS = 1000


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_HISTORY_RUNS:
        raise Invalid(f"must be between 1 and {MAX_HISTORY_RUNS}", field="limit")


async def run_durations(conn: AsyncConnection, *, template_id: uuid.UUID, limit: int = 200) -> list[dict[str, Any]]:
    """The template's latest ``limit`` runs, oldest first: id, status, trigger, version, created_at and
    duration in seconds (None while a run has not finished)."""
    _check_limit(limit)
    return await dict_rows(
        conn,
        """
            select * from (
                select r.id, r.status, r.trigger, r.created_at, v.version,
                       extract(epoch from r.finished_at - r.started_at)::float8 as duration_s
                from ops.runs r left join ops.job_template_versions v on v.id = r.template_version_id
                where r.template_id = %s order by r.created_at desc, r.id desc limit %s
            ) x order by x.created_at, x.id
            """,
        (template_id, limit),
    )


async def daily_success(conn: AsyncConnection, *, template_id: uuid.UUID, since: datetime) -> list[dict[str, Any]]:
    """Per UTC day since ``since``: finished runs, succeeded runs and the success rate (0..1)."""
    rows = await dict_rows(
        conn,
        """
            select (r.created_at at time zone 'UTC')::date as day,
                   count(*)::int as finished,
                   count(*) filter (where r.status = 'succeeded')::int as succeeded
            from ops.runs r
            where r.template_id = %s and r.created_at >= %s and r.status in ('succeeded', 'failed', 'cancelled')
            group by 1 order by 1
            """,
        (template_id, since),
    )
    for row in rows:
        row["rate"] = row["succeeded"] / row["finished"]
    return rows


async def task_durations(conn: AsyncConnection, *, template_id: uuid.UUID, limit: int = 200) -> list[dict[str, Any]]:
    """Each finished task of the template's latest ``limit`` runs, oldest first: task key, run id,
    run created_at, status and duration in seconds."""
    _check_limit(limit)
    return await dict_rows(
        conn,
        """
            select t.key, t.status, r.id as run_id, r.created_at,
                   extract(epoch from t.finished_at - t.started_at)::float8 as duration_s
            from (select x.id, x.created_at from ops.runs x where x.template_id = %s
                  order by x.created_at desc, x.id desc limit %s) r
            join ops.tasks t on t.run_id = r.id
            where t.finished_at is not null and t.started_at is not null
            order by r.created_at, r.id, t.key
            """,
        (template_id, limit),
    )
