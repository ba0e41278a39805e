"""Lineage operations: engines report datasets, edges and OpenLineage RunEvents; clients read the graph."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Query, Request, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from control_room.api.deps import Executor, Pool, User, UserConnection
from control_room.api.executors import leased_task_route
from control_room.api.models import IsoDatetime, Strict
from control_room.db.connection import get_pool
from control_room.services import catalog, lineage, runs
from control_room.services.pagination import page_reply

router = APIRouter()

DatasetKind = Literal["source", "seed", "model", "snapshot", "exposure", "table"]
RunEventType = Literal["START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"]
Namespace = Annotated[str, Field(min_length=1, max_length=1000, description="e.g. postgres://db.example:5432")]
DatasetName = Annotated[str, Field(min_length=1, max_length=1000, description="e.g. analytics.public.orders")]


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("must carry a time zone offset, e.g. 2026-11-26T08:00:00Z")
    return value


# The report (executors) ---------------------------------------------------------------------------


class DatasetColumn(Strict):
    name: str = Field(min_length=1, max_length=1000)
    type: str | None = Field(default=None, max_length=1000, description="The warehouse's type name.")
    description: str | None = Field(default=None, max_length=65536)


class DatasetReport(Strict):
    """A dataset the task read or wrote; identified by (namespace, name) within the project."""

    namespace: Namespace
    name: DatasetName
    kind: DatasetKind = Field(description="dbt resource type, or `table` for a table written by another engine.")
    columns: list[DatasetColumn] | None = Field(
        default=None, max_length=5000, description="Omitted or empty: keep the columns known from earlier reports."
    )
    owner: str | None = Field(default=None, max_length=1000)
    description: str | None = Field(default=None, max_length=65536)
    metadata: dict[str, Any] | None = Field(
        default=None, description="Small engine-specific facts (dbt unique_id, materialization, tags); merged."
    )
    read_only: bool = Field(
        default=False,
        description="The task only read it: a dataset known already keeps its last write, run and facts (columns "
        "are filled in only where none were known); an unknown one is registered.",
    )


class DatasetRef(Strict):
    namespace: Namespace
    name: DatasetName


class ColumnEdge(Strict):
    upstream_column: str = Field(min_length=1, max_length=1000)
    downstream_column: str = Field(min_length=1, max_length=1000)


class EdgeReport(Strict):
    """Data flows from ``upstream`` into ``downstream``; both must be in ``datasets`` or known already."""

    upstream: DatasetRef
    downstream: DatasetRef
    job_name: str | None = Field(
        default=None, max_length=1000, description="The transformation along the edge, e.g. a dbt node id."
    )
    column_lineage: list[ColumnEdge] | None = Field(default=None, max_length=10000)


class OpenLineageRun(BaseModel):
    model_config = ConfigDict(extra="allow")

    runId: uuid.UUID  # noqa: N815 (OpenLineage's field name)


class OpenLineageJob(BaseModel):
    model_config = ConfigDict(extra="allow")

    namespace: str = Field(min_length=1, max_length=1000)
    name: str = Field(min_length=1, max_length=1000)


class OpenLineageRunEvent(BaseModel):
    """An OpenLineage RunEvent (spec 2-0-2); facets and datasets pass through as sent. ``eventType`` is
    required here (the spec leaves it optional) because runs are tracked by their state transitions."""

    model_config = ConfigDict(extra="allow")

    eventType: RunEventType  # noqa: N815
    eventTime: Annotated[IsoDatetime, AfterValidator(_aware)]  # noqa: N815
    producer: str = Field(min_length=1, max_length=2000)
    schemaURL: str = Field(min_length=1, max_length=2000)  # noqa: N815
    run: OpenLineageRun
    job: OpenLineageJob
    inputs: list[dict[str, Any]] = Field(default_factory=list)
    outputs: list[dict[str, Any]] = Field(default_factory=list)


class LineageReport(Strict):
    lease_token: uuid.UUID
    datasets: list[DatasetReport] = Field(default_factory=list, max_length=20000)
    edges: list[EdgeReport] = Field(default_factory=list, max_length=100000)
    openlineage_events: list[OpenLineageRunEvent] = Field(default_factory=list, max_length=10000)


class LineageReportReply(BaseModel):
    datasets: int = Field(description="Datasets recorded (inserted or updated).")
    edges: int = Field(description="Edges recorded (inserted or seen again).")
    openlineage_events_accepted: int
    openlineage_events_duplicates: int = Field(description="RunEvents already stored (a re-sent report).")


@leased_task_route(router, "/tasks/{task_id}/lineage", operation_id="reportLineage", response_model=LineageReportReply)
async def report_lineage(task_id: uuid.UUID, body: LineageReport, executor: Executor, db: Pool) -> dict[str, int]:
    """Record the datasets the task read and wrote, the edges between them and its OpenLineage RunEvents.
    Idempotent: a re-sent report updates nothing twice and stores no RunEvent twice."""
    async with db.connection() as conn:
        return await lineage.report_lineage(
            conn,
            task_id=task_id,
            lease_token=body.lease_token,
            datasets=[d.model_dump(mode="json", exclude_none=True) for d in body.datasets],
            edges=[e.model_dump(mode="json", exclude_none=True) for e in body.edges],
            openlineage_events=[e.model_dump(mode="json") for e in body.openlineage_events],
        )


# Reads (clients) ----------------------------------------------------------------------------------


class DatasetColumnPublic(BaseModel):
    name: str
    type: str | None = None
    description: str | None = None


class DatasetSummary(BaseModel):
    id: uuid.UUID
    namespace: str
    name: str
    kind: DatasetKind


class DatasetPublic(DatasetSummary):
    project_id: uuid.UUID
    columns: list[DatasetColumnPublic]
    owner: str | None
    description: str
    metadata: dict[str, Any]
    first_run_id: uuid.UUID | None = Field(description="Null for a dataset known only from OpenLineage ingest.")
    last_run_id: uuid.UUID | None = Field(
        description="The latest run that reported this dataset (null: known only from OpenLineage ingest)."
    )
    last_task_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


class ColumnEdgePublic(BaseModel):
    upstream_column: str
    downstream_column: str


class LineageEdgePublic(BaseModel):
    id: uuid.UUID
    dataset: DatasetSummary = Field(description="The dataset at the other end of the edge.")
    job_name: str
    column_lineage: list[ColumnEdgePublic]
    first_run_id: uuid.UUID | None = Field(description="Null for an edge known only from OpenLineage ingest.")
    last_run_id: uuid.UUID | None
    last_task_id: uuid.UUID | None
    updated_at: datetime


class DatasetDetail(DatasetPublic):
    upstream: list[LineageEdgePublic] = Field(description="Edges into this dataset.")
    downstream: list[LineageEdgePublic] = Field(description="Edges out of this dataset.")


class DatasetPage(BaseModel):
    items: list[DatasetPublic]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at the end.")


class OpenLineageEventPublic(BaseModel):
    id: int
    run_id: uuid.UUID
    task_id: uuid.UUID
    task_key: str
    attempt: int
    event_type: RunEventType
    event_time: datetime
    job_namespace: str
    job_name: str
    openlineage_run_id: uuid.UUID
    event: dict[str, Any]


class OpenLineageEventPage(BaseModel):
    items: list[OpenLineageEventPublic]
    next_after_id: int | None = Field(description="Highest id returned: pass as after_id to continue.")


@router.get("/datasets", operation_id="listDatasets", tags=["lineage"], response_model=DatasetPage)
async def list_datasets(
    conn: UserConnection,
    project: Annotated[str | None, Query(max_length=100, description="Project id or slug.")] = None,
    kind: Annotated[list[DatasetKind] | None, Query(description="One or more kinds.")] = None,
    namespace: Annotated[str | None, Query(max_length=1000)] = None,
    q: Annotated[str | None, Query(max_length=200, description="Text in the dataset name.")] = None,
    last_run_id: Annotated[uuid.UUID | None, Query(description="Only datasets this run reported last.")] = None,
    cursor: Annotated[str | None, Query(max_length=3000)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    """Datasets of the projects you can see, by name; keyset pagination through `cursor`."""
    filters = lineage.DatasetFilters(
        project=project, kinds=list(kind or []), namespace=namespace, text=q, last_run_id=last_run_id
    )
    return page_reply(await lineage.list_datasets(conn, filters=filters, cursor=cursor, limit=limit))


@router.get("/datasets/{dataset_id}", operation_id="getDataset", tags=["lineage"], response_model=DatasetDetail)
async def get_dataset(dataset_id: uuid.UUID, conn: UserConnection) -> dict[str, Any]:
    """A dataset with its columns and its direct upstream and downstream edges."""
    return await lineage.get_dataset(conn, dataset_id=dataset_id)


@router.get(
    "/runs/{run_id}/openlineage",
    operation_id="listRunOpenLineageEvents",
    tags=["lineage"],
    response_model=OpenLineageEventPage,
)
async def list_run_openlineage_events(
    run_id: uuid.UUID,
    conn: UserConnection,
    task_id: uuid.UUID | None = None,
    after_id: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> dict[str, Any]:
    """The OpenLineage RunEvents the run's tasks emitted, oldest first."""
    await runs.get_run(conn, run_id=run_id, with_tasks=False)
    items = await lineage.list_openlineage_events(conn, run_id=run_id, task_id=task_id, after_id=after_id, limit=limit)
    return {"items": items, "next_after_id": items[-1]["id"] if items else after_id}


# OpenLineage ingest (outside producers) -----------------------------------------------------------

OPENLINEAGE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "One OpenLineage event (spec 2-0-2): a RunEvent, DatasetEvent or JobEvent, as Marquez takes it.",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "externalDocs": {"url": "https://openlineage.io/spec/2-0-2/OpenLineage.json"},
                    "additionalProperties": True,
                }
            }
        },
    }
}


# A router of its own so that the app tries it right after the serving proxy (control_room.api): the
# route every OpenLineage producer posts to, at hundreds of requests a second.
ingest_router = APIRouter()


class OpenLineageIngestReply(BaseModel):
    project_id: uuid.UUID
    kind: Literal["RunEvent", "DatasetEvent", "JobEvent"]
    stored: bool = Field(description="False when this RunEvent (runId, eventType, eventTime) was stored before.")


@ingest_router.post(
    "/lineage",
    operation_id="ingestOpenLineage",
    tags=["lineage"],
    status_code=201,
    response_model=OpenLineageIngestReply,
    openapi_extra=OPENLINEAGE_BODY,
)
async def ingest_openlineage(
    request: Request, user: User, project: Annotated[str | None, Query(max_length=200)] = None
) -> Response:
    """Store an OpenLineage event from an outside producer (point ``OPENLINEAGE_URL`` at the control room
    and ``OPENLINEAGE_API_KEY`` at a user API token with the operator role). The event is validated against
    the OpenLineage JSON Schema (400 naming the failing JSON path); a RunEvent is stored once by runId,
    eventType and eventTime. Its job, datasets and input -> output edges join the project's lineage.
    ``project`` (slug or id) is needed only when the token's user is operator on several projects."""
    # The hot path of issue 21 (>= 500 events/s): the body is parsed once by orjson and stored as sent,
    # the token's user is remembered between requests (control_room/api/principals.py), and the reply is encoded
    # here rather than validated against its model; the schema check of the event is the validation.
    body = await request.body()
    sent: str | None = None
    try:
        event = orjson.loads(body)
        sent = body.decode()  # orjson took it: valid UTF-8, stored as sent
    except orjson.JSONDecodeError:
        try:  # what orjson refuses and Python's json takes (integers beyond 64 bits, UTF-16) is parsed as before
            event = json.loads(body)
        except ValueError as exc:
            raise catalog.InvalidEvent(f"$: the body is not JSON ({exc})", field="$") from None
    async with (await get_pool()).connection() as conn:
        stored = await catalog.ingest_openlineage(conn, user, event, project=project, sent=sent)
    return Response(orjson.dumps(stored), status_code=201, media_type="application/json")
