"""Lineage: engines' reports (datasets, edges, OpenLineage RunEvents) and the reads behind the lineage UI."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row

from control_room.services.artifacts import _attempt_of_lease
from control_room.services.errors import Invalid, NotFound
from control_room.services.pagination import ListQuery, Page, by_name, decode_key_cursor, fetch_rows, name_cursor_after
from control_room.services.runs import resolve_project

DATASET_KINDS = ("source", "seed", "model", "snapshot", "exposure", "table")
DATASET_COLUMNS = (
    "d.id, d.project_id, d.namespace, d.name, d.kind, d.columns, d.owner, d.description, d.metadata, "
    "d.first_run_id, d.last_run_id, d.last_task_id, d.created_at, d.updated_at"
)
OPENLINEAGE_COLUMNS = (
    "o.id, o.run_id, o.task_id, t.key as task_key, o.attempt, o.event_type, o.event_time, o.job_namespace, "
    "o.job_name, o.openlineage_run_id, o.event"
)

# The reported datasets as rows to insert (both upserts below start so).
INSERT_REPORTED_DATASETS = """
insert into ops.datasets as d (project_id, namespace, name, kind, columns, owner, description, metadata,
                               first_run_id, last_run_id, last_task_id)
select %(project_id)s, r.namespace, r.name, r.kind, coalesce(r.columns, '[]'), r.owner, coalesce(r.description, ''),
       coalesce(r.metadata, '{}'), %(run_id)s, %(run_id)s, %(task_id)s
from jsonb_to_recordset(%(rows)s::jsonb) as r (namespace text, name text, kind text, columns jsonb, owner text,
                                               description text, metadata jsonb)
"""

# Upsert of reported datasets. A generic `table` report (a Spark write) never downgrades the kind a
# dbt report gave, and a report without columns, owner or description keeps what earlier ones said. Its
# columns keep what it does not say of a column still there (a description, tags): engines other than dbt
# know names and types only.
UPSERT_DATASETS = INSERT_REPORTED_DATASETS + """
on conflict (project_id, namespace, name) do update set
    kind = case when excluded.kind = 'table' then d.kind else excluded.kind end,
    columns = case when excluded.columns = '[]'::jsonb then d.columns
                   when excluded.kind <> 'table' then excluded.columns
                   else (select jsonb_agg(coalesce((select o from jsonb_array_elements(d.columns) o
                                                    where o ->> 'name' = n ->> 'name' limit 1), '{}') || n
                                          order by i)
                         from jsonb_array_elements(excluded.columns) with ordinality as x (n, i)) end,
    owner = coalesce(excluded.owner, d.owner),
    description = case when excluded.description = '' then d.description else excluded.description end,
    metadata = d.metadata || excluded.metadata,
    last_run_id = excluded.last_run_id,
    last_task_id = excluded.last_task_id,
    updated_at = now()
returning d.id, d.namespace, d.name
"""

# Datasets a task only read: registered when unknown; a known one keeps its last write (run, task, facts) and
# gets columns only where none were known. The no-op update makes the row come back with its id.
UPSERT_READ_DATASETS = INSERT_REPORTED_DATASETS + """
on conflict (project_id, namespace, name) do update set
    columns = case when d.columns = '[]'::jsonb then excluded.columns else d.columns end
returning d.id, d.namespace, d.name
"""

UPSERT_EDGES = """
insert into ops.lineage_edges as e (project_id, upstream_id, downstream_id, job_name, column_lineage,
                                    first_run_id, last_run_id, last_task_id)
select %(project_id)s, r.upstream_id, r.downstream_id, coalesce(r.job_name, ''), coalesce(r.column_lineage, '[]'),
       %(run_id)s, %(run_id)s, %(task_id)s
from jsonb_to_recordset(%(rows)s::jsonb) as r (upstream_id uuid, downstream_id uuid, job_name text,
                                               column_lineage jsonb)
on conflict (upstream_id, downstream_id) do update set
    job_name = case when excluded.job_name = '' then e.job_name else excluded.job_name end,
    column_lineage = case when excluded.column_lineage = '[]'::jsonb then e.column_lineage
                          else excluded.column_lineage end,
    last_run_id = excluded.last_run_id,
    last_task_id = excluded.last_task_id,
    updated_at = now()
"""

INSERT_OPENLINEAGE = """
insert into ops.openlineage_events (project_id, run_id, task_id, attempt, event_type, event_time, job_namespace,
                                    job_name, openlineage_run_id, event)
select %(project_id)s, %(run_id)s, %(task_id)s, %(attempt)s, r.event ->> 'eventType',
       (r.event ->> 'eventTime')::timestamptz, r.event -> 'job' ->> 'namespace', r.event -> 'job' ->> 'name',
       (r.event -> 'run' ->> 'runId')::uuid, r.event
from jsonb_array_elements(%(rows)s::jsonb) as r (event)
on conflict (openlineage_run_id, event_type, event_time) do nothing
"""


# The task's own inputs (edges' upstreams) and outputs (downstreams): what its results' policy check reads.
INSERT_TASK_DATASETS = """
insert into ops.task_datasets (task_id, project_id, dataset_id, direction)
select %(task_id)s, %(project_id)s, r.dataset_id, r.direction
from jsonb_to_recordset(%(rows)s::jsonb) as r (dataset_id uuid, direction text)
on conflict do nothing
"""


def _key(ref: dict[str, Any]) -> tuple[str, str]:
    return ref["namespace"], ref["name"]


def _check_report(datasets: list[dict[str, Any]], edges: list[dict[str, Any]]) -> None:
    """Refuse what the tables would refuse less clearly: duplicates and self-edges, named by position."""
    seen: dict[tuple[str, str], int] = {}
    for index, dataset in enumerate(datasets):
        key = _key(dataset)
        if key in seen:
            raise Invalid(
                f"dataset {key[0]} {key[1]} is listed twice (also datasets[{seen[key]}]); report each once",
                field=f"datasets[{index}]",
            )
        seen[key] = index
    pairs: dict[tuple[tuple[str, str], tuple[str, str]], int] = {}
    for index, edge in enumerate(edges):
        pair = (_key(edge["upstream"]), _key(edge["downstream"]))
        if pair[0] == pair[1]:
            raise Invalid(
                f"an edge cannot lead from a dataset to itself ({pair[0][0]} {pair[0][1]})",
                field=f"edges[{index}].downstream",
            )
        if pair in pairs:
            raise Invalid(f"duplicates edges[{pairs[pair]}]; report each edge once", field=f"edges[{index}]")
        pairs[pair] = index


async def _known_datasets(
    conn: AsyncConnection, project_id: uuid.UUID, keys: set[tuple[str, str]]
) -> dict[tuple[str, str], uuid.UUID]:
    if not keys:
        return {}
    namespaces, names = zip(*sorted(keys), strict=True)
    cur = await conn.execute(
        "select d.namespace, d.name, d.id from ops.datasets d "
        "join unnest(%s::text[], %s::text[]) as k (namespace, name) on k.namespace = d.namespace and k.name = d.name "
        "where d.project_id = %s",
        (list(namespaces), list(names), project_id),
    )
    return {(row[0], row[1]): row[2] for row in await cur.fetchall()}


async def report_lineage(
    conn: AsyncConnection,
    *,
    task_id: uuid.UUID,
    lease_token: uuid.UUID,
    datasets: list[dict[str, Any]],
    edges: list[dict[str, Any]],
    openlineage_events: list[dict[str, Any]],
) -> dict[str, int]:
    """Record an engine's lineage report for the task's attempt; repeating the same report changes nothing.

    Datasets are upserted (the run and task become their last ones; a ``read_only`` one the task only read
    keeps its last write when known), each edge is stored once per
    (upstream, downstream) pair with the runs that reported it first and last, and RunEvents are
    appended, deduplicated by (run.runId, eventType, eventTime). An edge may name a dataset of this
    report or one an earlier report of the project recorded.
    """
    _check_report(datasets, edges)
    attempt = await _attempt_of_lease(conn, task_id, lease_token)
    common = {"project_id": attempt["project_id"], "run_id": attempt["run_id"], "task_id": task_id}
    async with conn.transaction():
        ids: dict[tuple[str, str], uuid.UUID] = {}
        written = [d for d in datasets if not d.get("read_only")]
        read = [d for d in datasets if d.get("read_only")]
        for statement, rows in ((UPSERT_DATASETS, written), (UPSERT_READ_DATASETS, read)):
            if rows:
                cur = await conn.execute(statement, {**common, "rows": json.dumps(rows)})
                ids.update({(row[1], row[2]): row[0] for row in await cur.fetchall()})
        wanted = {_key(e[end]) for e in edges for end in ("upstream", "downstream")}
        ids.update(await _known_datasets(conn, attempt["project_id"], wanted - ids.keys()))
        rows = []
        for index, edge in enumerate(edges):
            for end in ("upstream", "downstream"):
                if _key(edge[end]) not in ids:
                    raise Invalid(
                        f"dataset {edge[end]['namespace']} {edge[end]['name']} is neither in this report's "
                        "datasets nor known in the project; add it to datasets",
                        field=f"edges[{index}].{end}",
                    )
            rows.append(
                {
                    "upstream_id": str(ids[_key(edge["upstream"])]),
                    "downstream_id": str(ids[_key(edge["downstream"])]),
                    "job_name": edge.get("job_name"),
                    "column_lineage": edge.get("column_lineage"),
                }
            )
        if rows:
            await conn.execute(UPSERT_EDGES, {**common, "rows": json.dumps(rows)})
            ends = {(r["upstream_id"], "input") for r in rows} | {(r["downstream_id"], "output") for r in rows}
            task_rows = [{"dataset_id": d, "direction": side} for d, side in sorted(ends)]
            await conn.execute(INSERT_TASK_DATASETS, {**common, "rows": json.dumps(task_rows)})
        accepted = 0
        if openlineage_events:
            cur = await conn.execute(
                INSERT_OPENLINEAGE, {**common, "attempt": attempt["attempt"], "rows": json.dumps(openlineage_events)}
            )
            accepted = max(cur.rowcount, 0)
    return {
        "datasets": len(datasets),
        "edges": len(edges),
        "openlineage_events_accepted": accepted,
        "openlineage_events_duplicates": len(openlineage_events) - accepted,
    }


# Reads ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetFilters:
    """What the datasets list can be narrowed by."""

    project: str | None = None
    kinds: list[str] = field(default_factory=list)
    namespace: str | None = None
    text: str | None = None
    last_run_id: uuid.UUID | None = None


BY_NAME = by_name("d")


async def list_datasets(conn: AsyncConnection, *, filters: DatasetFilters, cursor: str | None, limit: int) -> Page:
    """One page of datasets ordered by name; returns the rows and the cursor of the next page."""
    query = ListQuery()
    query.equal("d.namespace", filters.namespace)
    query.matches("d.name", filters.text)
    query.equal("d.last_run_id", filters.last_run_id)
    query.one_of("d.kind", filters.kinds, allowed=DATASET_KINDS, field="kind")
    if filters.project:
        query.equal("d.project_id", await resolve_project(conn, filters.project))
    if cursor:
        query.after(BY_NAME, *decode_key_cursor(cursor))
    return await query.page(
        conn, columns=DATASET_COLUMNS, source="ops.datasets d", keyset=BY_NAME, limit=limit, cursor_of=name_cursor_after
    )


EDGE_SIDE = """
select e.id, e.job_name, e.column_lineage, e.first_run_id, e.last_run_id, e.last_task_id, e.updated_at,
       o.id as other_id, o.namespace as other_namespace, o.name as other_name, o.kind as other_kind
from ops.lineage_edges e join ops.datasets o on o.id = e.{other}
where e.{this} = %s
order by o.name, o.id
limit 10000
"""


async def _edges(conn: AsyncConnection, dataset_id: uuid.UUID, *, upstream: bool) -> list[dict[str, Any]]:
    this, other = ("downstream_id", "upstream_id") if upstream else ("upstream_id", "downstream_id")
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            sql.SQL(EDGE_SIDE).format(this=sql.Identifier(this), other=sql.Identifier(other)), (dataset_id,)
        )
        rows = await cur.fetchall()
    out = []
    for row in rows:
        other_end = {key.removeprefix("other_"): row.pop(key) for key in list(row) if key.startswith("other_")}
        out.append({**row, "dataset": other_end})
    return out


async def get_dataset(conn: AsyncConnection, *, dataset_id: uuid.UUID) -> dict[str, Any]:
    """A dataset with its direct upstream and downstream edges (each naming the dataset at the other end)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"select {DATASET_COLUMNS} from ops.datasets d where d.id = %s", (dataset_id,))
        dataset = await cur.fetchone()
    if dataset is None:
        raise NotFound(f"dataset {dataset_id} does not exist or is not visible to you", field="dataset_id")
    dataset["upstream"] = await _edges(conn, dataset_id, upstream=True)
    dataset["downstream"] = await _edges(conn, dataset_id, upstream=False)
    return dataset


async def list_openlineage_events(
    conn: AsyncConnection,
    *,
    run_id: uuid.UUID,
    task_id: uuid.UUID | None = None,
    after_id: int | None = None,
    limit: int = 200,
) -> list[dict[str, Any]]:
    """OpenLineage RunEvents the run's tasks emitted, in the order received."""
    query = ListQuery()
    query.add("o.run_id = %s", run_id)
    query.equal("o.task_id", task_id)
    if after_id is not None:
        query.add("o.id > %s", after_id)
    statement = sql.SQL(
        "select {cols} from ops.openlineage_events o join ops.tasks t on t.id = o.task_id "
        "{where} order by o.id limit %s"
    ).format(cols=sql.SQL(OPENLINEAGE_COLUMNS), where=query.where())
    return await fetch_rows(conn, statement, [*query.args, limit])
