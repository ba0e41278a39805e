"""Catalog and lineage beyond the engines' reports: OpenLineage events from outside producers.

``POST /api/v1/lineage`` accepts the events Marquez accepts (RunEvent, DatasetEvent, JobEvent of
OpenLineage spec 2-0-2), so Airflow's, Spark's and dbt's OpenLineage integrations can point at the
control room with ``OPENLINEAGE_URL``. Each event is validated against the official JSON Schema
(``spec/openlineage``: the event's own definition, then every facet whose key an official facet
schema defines; custom facets pass as the spec allows) and the first error is reported with its
JSON path. Storing it is one call of ``ops.ingest_openlineage_to`` acting as the caller (operator role
on the project, checked in SQL): RunEvents are idempotent by ``runId`` + ``eventType`` +
``eventTime``; jobs, datasets (with schema, documentation and ownership facets) and the edges between
a job's inputs and outputs (with ``columnLineage`` pairs) join the project's registry and graph.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema_rs
from psycopg import AsyncConnection
from psycopg.pq import TransactionStatus

from control_room.config import PROJECT_ROOT
from control_room.db.rows import dict_rows, scalar
from control_room.services import lineage
from control_room.services.auth import Principal, act_as_principal
from control_room.services.errors import NotFound, ServiceError
from control_room.services.pagination import ListQuery, Page, decode_key_cursor, escape_like, name_cursor_after
from control_room.services.runs import resolve_project

if TYPE_CHECKING:  # imported where used: jsonschema's format checkers take seconds, a replica's start pays none
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError

SPEC_DIR = PROJECT_ROOT / "spec" / "openlineage"
MAIN_ID = "https://openlineage.io/spec/2-0-2/OpenLineage.json"
EVENT_KINDS = ("RunEvent", "DatasetEvent", "JobEvent")
_FACET_SUFFIXES = (
    ("InputDatasetFacet", "input"),
    ("OutputDatasetFacet", "output"),
    ("DatasetFacet", "dataset"),
    ("RunFacet", "run"),
    ("JobFacet", "job"),
)


class InvalidEvent(ServiceError, status=400, title="Invalid OpenLineage event"):
    """An event the OpenLineage schema refuses (400, naming the failing JSON path)."""


def _facet_location(file_name: str) -> str:
    stem = file_name.removesuffix(".json")
    for suffix, location in _FACET_SUFFIXES:
        if stem.endswith(suffix):
            return location
    return "dataset"  # LineageFacet: the one facet file without a location suffix


class OpenLineageSchema:
    """The spec's validators, built once: one per event kind and one per official facet key and place.

    Each exists twice: compiled by jsonschema-rs, which answers "valid?" in ~40 µs where jsonschema takes
    ~1-4 ms (issue 21's ingest rate), and built by jsonschema (on the first invalid event), whose
    ``best_match`` picks the error reported for an invalid event (the path and message clients and tests
    rely on). A valid event, the usual case, never reaches the second."""

    def __init__(self, directory: Path) -> None:
        main = json.loads((directory / "OpenLineage.json").read_text(encoding="utf-8"))
        self.documents = [(MAIN_ID, main)]
        self.facet_schemas: dict[tuple[str, str], dict[str, Any]] = {}
        for path in sorted((directory / "facets").glob("*.json")):
            schema = json.loads(path.read_text(encoding="utf-8"))
            self.documents.append((schema["$id"], schema))
            for key in schema.get("properties", {}):
                self.facet_schemas[(_facet_location(path.name), key)] = schema
        compiled = jsonschema_rs.Registry(self.documents)
        self.fast_events = {
            kind: self._compiled({"$ref": f"{MAIN_ID}#/$defs/{kind}"}, compiled) for kind in EVENT_KINDS
        }
        self.fast_facets = {place: self._compiled(schema, compiled) for place, schema in self.facet_schemas.items()}
        self._explainers: tuple[dict[str, Draft202012Validator], dict[tuple[str, str], Draft202012Validator]] | None
        self._explainers = None
        self._explainers_lock = threading.Lock()

    @staticmethod
    def _compiled(schema: dict[str, Any], registry: jsonschema_rs.Registry) -> jsonschema_rs.Validator:
        return jsonschema_rs.Draft202012Validator(schema, registry=registry, validate_formats=True)

    def explainers(self) -> tuple[dict[str, Draft202012Validator], dict[tuple[str, str], Draft202012Validator]]:
        """jsonschema's validators (per event kind, per facet key and place), built on the first invalid
        event: importing jsonschema's format checkers takes 2-5 s of CPU, which a replica's first valid
        event used to pay while its event loop served nothing else (issue 21's ingest)."""
        with self._explainers_lock:
            if self._explainers is None:
                from jsonschema import Draft202012Validator
                from referencing import Registry, Resource

                registry: Registry[Any] = Registry().with_resources(
                    (uri, Resource.from_contents(document)) for uri, document in self.documents
                )

                def build(schema: Mapping[str, Any]) -> Draft202012Validator:
                    checker = Draft202012Validator.FORMAT_CHECKER
                    return Draft202012Validator(schema, registry=registry, format_checker=checker)

                events = {kind: build({"$ref": f"{MAIN_ID}#/$defs/{kind}"}) for kind in EVENT_KINDS}
                facets = {place: build(schema) for place, schema in self.facet_schemas.items()}
                self._explainers = (events, facets)
            return self._explainers

    @staticmethod
    def kind_of(event: Mapping[str, Any]) -> str:
        """RunEvent (has run), DatasetEvent (has dataset) or JobEvent (has job only), as Marquez tells them."""
        if "run" in event:
            return "RunEvent"
        if "dataset" in event:
            return "DatasetEvent"
        return "JobEvent"

    def is_valid(self, event: Any) -> bool:
        """Whether the event and its official facets meet the spec (the compiled validators only)."""
        if not isinstance(event, dict):
            return False
        kind = self.kind_of(event)
        if not self.fast_events[kind].is_valid(event):
            return False
        for _where, location, group in _facet_groups(event, kind):
            for key, facet in group.items():
                validator = self.fast_facets.get((location, key))
                if validator is not None and not validator.is_valid({key: facet}):
                    return False
        return True

    def first_error(self, event: Any) -> tuple[str, str] | None:
        """(JSON path, message) of the first way the event breaks the spec, or None when it is valid."""
        if not isinstance(event, dict):
            return "$", "an OpenLineage event is a JSON object"
        if self.is_valid(event):
            return None
        from jsonschema.exceptions import best_match

        events, facets = self.explainers()
        kind = self.kind_of(event)
        error = best_match(events[kind].iter_errors(event))
        if error is not None:
            return _path(error), f"{kind}: {error.message}"
        for where, location, group in _facet_groups(event, kind):
            for key, facet in group.items():
                explainer = facets.get((location, key))
                if explainer is None:
                    continue  # a custom facet: the spec allows any key with _producer and _schemaURL
                facet_error = best_match(explainer.iter_errors({key: facet}))
                if facet_error is not None:
                    return f"{where}{_path(facet_error)[1:]}", f"{key} facet: {facet_error.message}"
        return None


def _path(error: ValidationError) -> str:
    return str(error.json_path)


def _facet_groups(event: Mapping[str, Any], kind: str) -> list[tuple[str, str, Mapping[str, Any]]]:
    groups: list[tuple[str, str, Mapping[str, Any]]] = []

    def add(where: str, location: str, value: Any) -> None:
        if isinstance(value, Mapping):
            groups.append((where, location, value))

    if kind == "RunEvent":
        add("$.run.facets", "run", event.get("run", {}).get("facets"))
    if kind in ("RunEvent", "JobEvent"):
        add("$.job.facets", "job", event.get("job", {}).get("facets"))
        for side, extra, location in (("inputs", "inputFacets", "input"), ("outputs", "outputFacets", "output")):
            for index, dataset in enumerate(event.get(side) or []):
                if isinstance(dataset, Mapping):
                    add(f"$.{side}[{index}].facets", "dataset", dataset.get("facets"))
                    add(f"$.{side}[{index}].{extra}", location, dataset.get(extra))
    if kind == "DatasetEvent" and isinstance(event.get("dataset"), Mapping):
        add("$.dataset.facets", "dataset", event["dataset"].get("facets"))
    return groups


@cache
def openlineage_schema() -> OpenLineageSchema:
    return OpenLineageSchema(SPEC_DIR)


def validate_event(event: Any) -> None:
    """Raise InvalidEvent naming the JSON path of the first error; return when the event is valid."""
    problem = openlineage_schema().first_error(event)
    if problem is not None:
        path, message = problem
        raise InvalidEvent(f"{path}: {message}", field=path)


async def _validate_off_loop(event: Any) -> None:
    """validate_event, with an invalid event explained in a worker thread: the first one builds
    jsonschema's validators (seconds), which must not stall the other requests on the event loop."""
    if not openlineage_schema().is_valid(event):
        await asyncio.to_thread(validate_event, event)


async def ingest_openlineage(
    conn: AsyncConnection, principal: Principal, event: Any, *, project: str | None, sent: str | None = None
) -> dict[str, Any]:
    """Validate and store one OpenLineage event as the principal; ``stored`` is false for a RunEvent
    already stored (same runId, eventType and eventTime), which then changes nothing. ``sent``: the JSON
    text the event was parsed from, stored as it came instead of encoding the event again."""
    await _validate_off_loop(event)
    # The whole transaction (act as the caller, resolve the project and store the event in one SQL call,
    # commit) in one pipeline: one network round trip. ``scoped`` would take three here (psycopg syncs a
    # pipeline around each transaction block) and a tenth of the request's CPU at hundreds of events a second.
    try:
        async with conn.pipeline():
            await conn.execute("begin")
            await act_as_principal(conn, principal)
            cur = await conn.execute(
                "select project_id, stored from ops.ingest_openlineage_to(%s, %s::jsonb)",
                (project, sent if sent is not None else json.dumps(event)),
            )
            await conn.execute("commit")
        row = await cur.fetchone()
    except BaseException:
        if conn.info.transaction_status != TransactionStatus.IDLE:
            await conn.rollback()  # the server skipped the commit after the error: end the failed transaction
        raise
    assert row is not None
    return {"project_id": row[0], "kind": OpenLineageSchema.kind_of(event), "stored": bool(row[1])}


# The catalog: search and one dataset's page ----------------------------------------------------------

CATALOG_COLUMNS = (
    "d.id, d.project_id, d.namespace, d.name, d.kind, d.columns, d.owner, d.description, d.metadata, "
    "d.last_run_id, d.updated_at"
)
# Where a search text may match: the name, a column's name or description, the description, a tag, the owner,
# and what OpenMetadata's sync pulled (its tags and glossary terms, see services/openmetadata.py).
SEARCH = """(d.name ilike %s or d.description ilike %s or coalesce(d.owner, '') ilike %s
 or exists (select 1 from jsonb_array_elements(d.columns) c
            where c ->> 'name' ilike %s or c ->> 'description' ilike %s)
 or exists (select 1 from jsonb_array_elements_text(case when jsonb_typeof(d.metadata -> 'tags') = 'array'
                                                    then d.metadata -> 'tags' else '[]' end) t
            where t ilike %s)
 or exists (select 1 from jsonb_array_elements_text(
                coalesce(d.metadata -> 'openmetadata' -> 'tags', '[]') ||
                coalesce(d.metadata -> 'openmetadata' -> 'glossary_terms', '[]')) t
            where t ilike %s))"""


async def search_datasets(
    conn: AsyncConnection,
    *,
    project: str | None = None,
    text: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page:
    """One page of the catalog (datasets by name) whose name, columns, description, tags or owner hold
    ``text`` (case-insensitive); rows visible to the connection's user only."""
    query = ListQuery()
    if project:
        query.equal("d.project_id", await resolve_project(conn, project))
    if text:
        pattern = f"%{escape_like(text.strip())}%"
        query.add(SEARCH, *([pattern] * 7))
    if cursor:
        query.after(lineage.BY_NAME, *decode_key_cursor(cursor))
    return await query.page(
        conn,
        columns=CATALOG_COLUMNS,
        source="ops.datasets d",
        keyset=lineage.BY_NAME,
        limit=limit,
        cursor_of=name_cursor_after,
    )


DATASET_PAGE = """
select d.id, d.project_id, d.namespace, d.name, d.kind, d.columns, d.owner, d.description, d.metadata,
       d.first_run_id, d.last_run_id, d.last_task_id, d.created_at, d.updated_at,
       t.key as last_task_key, r.status as last_run_status, coalesce(r.finished_at, r.created_at) as last_run_at
from ops.datasets d
left join ops.tasks t on t.id = d.last_task_id
left join ops.runs r on r.id = d.last_run_id
where d.id = %s
"""
NEIGHBOURS = """
select e.job_name, o.id, o.namespace, o.name, o.kind
from ops.lineage_edges e join ops.datasets o on o.id = e.{other}
where e.{this} = %s order by o.name, o.id limit %s
"""
COUNT_NEIGHBOURS = "select count(*) from ops.lineage_edges e where e.{this} = %s"
# The latest result of each of the dataset's dbt tests in the run that last reported it.
QUALITY = """
select distinct on (e.data ->> 'unique_id') e.data ->> 'unique_id' as unique_id, e.data ->> 'name' as name,
       e.data ->> 'status' as status, (e.data ->> 'failures')::integer as failures, e.ts, e.run_id
from ops.events e
where e.run_id = %s and e.type = 'dbt.node_finished' and e.data ->> 'unique_id' = any(%s)
order by e.data ->> 'unique_id', e.id desc
"""
# Runs whose OpenLineage events read or wrote the dataset (engines' and ingested), newest first.
RUNS_OF = """
select o.run_id, o.job_namespace, o.job_name, o.openlineage_run_id, o.event_type, o.event_time,
       case when o.event -> 'outputs' @> %(ref)s then 'wrote' else 'read' end as access,
       (select (x -> 'outputFacets' -> 'outputStatistics' ->> 'rowCount')::bigint
        from jsonb_array_elements(o.event -> 'outputs') x
        where x ->> 'namespace' = %(namespace)s and x ->> 'name' = %(name)s limit 1) as row_count,
       (select (x -> 'outputFacets' -> 'outputStatistics' ->> 'size')::bigint
        from jsonb_array_elements(o.event -> 'outputs') x
        where x ->> 'namespace' = %(namespace)s and x ->> 'name' = %(name)s limit 1) as size_bytes
from ops.openlineage_events o
where o.project_id = %(project_id)s and o.event_type in ('COMPLETE', 'FAIL', 'ABORT')
  and (o.event -> 'outputs' @> %(ref)s or o.event -> 'inputs' @> %(ref)s)
order by o.event_time desc, o.id desc
limit %(limit)s
"""
SCHEMA_CHANGES = """
select c.id, c.run_id, c.changes, c.detected_at from ops.dataset_schema_changes c
where c.dataset_id = %s order by c.id desc limit %s
"""


async def dataset_page(conn: AsyncConnection, dataset_id: uuid.UUID, *, limit: int = 20) -> dict[str, Any]:
    """Everything the dataset page shows: the dataset with its schema, freshness (last write and by which
    run and task), row count and size when a run said, quality (its dbt tests' latest results),
    upstream and downstream summaries, the runs that read or wrote it and its schema change history."""
    found = await dict_rows(conn, DATASET_PAGE, (dataset_id,))
    if not found:
        raise NotFound(f"dataset {dataset_id} does not exist or is not visible to you", field="dataset_id")
    dataset = found[0]
    for side, this, other in (
        ("upstream", "downstream_id", "upstream_id"),
        ("downstream", "upstream_id", "downstream_id"),
    ):
        dataset[side] = await dict_rows(conn, NEIGHBOURS.format(this=this, other=other), (dataset_id, limit))
        dataset[f"{side}_count"] = int(await scalar(conn, COUNT_NEIGHBOURS.format(this=this), (dataset_id,)))
    tests = dataset["metadata"].get("tests") if isinstance(dataset["metadata"], dict) else None
    dataset["quality"] = (
        await dict_rows(conn, QUALITY, (dataset["last_run_id"], [str(t) for t in tests]))
        if tests and dataset["last_run_id"]
        else []
    )
    ref = json.dumps([{"namespace": dataset["namespace"], "name": dataset["name"]}])
    dataset["runs"] = await dict_rows(
        conn,
        RUNS_OF,
        {"ref": ref, "namespace": dataset["namespace"], "name": dataset["name"],
         "project_id": dataset["project_id"], "limit": limit},
    )  # fmt: skip
    written = [r for r in dataset["runs"] if r["access"] == "wrote" and r["event_type"] == "COMPLETE"]
    dataset["last_write"] = written[0] if written else None
    dataset["row_count"] = next((r["row_count"] for r in written if r["row_count"] is not None), None)
    dataset["size_bytes"] = next((r["size_bytes"] for r in written if r["size_bytes"] is not None), None)
    dataset["schema_changes"] = await dict_rows(conn, SCHEMA_CHANGES, (dataset_id, limit))
    return dataset
