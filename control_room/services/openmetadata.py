"""The OpenMetadata connector: push a project's datasets (as tables), their columns, owners and lineage to
an OpenMetadata server, and pull what people curate there (owners, tags, glossary terms, descriptions)
back onto our datasets; with a dry run that only lists the differences.

A dataset ``db.schema.table`` becomes the table ``<service>.db.schema.table`` (fewer parts are padded
with ``default``) under a database service the OpenMetadata admin created (``LAKEHOUSE_OPENMETADATA_SERVICE``).
Every write is decided by comparing with what OpenMetadata holds, so a second sync sends nothing and
pulls nothing. OpenMetadata keeps a description a person wrote (a bot's PUT does not overwrite it), so
a description is pushed only where OpenMetadata has none. An owner is pushed when OpenMetadata knows a
user named like it (the e-mail's local part, or the name). Pulled values land in the dataset's
``metadata.openmetadata`` and fill the owner and description the engines left empty
(ops.apply_openmetadata_pull, admin role, audited).

The sync runs for a person (API, CLI) or as a ``catalog_sync`` task (a job with a schedule): the agent
holding the task's lease asks for it, and the control room, which holds the OpenMetadata credentials,
does it for the task's project when a project admin stands behind the run (its job, which only admins
write, or its requester).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import dict_row

from control_room.db.rows import model_rows
from control_room.services.auth import ExecutorPrincipal, Principal, scoped
from control_room.services.errors import Forbidden, Invalid, LeaseLost, ServiceError, from_db_error
from control_room.services.openmetadata_client import (
    AddLineage,
    Column,
    ColumnLineage,
    CreateDatabase,
    CreateDatabaseSchema,
    CreateTable,
    EntitiesEdge,
    EntityReference,
    LineageDetails,
    OpenMetadataClient,
    Table,
)
from control_room.services.runs import resolve_project

if TYPE_CHECKING:  # the SQLModel mirror takes a while to import (`lakehouse catalog`): loaded on use
    from control_room.db.tables import Dataset, LineageEdge

# Our column types (dbt catalog, Delta, information_schema, OpenLineage) -> OpenMetadata's dataType enum.
DATA_TYPES = (
    (r"^(big ?int|int8|long)", "BIGINT"),
    (r"^(small ?int|int2|short)", "SMALLINT"),
    (r"^(tiny ?int|byte)", "TINYINT"),
    (r"^(int|integer|int4)\b", "INT"),
    (r"^(double|float8|double precision)", "DOUBLE"),
    (r"^(float|real|float4)", "FLOAT"),
    (r"^(decimal|numeric|number)", "DECIMAL"),
    (r"^(varchar|character varying|text|string|char|character|bpchar)", "STRING"),
    (r"^bool", "BOOLEAN"),
    (r"^date$", "DATE"),
    (r"^timestamp", "TIMESTAMP"),
    (r"^time\b", "TIME"),
    (r"^(json|jsonb)$", "JSON"),
    (r"^uuid$", "UUID"),
    (r"^(blob|bytea|binary)", "BINARY"),
)
TABLE_KINDS = ("source", "seed", "model", "snapshot", "table")
LINEAGE_SOURCE = "Manual"  # OpenMetadata's lineage source enum has no value for an outside pusher
DATASETS = "select * from ops.datasets where project_id = %(p)s and kind = any(%(kinds)s) order by name, id"
EDGES = "select * from ops.lineage_edges where project_id = %(p)s"


class OpenMetadataUnavailable(ServiceError, status=502, title="OpenMetadata refused"):
    """OpenMetadata refused a call or could not be reached (the sync stopped there)."""


def data_type(ours: str) -> str:
    """OpenMetadata's dataType for one of our column types (UNKNOWN when none fits)."""
    text = ours.strip().lower()
    return next((om for pattern, om in DATA_TYPES if re.match(pattern, text)), "UNKNOWN")


def table_fqn(service: str, dataset_name: str) -> tuple[str, str, str]:
    """(database, schema, table) of a dataset name; OpenMetadata's FQN quotes no part, so none may hold dots."""
    parts = dataset_name.split(".")
    table = parts[-1]
    schema = parts[-2] if len(parts) >= 2 else "default"
    database = ".".join(parts[:-2]).replace(".", "_") if len(parts) >= 3 else "default"
    return database, schema, table


@dataclass(frozen=True)
class Change:
    """One difference: what would be (or was) sent or pulled, on which object."""

    direction: str  # "push" or "pull"
    action: str  # "create table", "update table", "add lineage", "pull"
    target: str  # a table FQN, or "upstream -> downstream"
    fields: list[str] = field(default_factory=list)


@dataclass
class SyncReport:
    dry_run: bool
    service: str
    tables: int = 0
    changes: list[Change] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "service": self.service,
            "tables": self.tables,
            "pushed": sum(1 for c in self.changes if c.direction == "push"),
            "pulled": sum(1 for c in self.changes if c.direction == "pull"),
            "changes": [asdict(c) for c in self.changes],
            "warnings": self.warnings,
        }


@dataclass(frozen=True)
class _Dataset:
    """A catalog dataset of ours and the OpenMetadata table it is pushed to."""

    row: Dataset
    fqn: str
    database: str
    schema: str
    table: str


def _desired_columns(dataset: _Dataset) -> list[Column]:
    return [
        Column(
            name=str(c["name"]),
            dataType=data_type(str(c.get("type") or "")),
            dataTypeDisplay=str(c.get("type") or "") or None,
            description=str(c.get("description") or "") or None,
        )
        for c in dataset.row.columns
        if c.get("name")
    ]


def _table_changes(dataset: _Dataset, current: Table | None, owner: EntityReference | None) -> list[str]:
    """Which fields a push would change (all of them for a new table)."""
    if current is None:
        return ["columns", *(["description"] if dataset.row.description else []), *(["owners"] if owner else [])]
    changed = []
    theirs = {c.name: c for c in current.columns}
    wanted = _desired_columns(dataset)
    if [(c.name, c.dataType) for c in wanted] != [(c.name, c.dataType) for c in current.columns]:
        changed.append("columns")
    elif any(c.description and not theirs[c.name].description for c in wanted):
        changed.append("columns")  # a column description OpenMetadata lacks
    if dataset.row.description and not current.description:
        changed.append("description")
    if owner is not None and owner.id not in {o.id for o in current.owners}:
        changed.append("owners")
    return changed


def _pulled(table: Table) -> dict[str, Any]:
    """What OpenMetadata says of a table that we keep under metadata.openmetadata."""
    return {
        "fqn": table.fullyQualifiedName,
        "id": str(table.id),
        "owners": sorted(o.name or o.fullyQualifiedName or str(o.id) for o in table.owners),
        "tags": sorted(t.tagFQN for t in table.tags if t.source == "Classification"),
        "glossary_terms": sorted(t.tagFQN for t in table.tags if t.source == "Glossary"),
        "description": table.description or "",
        "columns": {
            c.name: {
                "description": c.description or "",
                "tags": sorted(t.tagFQN for t in c.tags if t.source == "Classification"),
                "glossary_terms": sorted(t.tagFQN for t in c.tags if t.source == "Glossary"),
            }
            for c in table.columns
        },
    }


class OpenMetadataSync:
    """One sync of one project against one OpenMetadata server."""

    def __init__(self, client: OpenMetadataClient, *, service: str, dry_run: bool) -> None:
        self.client = client
        self.service = service
        self.report = SyncReport(dry_run=dry_run, service=service)
        self._owners: dict[str, EntityReference | None] = {}

    async def _owner(self, ours: str | None) -> EntityReference | None:
        if not ours:
            return None
        if ours not in self._owners:
            name = ours.split("@", 1)[0] if "@" in ours else ours
            user = await self.client.user(name)
            if user is None:
                self.report.warnings.append(f"owner {ours}: no OpenMetadata user named {name}; not pushed")
            self._owners[ours] = EntityReference(id=user.id, type="user") if user else None
        return self._owners[ours]

    async def push_table(self, dataset: _Dataset) -> Table | None:
        current = await self.client.table(dataset.fqn)
        owner = await self._owner(dataset.row.owner)
        fields = _table_changes(dataset, current, owner)
        if not fields:
            return current
        self.report.changes.append(
            Change("push", "create table" if current is None else "update table", dataset.fqn, fields)
        )
        if self.report.dry_run:
            return current
        if current is None:
            database = await self.client.put_database(CreateDatabase(name=dataset.database, service=self.service))
            await self.client.put_database_schema(
                CreateDatabaseSchema(name=dataset.schema, database=database.fullyQualifiedName)
            )
        owners = [owner] if owner else None
        if current is not None and owner is not None:
            kept = [EntityReference(id=o.id, type=o.type) for o in current.owners if o.id != owner.id]
            owners = [*kept, owner]
        await self.client.put_table(
            CreateTable(
                name=dataset.table,
                databaseSchema=f"{self.service}.{dataset.database}.{dataset.schema}",
                columns=_desired_columns(dataset),
                description=dataset.row.description or None,
                owners=owners,
            )
        )
        return await self.client.table(dataset.fqn)  # as OpenMetadata keeps it (its own rules applied)

    async def push_lineage(
        self,
        upstream: _Dataset,
        downstream: _Dataset,
        pairs: list[dict[str, Any]],
        tables: dict[uuid.UUID, Table | None],
    ) -> None:
        up, down = tables.get(upstream.row.id), tables.get(downstream.row.id)
        wanted = sorted(
            (f"{upstream.fqn}.{p['upstream_column']}", f"{downstream.fqn}.{p['downstream_column']}") for p in pairs
        )
        target = f"{upstream.fqn} -> {downstream.fqn}"
        if up is not None and down is not None:
            lineage = await self.client.upstream_lineage(downstream.fqn)
            edges = [e for e in (lineage.upstreamEdges if lineage else []) if e.fromEntity == up.id]
            if edges:
                details = edges[0].lineageDetails
                have = sorted(
                    (source, c.toColumn or "")
                    for c in (details.columnsLineage if details else [])
                    for source in c.fromColumns
                )
                if have == wanted:
                    return
        self.report.changes.append(Change("push", "add lineage", target, ["columnsLineage"] if wanted else []))
        if self.report.dry_run or up is None or down is None:
            return
        by_column: dict[str, list[str]] = {}
        for source, column in wanted:
            by_column.setdefault(column, []).append(source)
        await self.client.add_lineage(
            AddLineage(
                edge=EntitiesEdge(
                    fromEntity=EntityReference(id=up.id, type="table"),
                    toEntity=EntityReference(id=down.id, type="table"),
                    lineageDetails=LineageDetails(
                        columnsLineage=[ColumnLineage(fromColumns=s, toColumn=c) for c, s in by_column.items()],
                        source=LINEAGE_SOURCE,
                    ),
                )
            )
        )

    def pull_rows(self, datasets: list[_Dataset], tables: dict[uuid.UUID, Table | None]) -> list[dict[str, Any]]:
        rows = []
        for dataset in datasets:
            table = tables.get(dataset.row.id)
            if table is None:
                continue
            pulled = _pulled(table)
            owner = pulled["owners"][0] if pulled["owners"] else None
            fields = [
                name
                for name, differs in (
                    ("openmetadata", dataset.row.metadata_.get("openmetadata") != pulled),
                    ("owner", dataset.row.owner is None and owner is not None),
                    ("description", not dataset.row.description and bool(pulled["description"])),
                )
                if differs
            ]
            if fields:
                self.report.changes.append(Change("pull", "pull", dataset.fqn, fields))
                rows.append(
                    {
                        "dataset_id": str(dataset.row.id),
                        "openmetadata": pulled,
                        "owner": owner,
                        "description": pulled["description"],
                    }
                )
        return rows


def _placed(row: Dataset, service: str) -> _Dataset:
    database, schema, table = table_fqn(service, row.name)
    return _Dataset(row, f"{service}.{database}.{schema}.{table}", database, schema, table)


async def _project_lineage(
    conn: AsyncConnection, project_id: uuid.UUID, service: str
) -> tuple[list[_Dataset], list[LineageEdge]]:
    from control_room.db.tables import Dataset, LineageEdge

    async with conn.cursor(row_factory=model_rows(Dataset)) as cur:
        await cur.execute(DATASETS, {"p": project_id, "kinds": list(TABLE_KINDS)})
        datasets = [_placed(row, service) for row in await cur.fetchall()]
    async with conn.cursor(row_factory=model_rows(LineageEdge)) as edges:
        await edges.execute(EDGES, {"p": project_id})
        return datasets, list(await edges.fetchall())


async def sync_openmetadata(
    conn: AsyncConnection,
    principal: Principal,
    client: OpenMetadataClient,
    *,
    project: str,
    service: str,
    dry_run: bool,
) -> SyncReport:
    """Push the project's datasets, columns, owners and lineage, then pull OpenMetadata's curation back
    (admin role on the project). With ``dry_run`` nothing is written on either side: the report lists
    what would be."""
    try:
        async with scoped(conn, principal):
            project_id = await resolve_project(conn, project)
            await conn.execute("select ops.require_project_role(%s, 'admin')", (project_id,))
            datasets, edges = await _project_lineage(conn, project_id, service)
    except psycopg.Error as exc:
        raise from_db_error(exc) or exc from exc
    return await _sync(conn, principal, client, project_id, datasets, edges, service=service, dry_run=dry_run)


TASK = """
select t.project_id, t.key, r.id as run_id, r.template_id, r.requested_by_name,
       coalesce(ops.role_rank(ops.user_project_role(t.project_id, r.requested_by)) >= ops.role_rank('admin'),
                false) as by_admin
from ops.tasks t join ops.runs r on r.id = t.run_id
where t.id = %(task)s and t.lease_token = %(lease)s and t.executor_id = %(executor)s
  and t.status in ('claimed', 'running') and t.engine = 'catalog_sync'
"""


async def sync_openmetadata_for_task(
    conn: AsyncConnection,
    executor: ExecutorPrincipal,
    client: OpenMetadataClient,
    *,
    task_id: uuid.UUID,
    lease_token: uuid.UUID,
    service: str,
    dry_run: bool,
) -> SyncReport:
    """The sync a ``catalog_sync`` task asks for, for the agent holding its live lease, on the task's
    project. A project admin must stand behind the run: it comes from a job (admins write jobs and their
    schedules), or an admin submitted it; else Forbidden, naming who did."""
    try:
        async with scoped(conn, executor), conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(TASK, {"task": task_id, "lease": lease_token, "executor": executor.executor_id})
            task = await cur.fetchone()
            if task is None:
                raise LeaseLost(
                    f"lease token does not hold catalog_sync task {task_id} (expired, finalized, reassigned, "
                    "or not a catalog_sync task)"
                )
            if task["template_id"] is None and not task["by_admin"]:
                raise Forbidden(
                    f"a catalog sync writes to OpenMetadata and to the catalog: it needs a project admin behind "
                    f"the run, and {task['requested_by_name'] or 'its requester'} is not one. Put the task in a job "
                    "(admins write jobs and schedules), or ask an admin to submit the run",
                    field="engine",
                )
            datasets, edges = await _project_lineage(conn, task["project_id"], service)
    except psycopg.Error as exc:
        raise from_db_error(exc) or exc from exc
    actor = f"task {task['key']} of run {task['run_id']}"
    return await _sync(
        conn, executor, client, task["project_id"], datasets, edges, service=service, dry_run=dry_run, actor=actor
    )


async def _sync(
    conn: AsyncConnection,
    principal: Principal,
    client: OpenMetadataClient,
    project_id: uuid.UUID,
    datasets: list[_Dataset],
    edges: list[LineageEdge],
    *,
    service: str,
    dry_run: bool,
    actor: str | None = None,
) -> SyncReport:
    if await client.database_service(service) is None:
        raise Invalid(
            f"OpenMetadata has no database service named {service}: create one (Settings > Services > Databases, "
            "type Custom Database) or set LAKEHOUSE_OPENMETADATA_SERVICE to an existing one",
            field="service",
        )
    sync = OpenMetadataSync(client, service=service, dry_run=dry_run)
    seen: dict[str, str] = {}
    tables: dict[uuid.UUID, Table | None] = {}
    for dataset in datasets:
        if dataset.fqn in seen:
            sync.report.warnings.append(
                f"{dataset.row.name} and {seen[dataset.fqn]} are both {dataset.fqn}; pushed once"
            )
            continue
        seen[dataset.fqn] = dataset.row.name
        tables[dataset.row.id] = await sync.push_table(dataset)
    sync.report.tables = len(seen)
    by_id = {d.row.id: d for d in datasets if d.row.id in tables}
    for edge in edges:
        up, down = by_id.get(edge.upstream_id), by_id.get(edge.downstream_id)
        if up is not None and down is not None:
            await sync.push_lineage(up, down, edge.column_lineage, tables)
    rows = sync.pull_rows(list(by_id.values()), tables)
    if rows and not dry_run:
        async with scoped(conn, principal):
            await conn.execute(
                "select ops.apply_openmetadata_pull(%s, %s::jsonb, %s)", (project_id, json.dumps(rows), actor)
            )
    return sync.report
