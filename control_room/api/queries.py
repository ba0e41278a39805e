"""Query history (agents report it, users list it) and result pages read from a query's Parquet artifact."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from anyio import to_thread
from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from control_room.api.deps import Executor, Pool, User, UserConnection
from control_room.api.models import Int, IsoDatetime, Strict
from control_room.services import artifacts, queries, result_policies
from control_room.services.auth import scoped
from control_room.services.pagination import page_reply
from control_room.storage import get_store

router = APIRouter(tags=["queries"])
QueryState = Literal["running", "finished", "failed", "cancelled", "timed_out", "refused"]
Count = Annotated[Int, Field(ge=0, le=2**62)]


class QueryHistoryCreate(Strict):
    """One statement of a SQL task attempt as the agent saw it (sent while it runs and when it ends)."""

    statement_index: Int = Field(ge=1, le=100_000, description="1-based position of the statement in the script.")
    engine: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,40}$")
    sql_text: str = Field(max_length=100_000)
    state: QueryState
    query_id: str | None = Field(default=None, min_length=1, max_length=200, description="The engine's query id.")
    query_user: str | None = Field(default=None, max_length=200)
    catalog: str | None = Field(default=None, max_length=200)
    schema_name: str | None = Field(default=None, max_length=200)
    rows: Count | None = None
    bytes_read: Count | None = None
    cpu_time_ms: Count | None = None
    elapsed_ms: Count | None = None
    queued_ms: Count | None = None
    peak_memory_bytes: Count | None = None
    estimated_scan_bytes: Count | None = Field(default=None, description="EXPLAIN's estimate of the bytes scanned.")
    estimated_rows: Count | None = None
    scan_cap_bytes: Count | None = Field(default=None, description="The scanned-bytes cap that applied.")
    error: str | None = Field(default=None, max_length=65536)
    result_artifact: str | None = Field(default=None, max_length=512, description="Name of the Parquet result.")
    details: dict[str, Any] = Field(default_factory=dict)
    started_at: IsoDatetime
    finished_at: IsoDatetime | None = None


class QueryReport(Strict):
    lease_token: uuid.UUID
    queries: list[QueryHistoryCreate] = Field(min_length=1, max_length=100)


class QueryReportReply(BaseModel):
    accepted: int = Field(description="Rows written (new, or a running statement updated).")
    unchanged: int = Field(description="Reports of statements already finished: kept as they were.")


class QueryPublic(BaseModel):
    id: uuid.UUID
    run_id: uuid.UUID
    task_id: uuid.UUID
    task_key: str
    attempt: int
    project_id: uuid.UUID
    project: str
    statement_index: int
    engine: str
    query_id: str | None
    sql_text: str
    query_user: str | None
    catalog: str | None
    schema_name: str | None
    state: QueryState
    rows: int | None
    bytes_read: int | None
    cpu_time_ms: int | None
    elapsed_ms: int | None
    queued_ms: int | None
    peak_memory_bytes: int | None
    estimated_scan_bytes: int | None
    estimated_rows: int | None
    scan_cap_bytes: int | None
    error: str | None
    result_artifact: str | None
    details: dict[str, Any]
    started_at: datetime
    finished_at: datetime | None
    created_at: datetime
    updated_at: datetime


class QueryPage(BaseModel):
    items: list[QueryPublic]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page; null at the end.")


class ResultColumn(BaseModel):
    name: str
    type: str = Field(description="Arrow type of the column, e.g. int64, string, decimal128(10, 2).")


class ResultRows(BaseModel):
    artifact_id: uuid.UUID
    columns: list[ResultColumn]
    rows: list[list[Any]] = Field(
        description="Rows in column order; decimals, dates and timestamps as strings, bytes as base64."
    )
    offset: int
    limit: int
    total_rows: int
    next_offset: int | None = Field(description="Pass as `offset` for the next page; null after the last row.")


@router.post(
    "/tasks/{task_id}/queries",
    operation_id="reportQueries",
    response_model=QueryReportReply,
    responses={"409": {"description": "Lease lost: stop working on the task."}},
)
async def report_queries(task_id: uuid.UUID, body: QueryReport, executor: Executor, db: Pool) -> dict[str, int]:
    """Record query history of the attempt holding the lease (Trino and DuckDB statements); idempotent."""
    async with db.connection() as conn:
        return await queries.record_queries(
            conn,
            task_id=task_id,
            lease_token=body.lease_token,
            queries=[q.model_dump(mode="json") for q in body.queries],
        )


@router.get("/queries", operation_id="listQueries", response_model=QueryPage)
async def list_queries(
    conn: UserConnection,
    engine: Annotated[str | None, Query(max_length=40)] = None,
    state: Annotated[list[QueryState] | None, Query(description="One or more states.")] = None,
    project: Annotated[str | None, Query(max_length=100)] = None,
    run_id: uuid.UUID | None = None,
    task_id: uuid.UUID | None = None,
    query_user: Annotated[str | None, Query(max_length=200, description="The engine user.")] = None,
    q: Annotated[str | None, Query(max_length=200, description="Text in the SQL, or a query id prefix.")] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """Query history newest first, filtered; keyset pagination through `cursor`."""
    states = [str(s) for s in state or []]
    filters = queries.QueryFilters(
        engine=engine, states=states, project=project, run_id=run_id, task_id=task_id, user=query_user, text=q
    )
    return page_reply(await queries.list_queries(conn, filters=filters, cursor=cursor, limit=limit))


@router.get("/queries/{query_history_id}", operation_id="getQuery", response_model=QueryPublic)
async def get_query(query_history_id: uuid.UUID, conn: UserConnection) -> dict[str, Any]:
    """One statement's history: SQL, state, estimate and figures."""
    return await queries.get_query(conn, query_history_id=query_history_id)


@router.get("/artifacts/{artifact_id}/rows", operation_id="readArtifactRows", response_model=ResultRows)
async def read_artifact_rows(
    artifact_id: uuid.UUID,
    user: User,
    db: Pool,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 100,
) -> dict[str, Any]:
    """A page of a Parquet query result: only the row groups holding the rows are read. A viewer who may not
    read a source dataset of the result (or whose policies filter or mask one, for a result computed as
    someone else) gets 403 naming the dataset; masks of a dbt or Spark task's inputs apply to the columns
    they map to."""
    async with db.connection() as conn, scoped(conn, user):
        artifact = await artifacts.get_artifact(conn, artifact_id=artifact_id)
        policy = await result_policies.require_rows_policy(conn, artifact=artifact)
    store = get_store()
    return await to_thread.run_sync(
        lambda: queries.read_result_rows(store, artifact, offset=offset, limit=limit, masks=policy.masks)
    )
