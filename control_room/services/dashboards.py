"""Dashboards: the shipped templates, a project's saved dashboards and their versions, and running datasets.

Control-plane datasets run as the viewer: the connection must already act as the signed-in user
(``auth.scoped``), so RLS and grants decide what they read (DESIGN decision 7), inside a read-only
savepoint with a statement timeout, after sqlglot checked the statement (services/sql_guard.py) and the
parameters were bound as typed literals.

Warehouse datasets run where warehouse SQL runs: a DuckDB SQL task on an agent, submitted as the viewer, so
the agent applies the viewer's access policies (refusals, row filters, column masks) and the scan cap, as
for Ask. The statement is checked first as Ask's SQL is (readable catalog tables only, no masked column, a
LIMIT). One run per viewer, statement and five-minute window (its idempotency key); while it computes the
panel says so (``pending``) and the page polls; a viewer who may not submit runs (the viewer role) sees the
latest result computed for someone else only when the result policies let them (services/result_policies.py).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import psycopg
from anyio import to_thread
from psycopg import AsyncConnection

from control_room.config import get_settings
from control_room.dashboards.loader import content_sha256, parse_dashboard, shipped_templates
from control_room.dashboards.models import DashboardFile, Dataset
from control_room.db.rows import dict_rows, first_dict_row, model_rows, one_row, scalar
from control_room.services import artifacts, nl2sql, queries, result_policies
from control_room.services.errors import Forbidden, Invalid, NotFound, ServiceError, from_db_error
from control_room.services.result_rows import json_cell
from control_room.services.sql_guard import bind_placeholders, parse_read_only, typed_literal, with_limit
from control_room.storage import get_store

if TYPE_CHECKING:  # sqlglot (most of a second) and the SQLModel mirror: imported by the calls that use them
    from sqlglot import exp

    from control_room.db.tables import Dashboard

MAX_DATASET_ROWS = 5_000
DATASET_TIMEOUT = "10s"
TIME_RANGES = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "14d": timedelta(days=14),
               "30d": timedelta(days=30), "90d": timedelta(days=90)}  # fmt: skip
# The ops relations a control-plane dataset may read (RLS still decides which rows): no identities or secrets.
CONTROL_PLANE_RELATIONS = frozenset({
    "projects", "environments", "runs", "tasks", "task_attempts", "events", "caps", "cap_usage", "job_templates",
    "job_template_versions", "schedules", "schedule_fires", "backfills", "datasets", "lineage_edges",
    "dataset_schema_changes", "query_history", "alert_incidents", "alert_rules", "promotion_requests",
    "deployments", "dashboards", "nl2sql_questions",
})  # fmt: skip
# A warehouse dataset is computed again (a new run) at most once per viewer and window.
WAREHOUSE_WINDOW_S = 300


@dataclass(frozen=True)
class DatasetScope:
    """What a dataset's parameters are bound to: the project, the time window and the filters' values."""

    project_id: uuid.UUID
    since: datetime
    until: datetime
    filters: dict[str, str | None] = field(default_factory=dict)


@dataclass
class DatasetResult:
    """One dataset's rows (JSON-ready), or why it could not be drawn (``pending``: still computing)."""

    columns: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    error: str = ""
    note: str = ""
    pending: bool = False


def window(time_range: str, *, now: datetime | None = None) -> tuple[datetime, datetime]:
    """``(since, until)`` of a named time range ending now (injectable clock)."""
    until = now or datetime.now(UTC)
    return until - TIME_RANGES.get(time_range, TIME_RANGES["7d"]), until


def _control_plane_table(table: exp.Table) -> str | None:
    if table.catalog or table.db.lower() != "ops" or table.name.lower() not in CONTROL_PLANE_RELATIONS:
        readable = ", ".join(f"ops.{name}" for name in sorted(CONTROL_PLANE_RELATIONS))
        return f"table {table.sql('postgres')} is not readable by dashboards (readable: {readable})"
    return None


def control_plane_statement(dataset: Dataset, scope: DatasetScope, *, at: str = "sql") -> str:
    """The checked, bound and limited SQL of a control-plane dataset (what will run, as the viewer)."""
    statement = parse_read_only(dataset.sql, dialect="postgres", field=at, table_allowed=_control_plane_table)
    values: dict[str, exp.Expression] = {
        "project_id": typed_literal(str(scope.project_id), "uuid"),
        "since": typed_literal(scope.since.isoformat(), "timestamptz"),
        "until": typed_literal(scope.until.isoformat(), "timestamptz"),
    }
    values.update({name: typed_literal(value, "text") for name, value in scope.filters.items()})
    bound = bind_placeholders(statement, values, field=at)
    return with_limit(bound, MAX_DATASET_ROWS).sql("postgres")


async def _require_viewer_connection(conn: AsyncConnection) -> None:
    """Refuse to run a dataset on a connection that does not act as a signed-in user (no superuser reads)."""
    row = await one_row(conn, "select current_user, auth.uid()")
    if row[0] != "authenticated" or row[1] is None:
        raise Forbidden("dashboard datasets are read as the signed-in user; this connection is not scoped to one")


def warehouse_statement(dataset: Dataset, scope: DatasetScope, policy: nl2sql.AccessPolicy, *, at: str = "sql") -> str:
    """The bound SQL of a warehouse dataset, checked as Ask's SQL is (readable tables, no masked column, a LIMIT)."""
    statement = parse_read_only(dataset.sql, dialect=nl2sql.DIALECT, field=at, table_allowed=lambda _table: None)
    values: dict[str, exp.Expression] = {
        "project_id": typed_literal(str(scope.project_id), "text"),
        "since": typed_literal(scope.since.isoformat(), "timestamptz"),
        "until": typed_literal(scope.until.isoformat(), "timestamptz"),
    }
    values.update({name: typed_literal(value, "text") for name, value in scope.filters.items()})
    bound = bind_placeholders(statement, values, field=at).sql(nl2sql.DIALECT)
    try:
        return nl2sql.guard(bound, policy, limit=MAX_DATASET_ROWS)
    except Invalid as exc:
        raise Invalid(exc.message, field=at) from exc


def _warehouse_key(text: str) -> str:
    return "dashboard:" + hashlib.sha256(text.encode()).hexdigest()[:40]


async def _finished_result(conn: AsyncConnection, run: dict[str, Any]) -> DatasetResult:
    """The rows of a succeeded dataset run (its last statement's Parquet result), if the viewer may see them."""
    found = await scalar(
        conn,
        "select a.id from ops.query_history h join ops.artifacts a on a.task_id = h.task_id and a.attempt = h.attempt "
        "and a.name = h.result_artifact where h.run_id = %s and h.state = 'finished' "
        "order by h.statement_index desc limit 1",
        (run["id"],),
    )
    if found is None:
        return DatasetResult(error=f"run {run['id']} finished without a result")
    artifact = await artifacts.get_artifact(conn, artifact_id=found)
    await result_policies.require_rows_visible(conn, artifact=artifact)
    store = get_store()
    result = await to_thread.run_sync(
        lambda: queries.read_result_rows(store, artifact, offset=0, limit=MAX_DATASET_ROWS)
    )
    decimal = [str(c["type"]).startswith("decimal") for c in result["columns"]]
    rows = [[float(v) if is_decimal and isinstance(v, str) else v for v, is_decimal in zip(row, decimal, strict=True)]
            for row in result["rows"]]  # fmt: skip
    return DatasetResult(columns=[c["name"] for c in result["columns"]], rows=rows)


async def _dataset_runs(conn: AsyncConnection, project_id: uuid.UUID, prefix: str) -> list[dict[str, Any]]:
    return await dict_rows(
        conn,
        "select id, status, error from ops.runs where project_id = %s "
        "and idempotency_key like %s order by created_at desc limit 20",
        (project_id, prefix.replace("%", "") + "%"),
    )


def _computing(run: dict[str, Any] | None) -> DatasetResult:
    status = f"run {run['id']}, {run['status']}" if run else "queued"
    return DatasetResult(note=f"computing on the warehouse ({status})…", pending=True)


async def run_warehouse_dataset(
    conn: AsyncConnection, dataset: Dataset, scope: DatasetScope, *, at: str = "sql", now: datetime | None = None
) -> DatasetResult:
    """A warehouse dataset's rows, computed on an agent as the viewer (see the module docstring)."""
    policy = await nl2sql.access_policy(conn, project_id=scope.project_id)
    if not policy.tables:
        return DatasetResult(note="no warehouse table of this project is readable by you (none in the catalog yet?)")
    text = warehouse_statement(dataset, scope, policy, at=at)
    statement_key = _warehouse_key(text)
    user = await scalar(conn, "select auth.uid()")
    window_start = int((now or datetime.now(UTC)).timestamp()) // WAREHOUSE_WINDOW_S
    mine = f"{statement_key}:{user}:"
    submitted: uuid.UUID | None = None
    try:
        async with conn.transaction():  # a savepoint: a viewer's refused submit leaves the connection usable
            cur = await conn.execute(
                "select run_id, refusal from ops.submit_run(%s, 'dev', %s::jsonb, '{}'::jsonb, 'api', auth.uid(), "
                "'dashboard', %s)",
                (scope.project_id, json.dumps(nl2sql.ask_task_spec(text, policy, max_scan_bytes=get_settings()
                 .nl2sql_max_scan_bytes) | {"name": "dashboard dataset: " + at}), f"{mine}{window_start}"),
            )  # fmt: skip
            row = await cur.fetchone()
            if row is not None and row[0] is None:
                return DatasetResult(error=f"the warehouse query was refused: {row[1]}")
            submitted = row[0] if row else None
    except psycopg.Error as exc:
        refusal = from_db_error(exc)
        if not isinstance(refusal, Forbidden):
            raise
    runs = await _dataset_runs(conn, scope.project_id, mine if submitted else f"{statement_key}:")
    current = next((r for r in runs if r["id"] == submitted), None)
    done = next((r for r in runs if r["status"] == "succeeded"), None)
    if current is not None and current["status"] in ("failed", "cancelled", "timed_out"):
        return DatasetResult(error=f"the warehouse query {current['status']}: {current['error'] or ''}".strip())
    computing = current is not None and current["status"] != "succeeded"
    if done is not None:  # the newest result, while a newer window's run may still be computing
        try:
            result = await _finished_result(conn, done)
        except Forbidden as exc:
            result = DatasetResult(note=exc.message) if not computing else _computing(current)
        result.pending = computing
        return result
    if current is not None:
        return _computing(current)
    return DatasetResult(note="not computed yet: an operator's visit to this dashboard computes it on the warehouse")


async def run_dataset(
    conn: AsyncConnection, dataset: Dataset, scope: DatasetScope, *, at: str = "sql"
) -> DatasetResult:
    """A dataset's rows read with the viewer's rights (``conn`` acts as the user), or the reason it has none."""
    if dataset.source == "warehouse":
        return await run_warehouse_dataset(conn, dataset, scope, at=at)
    text = control_plane_statement(dataset, scope, at=at)
    await _require_viewer_connection(conn)
    async with conn.transaction():  # a savepoint: a failing dataset leaves the others' transaction usable
        await conn.execute("set local transaction_read_only = on")
        await conn.execute(f"set local statement_timeout = '{DATASET_TIMEOUT}'")
        async with conn.cursor() as cur:
            await cur.execute(text.encode())
            columns = [column.name for column in cur.description or []]
            rows = await cur.fetchall()
    return DatasetResult(columns=columns, rows=[[_chart_cell(value) for value in row] for row in rows])


def _chart_cell(value: Any) -> Any:
    """JSON-safe, with numerics as numbers (a chart's axis, not the exact decimal text)."""
    return float(value) if isinstance(value, Decimal) else json_cell(value)


async def run_datasets(conn: AsyncConnection, spec: DashboardFile, scope: DatasetScope) -> dict[str, DatasetResult]:
    """Every dataset of a dashboard, read once each; one that fails carries its error, the others still draw."""
    results: dict[str, DatasetResult] = {}
    for name, dataset in spec.datasets.items():
        try:
            results[name] = await run_dataset(conn, dataset, scope, at=f"datasets.{name}.sql")
        except Forbidden:
            raise
        except ServiceError as exc:
            results[name] = DatasetResult(error=f"{exc.message} ({exc.field})" if exc.field else exc.message)
        except psycopg.Error as exc:
            mapped = from_db_error(exc)
            results[name] = DatasetResult(error=mapped.message if mapped else f"the query failed: {str(exc).strip()}")
    return results


# Saved dashboards -----------------------------------------------------------------------------------


def template_yaml(name: str) -> str:
    """The YAML of a shipped template, or NotFound naming the templates there are."""
    templates = shipped_templates()
    if name not in templates:
        raise NotFound(f'no dashboard template "{name}" (templates: {", ".join(sorted(templates))})', field="template")
    return templates[name].source_yaml


async def save_dashboard(
    conn: AsyncConnection,
    *,
    project_id: uuid.UUID,
    slug: str,
    source_yaml: str,
    template: str | None = None,
    message: str = "",
    expected_version: int | None = None,
    by: str | None = None,
) -> dict[str, Any]:
    """Validate and save: a new dashboard, or a new version when the definition changed (operators)."""
    dashboard = parse_dashboard(source_yaml)
    row = await one_row(
        conn,
        "select dashboard_id, version, new_version, created from ops.save_dashboard(%s, %s, %s, %s, %s::jsonb, %s, "
        "%s, %s, %s, %s)",
        (project_id, slug, dashboard.title, template, json.dumps(dashboard.model_dump(mode="json")), source_yaml,
         content_sha256(dashboard), message, expected_version, by),
    )  # fmt: skip
    return {"id": row[0], "slug": slug, "version": row[1], "new_version": row[2], "created": row[3]}


async def clone_template(
    conn: AsyncConnection, *, project_id: uuid.UUID, template: str, slug: str, by: str | None = None
) -> dict[str, Any]:
    """A project's own dashboard, starting as a copy of a shipped template."""
    return await save_dashboard(
        conn, project_id=project_id, slug=slug, source_yaml=template_yaml(template), template=template,
        message=f"cloned from template {template}", by=by,
    )  # fmt: skip


async def list_dashboards(conn: AsyncConnection, *, project_id: uuid.UUID) -> list[Dashboard]:
    """The project's saved dashboards (RLS: only a member's), by title."""
    from control_room.db.tables import Dashboard

    async with conn.cursor(row_factory=model_rows(Dashboard)) as cur:
        await cur.execute(
            "select * from ops.dashboards where project_id = %s and archived_at is null order by title, slug "
            "limit 500",
            (project_id,),
        )
        return list(await cur.fetchall())


async def get_dashboard(
    conn: AsyncConnection, *, project_id: uuid.UUID, slug: str, version: int | None = None
) -> dict[str, Any]:
    """One saved dashboard at a version (default: the latest) with its YAML and the versions it has."""
    row = await first_dict_row(
        conn,
        "select d.id, d.slug, d.title, d.template, d.latest_version, v.version, v.source_yaml, v.message, "
        "v.saved_by, v.saved_at from ops.dashboards d join ops.dashboard_versions v on v.dashboard_id = d.id "
        "where d.project_id = %s and d.slug = %s and v.version = coalesce(%s, d.latest_version)",
        (project_id, slug, version),
    )
    if row is None:
        raise NotFound(f'dashboard "{slug}" (version {version or "latest"}) does not exist here', field="slug")
    row["versions"] = await dict_rows(
        conn,
        "select version, message, saved_by, saved_at from ops.dashboard_versions where dashboard_id = %s "
        "order by version desc limit 100",
        (row["id"],),
    )
    return row


def dashboard_of(source_yaml: str) -> DashboardFile:
    """The model of stored YAML (validated again: the schema may have grown since)."""
    return parse_dashboard(source_yaml)
