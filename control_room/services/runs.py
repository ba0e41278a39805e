"""Runs for clients: submit, list (keyset pages), detail with tasks and attempts, cancel, retry."""

from __future__ import annotations

import base64
import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row

from control_room.services.errors import CapExceeded, Invalid, NotFound
from control_room.services.pagination import decode_cursor, encode_cursor, escape_like

RUN_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
TRIGGERS = ("manual", "api", "schedule", "retry", "backfill", "promotion", "demo")

RUN_COLUMNS = """
    r.id, r.name, r.project_id, p.slug as project, e.name as environment, r.status, r.priority, r.trigger,
    r.requested_by, r.requested_by_name, r.tags, r.engines, r.task_count, r.params, r.retry_of,
    r.cancel_requested_at is not null as cancel_requested, r.created_at, r.started_at, r.finished_at,
    r.updated_at,
    extract(epoch from (coalesce(r.finished_at, now()) - r.started_at))::float8 as duration_s
"""
RUN_FROM = "ops.runs r join ops.projects p on p.id = r.project_id join ops.environments e on e.id = r.environment_id"


async def resolve_project(conn: AsyncConnection, project: str) -> uuid.UUID:
    """A project id from an id or a slug (slugs must be unambiguous among visible projects)."""
    try:
        project_id = uuid.UUID(project)
    except ValueError:
        project_id = None
    if project_id is not None:
        cur = await conn.execute("select id from ops.projects where id = %s", (project_id,))
    else:
        cur = await conn.execute("select id from ops.projects where slug = %s limit 2", (project,))
    rows = await cur.fetchall()
    if not rows:
        raise NotFound(f'project "{project}" does not exist or is not visible to you', field="project")
    if len(rows) > 1:
        raise Invalid(f'project slug "{project}" exists in several orgs; pass the project id', field="project")
    return uuid.UUID(str(rows[0][0]))


async def submit_run(
    conn: AsyncConnection,
    *,
    project: str,
    environment: str,
    spec: dict[str, Any],
    params: dict[str, Any],
    idempotency_key: str | None,
    priority: int,
    tags: list[str],
    trigger: str,
    requested_by: uuid.UUID | None,
    requested_by_name: str | None,
    retry_of: uuid.UUID | None = None,
) -> tuple[dict[str, Any], bool]:
    """Create a run (or return the one with the same idempotency key); True when created now."""
    project_id = await resolve_project(conn, project)
    cur = await conn.execute(
        "select run_id, created, refusal from ops.submit_run(%s, %s, %s::jsonb, %s::jsonb, %s, %s, %s, %s, %s, %s, %s)",
        (
            project_id,
            environment,
            json.dumps(spec),
            json.dumps(params),
            trigger,
            requested_by,
            requested_by_name,
            idempotency_key,
            priority,
            tags,
            retry_of,
        ),
    )
    row = await cur.fetchone()
    assert row is not None
    run_id, created, refusal = row
    if refusal:
        raise CapExceeded(refusal)
    return await get_run(conn, run_id=run_id, with_tasks=False), bool(created)


@dataclass(frozen=True)
class RunFilters:
    """What the runs list can be narrowed by."""

    statuses: list[str] = field(default_factory=list)
    project: str | None = None
    environment: str | None = None
    engine: str | None = None
    trigger: str | None = None
    text: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None




async def list_runs(
    conn: AsyncConnection, *, filters: RunFilters, cursor: str | None, limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of runs, newest first; returns the rows and the cursor of the next page."""
    where: list[sql.Composable] = []
    args: list[Any] = []
    for status in filters.statuses:
        if status not in RUN_STATUSES:
            raise Invalid(f'unknown status "{status}"; use one of {", ".join(RUN_STATUSES)}', field="status")
    if filters.statuses:
        where.append(sql.SQL("r.status = any(%s)"))
        args.append(filters.statuses)
    if filters.project:
        where.append(sql.SQL("r.project_id = %s"))
        args.append(await resolve_project(conn, filters.project))
    if filters.environment:
        where.append(sql.SQL("e.name = %s"))
        args.append(filters.environment)
    if filters.engine:
        where.append(sql.SQL("r.engines @> array[%s]::text[]"))
        args.append(filters.engine)
    if filters.trigger:
        where.append(sql.SQL("r.trigger = %s"))
        args.append(filters.trigger)
    if filters.text:
        where.append(sql.SQL("(r.name ilike %s or r.id::text like %s)"))
        escaped = escape_like(filters.text)
        args.extend([f"%{escaped}%", f"{filters.text.lower()}%"])
    if filters.created_after:
        where.append(sql.SQL("r.created_at >= %s"))
        args.append(filters.created_after)
    if filters.created_before:
        where.append(sql.SQL("r.created_at < %s"))
        args.append(filters.created_before)
    if cursor:
        at, run_id = decode_cursor(cursor)
        where.append(sql.SQL("(r.created_at, r.id) < (%s, %s)"))
        args.extend([at, run_id])
    query = sql.SQL("select {cols} from {src} {where} order by r.created_at desc, r.id desc limit %s").format(
        cols=sql.SQL(RUN_COLUMNS),
        src=sql.SQL(RUN_FROM),
        where=sql.SQL("where ") + sql.SQL(" and ").join(where) if where else sql.SQL(""),
    )
    args.append(limit + 1)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, args)
        rows = await cur.fetchall()
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1]["created_at"], rows[-1]["id"])
    return rows, next_cursor


async def get_run(conn: AsyncConnection, *, run_id: uuid.UUID, with_tasks: bool = True) -> dict[str, Any]:
    """A run with (optionally) its spec, tasks and every task's attempts."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            sql.SQL("select {cols}, r.spec, r.error from {src} where r.id = %s").format(
                cols=sql.SQL(RUN_COLUMNS), src=sql.SQL(RUN_FROM)
            ),
            (run_id,),
        )
        run = await cur.fetchone()
        if run is None:
            raise NotFound(f"run {run_id} does not exist or is not visible to you", field="run_id")
        if not with_tasks:
            return run
        await cur.execute(
            "select t.id, t.key, t.engine, t.status, t.attempt, t.max_attempts, t.depends_on, t.pool, "
            "t.required_labels, t.timeout_s, t.executor_id, x.name as executor_name, t.cancel_requested, "
            "t.queued_at, t.claimed_at, t.started_at, t.finished_at, t.result, t.error "
            "from ops.tasks t left join ops.executors x on x.id = t.executor_id "
            "where t.run_id = %s order by t.created_at, t.key",
            (run_id,),
        )
        tasks = await cur.fetchall()
        await cur.execute(
            "select a.task_id, a.attempt, a.executor_id, x.name as executor_name, a.claimed_at, a.started_at, "
            "a.finished_at, a.outcome, a.error "
            "from ops.task_attempts a left join ops.executors x on x.id = a.executor_id "
            "where a.run_id = %s order by a.task_id, a.attempt",
            (run_id,),
        )
        attempts = await cur.fetchall()
    by_task: dict[uuid.UUID, list[dict[str, Any]]] = {}
    for attempt in attempts:
        by_task.setdefault(attempt.pop("task_id"), []).append(attempt)
    for task in tasks:
        task["attempts"] = by_task.get(task["id"], [])
    run["tasks"] = tasks
    return run


async def cancel_run(conn: AsyncConnection, *, run_id: uuid.UUID, by: str) -> dict[str, Any]:
    """Cancel a run: waiting tasks end now, running ones are told through their heartbeat."""
    await get_run(conn, run_id=run_id, with_tasks=False)  # 404 before 403 for runs you cannot see
    await conn.execute("select ops.cancel_run(%s, %s)", (run_id, by))
    return await get_run(conn, run_id=run_id)


async def retry_run(
    conn: AsyncConnection, *, run_id: uuid.UUID, requested_by: uuid.UUID | None, requested_by_name: str | None
) -> dict[str, Any]:
    """A new run with the same spec and params as a finished, unsuccessful one."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "select r.id, r.project_id, e.name as environment, r.spec, r.params, r.status, r.priority, r.tags "
            "from ops.runs r join ops.environments e on e.id = r.environment_id where r.id = %s",
            (run_id,),
        )
        run = await cur.fetchone()
    if run is None:
        raise NotFound(f"run {run_id} does not exist or is not visible to you", field="run_id")
    if run["status"] not in ("failed", "cancelled"):
        raise Invalid(f"run {run_id} is {run['status']}; only failed or cancelled runs can be retried", field="run_id")
    created, _ = await submit_run(
        conn,
        project=str(run["project_id"]),
        environment=run["environment"],
        spec=run["spec"],
        params=run["params"],
        idempotency_key=None,
        priority=run["priority"],
        tags=run["tags"],
        trigger="retry",
        requested_by=requested_by,
        requested_by_name=requested_by_name,
        retry_of=run_id,
    )
    return created


# The runs list of the web UI: one project at a time, three sort orders, each paged by keyset on
# an index of the 20261126000800_ui migration (the key expressions below must match it).
RUN_SORTS: dict[str, str] = {
    "created": "r.created_at",
    "started": "coalesce(r.started_at, '-infinity'::timestamptz)",
    "duration": "coalesce(r.finished_at - r.started_at, interval '-1 microsecond')",
}
SORT_KEY_TYPES = {"created": "timestamptz", "started": "timestamptz", "duration": "interval"}
LIST_COLUMNS = """
    r.id, r.name, r.project_id, p.slug as project, e.name as environment, r.status, r.trigger, r.engines,
    r.task_count, r.requested_by_name, r.cancel_requested_at is not null as cancel_requested,
    r.created_at, r.started_at, r.finished_at,
    extract(epoch from (coalesce(r.finished_at, now()) - r.started_at))::float8 as duration_s,
    (select count(*) from ops.tasks t where t.run_id = r.id
       and t.status in ('succeeded', 'failed', 'cancelled', 'timed_out', 'lost', 'skipped'))::integer as tasks_done
"""
# How long a name search may walk the sort index before the trigram index is asked first instead
# (0: always ask the trigram index first).
NAME_SEARCH_ORDERED_MS = 300
_UUID_PREFIX = re.compile(r"^[0-9a-f]{8}[0-9a-f-]{0,28}$")


@dataclass(frozen=True)
class RunsQuery:
    """What the UI's runs list shows: one project, filters, and a sort order."""

    project_id: uuid.UUID
    environment: str | None = None
    statuses: tuple[str, ...] = ()
    engine: str | None = None
    trigger: str | None = None
    text: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    sort: str = "created"
    descending: bool = True


def _uuid_range(text: str) -> tuple[uuid.UUID, uuid.UUID] | None:
    """The ids a search text stands for: a whole run id, or its first 8 or more hex digits (as the
    UI shows them); None for any other text, which is searched in run names instead."""
    lowered = text.strip().lower()
    if not _UUID_PREFIX.match(lowered):
        return None
    digits = lowered.replace("-", "")
    if len(digits) > 32:
        return None
    return uuid.UUID(digits.ljust(32, "0")), uuid.UUID(digits.ljust(32, "f"))


def _encode_sort_cursor(sort: str, key: str, run_id: uuid.UUID) -> str:
    # The key travels as Postgres printed it, so it compares equal again exactly (microseconds,
    # infinities and intervals included) when it comes back cast to the key's type.
    return base64.urlsafe_b64encode(f"{sort}|{key}|{run_id}".encode()).decode().rstrip("=")


def _decode_sort_cursor(cursor: str, sort: str) -> tuple[str, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        cursor_sort, key, run_id = raw.split("|", 2)
        if cursor_sort != sort or len(key) > 64:
            raise ValueError(sort)
        return key, uuid.UUID(run_id)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Invalid("not a cursor of this list and sort order; start from the first page", field="cursor") from exc


async def list_runs_sorted(
    conn: AsyncConnection, *, query: RunsQuery, cursor: str | None = None, limit: int = 50
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of a project's runs in the chosen order; returns the rows and the next page's cursor."""
    if query.sort not in RUN_SORTS:
        raise Invalid(f"must be one of {', '.join(RUN_SORTS)}", field="sort")
    for status in query.statuses:
        if status not in RUN_STATUSES:
            raise Invalid(f'unknown status "{status}"; use one of {", ".join(RUN_STATUSES)}', field="status")
    if query.trigger and query.trigger not in TRIGGERS:
        raise Invalid(f"must be one of {', '.join(TRIGGERS)}", field="trigger")
    if not 1 <= limit <= 500:
        raise Invalid("must be between 1 and 500", field="limit")
    key = sql.SQL(RUN_SORTS[query.sort])
    where: list[sql.Composable] = [sql.SQL("r.project_id = %s")]
    args: list[Any] = [query.project_id]
    if query.environment:
        # The environment's id (not its name) lets the planner use runs_environment_created.
        where.append(
            sql.SQL("r.environment_id = (select x.id from ops.environments x where x.project_id = %s and x.name = %s)")
        )
        args.extend([query.project_id, query.environment])
    if query.statuses:
        where.append(sql.SQL("r.status = any(%s)"))
        args.append(list(query.statuses))
    if query.engine:
        where.append(sql.SQL("r.engines @> array[%s]::text[]"))
        args.append(query.engine)
    if query.trigger:
        where.append(sql.SQL("r.trigger = %s"))
        args.append(query.trigger)
    if query.text and query.text.strip():
        text = query.text.strip()
        escaped = escape_like(text)
        id_range = _uuid_range(text)
        if id_range is None:
            where.append(sql.SQL("r.name ilike %s"))
            args.append(f"%{escaped}%")
        else:  # a primary-key range: one index probe, whatever the history's size
            where.append(sql.SQL("r.id between %s and %s"))
            args.extend(id_range)
    if query.created_after:
        where.append(sql.SQL("r.created_at >= %s"))
        args.append(query.created_after)
    if query.created_before:
        where.append(sql.SQL("r.created_at < %s"))
        args.append(query.created_before)
    if cursor:
        after_key, after_id = _decode_sort_cursor(cursor, query.sort)
        comparison = sql.SQL("<" if query.descending else ">")
        where.append(
            sql.SQL("({key}, r.id) {op} (%s::{type}, %s)").format(
                key=key, op=comparison, type=sql.SQL(SORT_KEY_TYPES[query.sort])
            )
        )
        args.extend([after_key, after_id])
    direction = sql.SQL("desc" if query.descending else "asc")
    args.append(limit + 1)
    ordered = sql.SQL(
        "select {cols}, ({key})::text as sort_key from {src} where {where} order by {key} {dir}, r.id {dir} limit %s"
    ).format(cols=sql.SQL(LIST_COLUMNS), key=key, src=sql.SQL(RUN_FROM), where=sql.SQL(" and ").join(where),
             dir=direction)  # fmt: skip
    name_search = bool(query.text and query.text.strip()) and _uuid_range(query.text or "") is None
    if not name_search:
        rows = await _fetch_runs(conn, ordered, args)
    else:
        # Walking the sort index while filtering names is instant when matches are common and slow
        # when they are rare (every run of the project is read). Give that plan a moment; when it
        # runs out, let the trigram index find the matches first and sort only those.
        rows = []
        try:
            if NAME_SEARCH_ORDERED_MS <= 0:
                raise psycopg.errors.QueryCanceled("the ordered walk is disabled")
            async with conn.transaction():  # a savepoint: a cancel stays inside it
                found = await (await conn.execute("select current_setting('statement_timeout')")).fetchone()
                await conn.execute("select set_config('statement_timeout', %s, true)", (str(NAME_SEARCH_ORDERED_MS),))
                rows = await _fetch_runs(conn, ordered, args)
                await conn.execute("select set_config('statement_timeout', %s, true)", (found[0] if found else "0",))
        except psycopg.errors.QueryCanceled:
            matches_first = sql.SQL(
                "with matches as materialized (select r.id from ops.runs r join ops.environments e "
                "on e.id = r.environment_id where {where}) "
                "select {cols}, ({key})::text as sort_key from {src} join matches m on m.id = r.id "
                "order by {key} {dir}, r.id {dir} limit %s"
            ).format(cols=sql.SQL(LIST_COLUMNS), key=key, src=sql.SQL(RUN_FROM),
                     where=sql.SQL(" and ").join(where), dir=direction)  # fmt: skip
            rows = await _fetch_runs(conn, matches_first, args)
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = _encode_sort_cursor(query.sort, rows[-1]["sort_key"], rows[-1]["id"])
    for row in rows:
        row.pop("sort_key")
    return rows, next_cursor


async def _fetch_runs(conn: AsyncConnection, statement: sql.Composed, args: list[Any]) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(statement, args)
        return await cur.fetchall()


async def runs_by_id(conn: AsyncConnection, *, run_ids: list[uuid.UUID]) -> list[dict[str, Any]]:
    """The list columns of the given runs (a live refresh of the rows on screen: primary-key lookups)."""
    if not run_ids:
        return []
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            sql.SQL("select {cols} from {src} where r.id = any(%s)").format(
                cols=sql.SQL(LIST_COLUMNS), src=sql.SQL(RUN_FROM)
            ),
            (run_ids,),
        )
        return await cur.fetchall()


async def status_counts(conn: AsyncConnection, *, project_id: uuid.UUID, since: datetime) -> dict[str, int]:
    """How many of a project's runs created since ``since`` are in each status."""
    cur = await conn.execute(
        "select status, count(*) from ops.runs where project_id = %s and created_at >= %s group by status",
        (project_id, since),
    )
    return {str(status): int(count) for status, count in await cur.fetchall()}
