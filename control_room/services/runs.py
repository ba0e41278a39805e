"""Runs for clients: submit, list (keyset pages), detail with tasks and attempts, cancel, retry."""

from __future__ import annotations

import base64
import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NotRequired, TypedDict, Unpack

import psycopg
from psycopg import AsyncConnection, AsyncCursor, sql
from psycopg.rows import dict_row
from pydantic import ValidationError

from control_room.config import get_settings
from control_room.db.rows import dict_rows, returned_id, scalar
from control_room.services import caps
from control_room.services.errors import CapExceeded, Conflict, Invalid, NotFound, from_db_error, visible_row
from control_room.services.pagination import (
    Keyset,
    ListQuery,
    Page,
    cursor_after,
    decode_cursor,
    escape_like,
    fetch_rows,
    newest_first,
    trim_page,
)
from control_room.specs.tasks import RunSpec, spec_errors

RUN_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
TRIGGERS = ("manual", "api", "schedule", "retry", "backfill", "promotion", "demo")

RUN_COLUMNS = """
    r.id, r.name, r.project_id, p.slug as project, e.name as environment, r.status, r.priority, r.trigger,
    r.requested_by, r.requested_by_name, r.tags, r.engines, r.task_count, r.params, r.retry_of,
    r.cancel_requested_at is not null as cancel_requested, r.created_at, r.started_at, r.finished_at,
    r.updated_at, r.warnings,
    extract(epoch from (coalesce(r.finished_at, now()) - r.started_at))::float8 as duration_s
"""
RUN_FROM = "ops.runs r join ops.projects p on p.id = r.project_id join ops.environments e on e.id = r.environment_id"
NEWEST_FIRST = newest_first("r")


def search_text(value: str | None, *, field: str) -> str | None:
    """A search text without surrounding blanks (None when empty); Invalid naming ``field`` when it holds
    a NUL character, which PostgreSQL text cannot contain (the search could never match)."""
    if value is None:
        return None
    if "\x00" in value:
        raise Invalid("the search text contains a NUL (0x00) character, which no run name can hold; remove it",
                      field=field)  # fmt: skip
    return value.strip() or None


def project_reference(project: str) -> tuple[str, uuid.UUID | None]:
    """A project reference as ``ops.resolve_project`` takes it: the text given, and that text as an id when it is
    one (else None: a slug)."""
    try:
        return project, uuid.UUID(project)
    except ValueError:
        return project, None


async def resolve_project(conn: AsyncConnection, project: str) -> uuid.UUID:
    """A project id from an id or a slug (slugs must be unambiguous among visible projects): NotFound or
    Invalid naming the field ``project`` otherwise (``ops.resolve_project``, as the caller sees projects)."""
    try:
        return await returned_id(conn, "select ops.resolve_project(%s, %s)", project_reference(project))
    except psycopg.Error as exc:  # its callers catch ServiceError (the CLI's --project names the option)
        raise from_db_error(exc) or exc from exc


def check_run_spec(spec: Any, *, at: str = "spec") -> None:
    """Invalid naming every offending field (dotted and as a JSON pointer) unless ``spec`` is a valid run spec."""
    try:
        RunSpec.model_validate(spec)
    except ValidationError as exc:
        errors = spec_errors(exc, (at,))
        first = errors[0]
        raise Invalid(f"{first['field']}: {first['message']}", field=first["field"], errors=errors) from None


class SubmitOptions(TypedDict):
    """How a submit was asked for: the arguments of ``submit_run`` and ``jobs.run_template`` that do not name the
    run itself."""

    idempotency_key: str | None
    priority: int
    tags: list[str]
    trigger: str
    requested_by: uuid.UUID | None
    requested_by_name: str | None


class SubmitFields(SubmitOptions):
    """What a submit names: the project (id or slug), environment, spec and params, and how it was asked for."""

    project: str
    environment: str
    spec: dict[str, Any]
    params: dict[str, Any]
    retry_of: NotRequired[uuid.UUID | None]


# For a new run, which engines are live: a warning on the run, or LH422 rolling the submit back when the project
# sets require_available_engine. A column of the submit's own statement (its function aliased ``s``, the
# setting executor_offline_after_seconds its first parameter), so the note costs no round trip of its own.
ENGINES_NOTE = "case when s.created then ops.note_engine_availability(s.run_id, %s) end"

# The run the transaction's submit created or found (``send_submit`` sets it), for a read sent before the
# submit's answer came back.
SUBMITTED_RUN = "nullif(current_setting('lakehouse.submitted_run', true), '')::uuid"


async def send_submit(conn: AsyncConnection, **fields: Unpack[SubmitFields]) -> AsyncCursor[Any]:
    """Send the submit of a run on a new cursor; ``submit_answer`` takes the answer. In pipeline mode it travels
    with what comes after it (a read of ``SUBMITTED_RUN``, the commit).

    The spec is checked here, against the engines' models (control_room/specs): the one place that knows the
    field rules. The SQL function checks only what it needs to build the run (keys, dependencies). One
    statement: the project's look-up (as the caller sees projects), the submit, and ``ENGINES_NOTE``."""
    check_run_spec(fields["spec"])
    cur = conn.cursor()
    await cur.execute(
        f"select s.run_id, s.created, s.refusal, {ENGINES_NOTE}, "
        "set_config('lakehouse.submitted_run', coalesce(s.run_id::text, ''), true) "
        "from ops.submit_run(ops.resolve_project(%s, %s), %s, %s::jsonb, %s::jsonb, %s, %s, %s, %s, %s, %s, %s) s",
        (
            get_settings().executor_offline_after_seconds,
            *project_reference(fields["project"]),
            fields["environment"],
            json.dumps(fields["spec"]),
            json.dumps(fields["params"]),
            fields["trigger"],
            fields["requested_by"],
            fields["requested_by_name"],
            fields["idempotency_key"],
            fields["priority"],
            fields["tags"],
            fields.get("retry_of"),
        ),
    )
    return cur


async def submit_answer(cur: AsyncCursor[Any]) -> tuple[uuid.UUID | None, bool, str | None]:
    """The answer to ``send_submit``: the run's id (None when refused), True when created now (not the run of
    the same idempotency key), and the refusal of a runs-per-day cap (ops.submit_run recorded it in the
    transaction)."""
    row = await cur.fetchone()
    assert row is not None
    run_id, created, refusal, _, _ = row
    return run_id, bool(created), refusal


async def submit_run(conn: AsyncConnection, **fields: Unpack[SubmitFields]) -> tuple[uuid.UUID, bool]:
    """Create a run (or find the one with the same idempotency key): its id, and True when created now
    (``get_run`` reads it). A refusal raises CapExceeded carrying the refusal's row, recorded again once the
    caller's transaction has rolled back (``control_room.services.auth.scoped``)."""
    async with await send_submit(conn, **fields) as cur:
        run_id, created, refusal = await submit_answer(cur)
    if refusal:
        raise CapExceeded(refusal, record=await caps.pending_submit_refusal(conn))
    assert run_id is not None
    return run_id, created


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
    template_id: uuid.UUID | None = None  # runs started from this job template


async def list_runs(conn: AsyncConnection, *, filters: RunFilters, cursor: str | None, limit: int) -> Page:
    """One page of runs, newest first; returns the rows and the cursor of the next page."""
    query = ListQuery()
    query.one_of("r.status", filters.statuses, allowed=RUN_STATUSES, field="status")
    if filters.project:
        query.equal("r.project_id", await resolve_project(conn, filters.project))
    query.equal("e.name", filters.environment)
    query.contains("r.engines", filters.engine)
    query.equal("r.trigger", filters.trigger)
    text = search_text(filters.text, field="q")
    if text:
        escaped = escape_like(text)
        query.add("(r.name ilike %s or r.id::text like %s)", f"%{escaped}%", f"{text.lower()}%")
    query.equal("r.template_id", filters.template_id)
    query.between("r.created_at", filters.created_after, filters.created_before)
    if cursor:
        query.after(NEWEST_FIRST, *decode_cursor(cursor))
    return await query.page(
        conn, columns=RUN_COLUMNS, source=RUN_FROM, keyset=NEWEST_FIRST, limit=limit, cursor_of=cursor_after
    )


async def send_run_read(conn: AsyncConnection, run_id: uuid.UUID | None) -> AsyncCursor[dict[str, Any]]:
    """Send the read of a run's row (its spec and error included) on a new cursor; ``run_read`` takes the
    answer. In pipeline mode the read travels with what comes after it, e.g. the transaction's commit. A
    ``run_id`` of None reads the run the transaction's ``send_submit`` created or found."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        sql.SQL("select {cols}, r.spec, r.error, p.name as project_name from {src} where r.id = {id}").format(
            cols=sql.SQL(RUN_COLUMNS),
            src=sql.SQL(RUN_FROM),
            id=sql.Placeholder() if run_id is not None else sql.SQL(SUBMITTED_RUN),
        ),
        (run_id,) if run_id is not None else None,
    )
    return cur


async def run_read(cur: AsyncCursor[dict[str, Any]], run_id: uuid.UUID) -> dict[str, Any]:
    """The answer to ``send_run_read``: the run's row, or NotFound."""
    run = await cur.fetchone()
    if run is None:
        raise NotFound(f"run {run_id} does not exist or is not visible to you", field="run_id")
    return run


async def get_run(conn: AsyncConnection, *, run_id: uuid.UUID, with_tasks: bool = True) -> dict[str, Any]:
    """A run with (optionally) its spec, tasks and every task's attempts."""
    async with await send_run_read(conn, run_id) as cur:
        run = await run_read(cur, run_id)
        if not with_tasks:
            return run
        await cur.execute(
            "select t.id, t.key, t.engine, t.status, t.attempt, t.max_attempts, t.depends_on, t.pool, "
            "t.required_labels, t.timeout_s, t.executor_id, x.name as executor_name, t.cancel_requested, "
            "t.queued_at, t.claimed_at, t.started_at, t.finished_at, t.result, t.error, t.routing_problem, "
            "t.reused_from_task, (select s.run_id from ops.tasks s where s.id = t.reused_from_task) as reused_from_run "
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
        reasons: dict[str, str] = {}
        if run["status"] in ("queued", "running"):  # why each waiting task waits, as the claim sees it
            await cur.execute(
                "select task_key, reason from ops.queue_reasons(%s, %s)",
                (run_id, get_settings().executor_offline_after_seconds),
            )
            reasons = {row["task_key"]: row["reason"] for row in await cur.fetchall()}
        # The other direction of retry_of: the runs that re-ran this one.
        await cur.execute("select id from ops.runs where retry_of = %s order by created_at, id limit 20", (run_id,))
        run["reruns"] = [row["id"] for row in await cur.fetchall()]
    by_task: dict[uuid.UUID, list[dict[str, Any]]] = {}
    for attempt in attempts:
        by_task.setdefault(attempt.pop("task_id"), []).append(attempt)
    for task in tasks:
        task["attempts"] = by_task.get(task["id"], [])
        task["queue_reason"] = reasons.get(task["key"])
    run["tasks"] = tasks
    run["error"] = run["error"] or run_error_summary(run["status"], tasks)
    return run


UNSUCCESSFUL = ("failed", "timed_out", "lost", "cancelled")


def run_error_summary(status: str, tasks: list[dict[str, Any]]) -> str | None:
    """Why a failed or cancelled run ended, from its tasks: the first unsuccessful task and its error,
    and how many others did not succeed (None for any other status)."""
    if status not in ("failed", "cancelled"):
        return None
    ended = [task for task in tasks if task["status"] in UNSUCCESSFUL]
    ended.sort(key=lambda task: (task["status"] == "cancelled", task["finished_at"] is None, task["finished_at"]))
    if not ended:
        return f"run {status}"
    first = ended[0]
    summary = f'task "{first["key"]}" {first["status"]}'
    if first["error"]:
        summary += f": {first['error']}"
    others = len(ended) - 1
    skipped = sum(1 for task in tasks if task["status"] == "skipped")
    if others:
        summary += f"; {others} more task{'s' if others > 1 else ''} did not succeed"
    if skipped:
        summary += f"; {skipped} downstream task{'s' if skipped > 1 else ''} skipped"
    return summary[:2000]


async def cancel_run(conn: AsyncConnection, *, run_id: uuid.UUID, by: str) -> dict[str, Any]:
    """Cancel a run: waiting tasks end now, running ones are told through their heartbeat."""
    await get_run(conn, run_id=run_id, with_tasks=False)  # 404 before 403 for runs you cannot see
    await conn.execute("select ops.cancel_run(%s, %s)", (run_id, by))
    return await get_run(conn, run_id=run_id)


RERUN_MODES = ("all", "failed", "from_task")


async def retry_run(
    conn: AsyncConnection,
    *,
    run_id: uuid.UUID,
    requested_by: uuid.UUID | None,
    requested_by_name: str | None,
    mode: str = "all",
    from_task: str | None = None,
) -> dict[str, Any]:
    """A new run with the same spec and params as a finished one, linked to it by ``retry_of``.

    ``all`` runs every task again (failed or cancelled runs). ``failed`` reuses the outcomes (and, through
    them, the artifacts) of the tasks that succeeded and runs the failed, cancelled and downstream ones;
    ``from_task`` runs ``from_task`` and its downstream tasks, reusing the rest (any finished run)."""
    if mode not in RERUN_MODES:
        raise Invalid(f"must be one of {', '.join(RERUN_MODES)}", field="mode")
    if (mode == "from_task") != bool(from_task):
        raise Invalid('name a task with mode "from_task" (and only then)', field="from_task")
    run = await visible_row(
        conn,
        "select r.id, r.project_id, e.name as environment, r.spec, r.params, r.status, r.priority, r.tags "
        "from ops.runs r join ops.environments e on e.id = r.environment_id where r.id = %s",
        (run_id,),
        f"run {run_id}",
        field="run_id",
    )
    allowed = ("failed", "cancelled", "succeeded") if mode == "from_task" else ("failed", "cancelled")
    if run["status"] not in allowed:
        # 409: the request is well-formed; the run's state does not allow it.
        raise Conflict(
            f"run {run_id} is {run['status']}; only {' or '.join(allowed)} runs can be re-run this way", field="run_id"
        )
    rerun_id, _ = await submit_run(
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
    if mode != "all":
        # Same transaction: no executor sees the new run before the reused tasks are marked succeeded.
        await conn.execute("select ops.reuse_succeeded_tasks(%s, %s)", (rerun_id, from_task))
    return await get_run(conn, run_id=rerun_id, with_tasks=False)


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
    r.task_count, r.requested_by_name, r.tags, r.cancel_requested_at is not null as cancel_requested,
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
    template_id: uuid.UUID | None = None  # runs started from this job template


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


def _check_runs_query(query: RunsQuery, limit: int) -> None:
    if query.sort not in RUN_SORTS:
        raise Invalid(f"must be one of {', '.join(RUN_SORTS)}", field="sort")
    if query.trigger and query.trigger not in TRIGGERS:
        raise Invalid(f"must be one of {', '.join(TRIGGERS)}", field="trigger")
    if not 1 <= limit <= 500:
        raise Invalid("must be between 1 and 500", field="limit")


def _runs_conditions(query: RunsQuery, keyset: Keyset, cursor: str | None) -> ListQuery:
    """The list's filters; a search text is an id range when it reads as a run id, else a name search."""
    conditions = ListQuery()
    conditions.add("r.project_id = %s", query.project_id)
    if query.environment:
        # The environment's id (not its name) lets the planner use runs_environment_created.
        conditions.add(
            "r.environment_id = (select x.id from ops.environments x where x.project_id = %s and x.name = %s)",
            query.project_id,
            query.environment,
        )
    conditions.one_of("r.status", query.statuses, allowed=RUN_STATUSES, field="status")
    conditions.contains("r.engines", query.engine)
    conditions.equal("r.trigger", query.trigger)
    conditions.equal("r.template_id", query.template_id)
    text = search_text(query.text, field="text") or ""
    id_range = _uuid_range(text) if text else None
    if id_range is not None:  # a primary-key range: one index probe, whatever the history's size
        conditions.add("r.id between %s and %s", *id_range)
    else:
        conditions.matches("r.name", text)
    conditions.between("r.created_at", query.created_after, query.created_before)
    if cursor:
        conditions.after(keyset, *_decode_sort_cursor(cursor, query.sort))
    return conditions


def _sorted_runs_statement(keyset: Keyset, conditions: ListQuery, *, matches_first: bool) -> sql.Composed:
    """The page's statement: walking the sort index, or (``matches_first``) sorting only the matches."""
    if not matches_first:
        template = "select {cols}, ({key})::text as sort_key from {src} where {where} {order} limit %s"
    else:
        template = (
            "with matches as materialized (select r.id from ops.runs r join ops.environments e "
            "on e.id = r.environment_id where {where}) "
            "select {cols}, ({key})::text as sort_key from {src} join matches m on m.id = r.id {order} limit %s"
        )
    return sql.SQL(template).format(
        cols=sql.SQL(LIST_COLUMNS),
        key=sql.SQL(keyset.key),
        src=sql.SQL(RUN_FROM),
        where=conditions.conditions(),
        order=keyset.order_by(),
    )


async def _search_runs_by_name(conn: AsyncConnection, keyset: Keyset, conditions: ListQuery) -> list[dict[str, Any]]:
    """Walking the sort index while filtering names is instant when matches are common and slow when
    they are rare (every run of the project is read). Give that plan a moment; when it runs out, let
    the trigram index find the matches first and sort only those."""
    args = [*conditions.args]
    try:
        if NAME_SEARCH_ORDERED_MS <= 0:
            raise psycopg.errors.QueryCanceled("the ordered walk is disabled")
        async with conn.transaction():  # a savepoint: a cancel stays inside it
            found = await scalar(conn, "select current_setting('statement_timeout')")
            await conn.execute("select set_config('statement_timeout', %s, true)", (str(NAME_SEARCH_ORDERED_MS),))
            rows = await fetch_rows(conn, _sorted_runs_statement(keyset, conditions, matches_first=False), args)
            await conn.execute("select set_config('statement_timeout', %s, true)", (found,))
            return rows
    except psycopg.errors.QueryCanceled:
        return await fetch_rows(conn, _sorted_runs_statement(keyset, conditions, matches_first=True), args)


async def list_runs_sorted(
    conn: AsyncConnection, *, query: RunsQuery, cursor: str | None = None, limit: int = 50
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of a project's runs in the chosen order; returns the rows and the next page's cursor."""
    _check_runs_query(query, limit)
    keyset = Keyset(
        key=RUN_SORTS[query.sort], row_id="r.id", descending=query.descending, cast=SORT_KEY_TYPES[query.sort]
    )
    conditions = _runs_conditions(query, keyset, cursor)
    conditions.args.append(limit + 1)
    text = (query.text or "").strip()
    if text and _uuid_range(text) is None:
        rows = await _search_runs_by_name(conn, keyset, conditions)
    else:
        rows = await fetch_rows(conn, _sorted_runs_statement(keyset, conditions, matches_first=False), conditions.args)
    page, next_cursor = trim_page(rows, limit, lambda row: _encode_sort_cursor(query.sort, row["sort_key"], row["id"]))
    for row in page:
        row.pop("sort_key")
    return page, next_cursor


async def runs_by_id(conn: AsyncConnection, *, run_ids: list[uuid.UUID]) -> list[dict[str, Any]]:
    """The list columns of the given runs (a live refresh of the rows on screen: primary-key lookups)."""
    if not run_ids:
        return []
    return await dict_rows(
        conn,
        sql.SQL("select {cols} from {src} where r.id = any(%s)").format(
            cols=sql.SQL(LIST_COLUMNS), src=sql.SQL(RUN_FROM)
        ),
        (run_ids,),
    )


async def status_counts(
    conn: AsyncConnection, *, project_id: uuid.UUID, since: datetime, environment: str | None = None
) -> dict[str, int]:
    """How many of a project's runs (of one environment, when given) created since ``since`` are in each status."""
    if environment is None:
        cur = await conn.execute(
            "select status, count(*) from ops.runs where project_id = %s and created_at >= %s group by status",
            (project_id, since),
        )
    else:  # by the environment's id, so runs_environment_created serves it
        cur = await conn.execute(
            "select status, count(*) from ops.runs where environment_id = (select e.id from ops.environments e "
            "where e.project_id = %s and e.name = %s) and created_at >= %s group by status",
            (project_id, environment, since),
        )
    return {str(status): int(count) for status, count in await cur.fetchall()}
