"""Backfills: one run of a template per interval of a date range, with a concurrency limit, as one group."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import AsyncConnection

from control_room.db.rows import dict_rows, scalar
from control_room.services.errors import Invalid
from control_room.services.jobs import validate_params, version_schema
from control_room.services.row_detail import RowDetail
from control_room.services.schedules import CronSchedule, schedule_row

MAX_INTERVALS = 10_000
RUN_ORDERS = ("oldest_first", "newest_first")
_DURATION = re.compile(r"^(\d+)\s*(m|min|h|d|w)$")
_UNITS = {"m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_step(step: str) -> timedelta | None:
    """A duration step (``15m``, ``6h``, ``1d``, ``1w``), or None when ``step`` is a cron expression."""
    match = _DURATION.match(step.strip().lower())
    if not match:
        return None
    seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise Invalid("must be longer than zero", field="step")
    return timedelta(seconds=seconds)


def backfill_intervals(
    start: datetime, end: datetime, step: str, timezone: str = "UTC"
) -> list[tuple[datetime, datetime]]:
    """The intervals of ``[start, end]`` oldest first: fixed ``step`` durations from ``start``, or the
    spans between consecutive fire times of a cron ``step`` read in ``timezone``. Only whole
    intervals inside the range count."""
    if start.tzinfo is None or end.tzinfo is None:
        raise Invalid("give a time zone (e.g. 2026-11-01T00:00:00Z)", field="start" if start.tzinfo is None else "end")
    if start >= end:
        raise Invalid("must be after start", field="end")
    intervals: list[tuple[datetime, datetime]] = []
    duration = parse_step(step)
    if duration is not None:
        a = start
        while a + duration <= end:
            intervals.append((a.astimezone(UTC), (a + duration).astimezone(UTC)))
            a += duration
            if len(intervals) > MAX_INTERVALS:
                break
    else:
        cron = CronSchedule.of(step, timezone)
        a = cron.next_after(start - timedelta(microseconds=1))
        while True:
            b = cron.next_after(a)
            if b > end or len(intervals) > MAX_INTERVALS:
                break
            intervals.append((a, b))
            a = b
    if not intervals:
        raise Invalid(f'the range holds no whole interval of step "{step}"', field="step")
    if len(intervals) > MAX_INTERVALS:
        raise Invalid(f"the range holds more than {MAX_INTERVALS} intervals; use a longer step", field="step")
    return intervals


async def create_backfill(
    conn: AsyncConnection,
    *,
    template_id: uuid.UUID,
    environment: str,
    start: datetime,
    end: datetime,
    step: str | None,
    schedule_id: uuid.UUID | None = None,
    params: dict[str, Any] | None = None,
    version: int | None = None,
    max_concurrency: int = 1,
    run_order: str = "oldest_first",
    requested_by: uuid.UUID | None = None,
    requested_by_name: str | None = None,
) -> dict[str, Any]:
    """Create a backfill (operators; checked in SQL) and submit its first runs."""
    if run_order not in RUN_ORDERS:
        raise Invalid(f"must be one of {', '.join(RUN_ORDERS)}", field="order")
    if not 1 <= max_concurrency <= 100:
        raise Invalid("must be between 1 and 100", field="max_concurrency")
    timezone = "UTC"
    run_params = dict(params or {})
    if schedule_id is not None:
        schedule = await schedule_row(conn, schedule_id=schedule_id, field="schedule")
        if schedule.template_id != template_id:
            raise Invalid("the schedule runs another job template", field="schedule")
        step = step or schedule.cron
        timezone = schedule.timezone
        run_params = {**schedule.params, **run_params}
    if not step:
        raise Invalid("give a step (e.g. 1d, 6h or a cron expression) or a schedule", field="step")
    intervals = backfill_intervals(start, end, step, timezone)
    schema = await version_schema(conn, template_id=template_id, version=version)
    checked = validate_params(schema, run_params)
    ordered = intervals if run_order == "oldest_first" else list(reversed(intervals))
    backfill_id = await scalar(
        conn,
        "select ops.create_backfill(%s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s, %s::jsonb, %s, %s, %s)",
        (
            template_id,
            environment,
            start,
            end,
            step,
            timezone,
            json.dumps(checked),
            version,
            max_concurrency,
            run_order,
            json.dumps([[a.isoformat(), b.isoformat()] for a, b in ordered]),
            schedule_id,
            requested_by,
            requested_by_name,
        ),
    )
    return await get_backfill(conn, backfill_id=backfill_id)


BACKFILL_COLUMNS = """
    b.id, b.project_id, p.slug as project, b.template_id, t.name as template, e.name as environment, b.schedule_id,
    b.range_start, b.range_end, b.step, b.timezone, b.params, b.template_version, b.max_concurrency, b.run_order,
    b.total, b.status, b.requested_by_name, b.cancelled_at, b.cancelled_by, b.created_at, b.updated_at,
    b.finished_at,
    (select jsonb_object_agg(k, n) from (
        select coalesce(r.status, i.status) as k, count(*) as n
        from ops.backfill_intervals i left join ops.runs r on r.id = i.run_id
        where i.backfill_id = b.id group by 1) c) as progress
"""
BACKFILL_FROM = """
    ops.backfills b join ops.projects p on p.id = b.project_id join ops.job_templates t on t.id = b.template_id
    join ops.environments e on e.id = b.environment_id
"""


def _with_progress(row: dict[str, Any]) -> dict[str, Any]:
    progress = {k: int(v) for k, v in (row.get("progress") or {}).items()}
    row["progress"] = progress
    row["done"] = sum(progress.get(k, 0) for k in ("succeeded", "failed", "cancelled"))
    return row


BACKFILL_DETAIL = RowDetail(
    BACKFILL_COLUMNS, BACKFILL_FROM, "b.id", what="backfill", field="backfill_id", children="intervals",
    child_rows="""
        select i.position, i.data_interval_start, i.data_interval_end, i.status, i.run_id, i.error,
               r.status as run_status
        from ops.backfill_intervals i left join ops.runs r on r.id = i.run_id
        where i.backfill_id = %(id)s order by i.position
    """,
)  # fmt: skip


async def get_backfill(conn: AsyncConnection, *, backfill_id: uuid.UUID) -> dict[str, Any]:
    """A backfill with its progress (intervals by status) and every interval with its run."""
    return _with_progress(await BACKFILL_DETAIL.read(conn, backfill_id))


async def list_backfills(
    conn: AsyncConnection, *, template_id: uuid.UUID | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """Backfills newest first (of one template when given)."""
    where, args = ("where b.template_id = %s", [template_id]) if template_id else ("", [])
    return [
        _with_progress(row)
        for row in await dict_rows(
            conn,
            f"select {BACKFILL_COLUMNS} from {BACKFILL_FROM} {where} order by b.created_at desc limit %s",
            [*args, limit],
        )
    ]


async def cancel_backfill(conn: AsyncConnection, *, backfill_id: uuid.UUID, by: str | None) -> dict[str, Any]:
    """Cancel a backfill as a group (operators): pending intervals never run, active runs are cancelled."""
    await conn.execute("select ops.cancel_backfill(%s, %s)", (backfill_id, by))
    return await get_backfill(conn, backfill_id=backfill_id)
