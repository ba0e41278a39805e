"""Query history (recorded by agents, listed by users) and paging through a query's Parquet result artifact."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from psycopg import AsyncConnection, sql

from control_room.services import pagination
from control_room.services.artifacts import _attempt_of_lease, storage_key_of
from control_room.services.errors import Invalid, NotFound
from control_room.services.pagination import ListQuery, Page, cursor_after, decode_cursor, fetch_rows
from control_room.services.result_policies import mask_value
from control_room.services.runs import resolve_project
from control_room.storage import ArtifactMissing, ArtifactStore, LocalArtifactStore

QUERY_STATES = ("running", "finished", "failed", "cancelled", "timed_out", "refused")
PARQUET_CONTENT_TYPE = "application/vnd.apache.parquet"
_REPORTED = (
    "engine", "query_id", "sql_text", "query_user", "catalog", "schema_name", "state", "rows", "bytes_read",
    "cpu_time_ms", "elapsed_ms", "queued_ms", "peak_memory_bytes", "estimated_scan_bytes", "estimated_rows",
    "scan_cap_bytes", "error", "result_artifact", "started_at", "finished_at",
)  # fmt: skip
QUERY_COLUMNS = (
    "q.id, q.run_id, q.task_id, t.key as task_key, q.attempt, q.project_id, p.slug as project, q.statement_index, "
    + ", ".join(f"q.{name}" for name in _REPORTED)
    + ", q.details, q.created_at, q.updated_at"
)
QUERY_FROM = "ops.query_history q join ops.tasks t on t.id = q.task_id join ops.projects p on p.id = q.project_id"
NEWEST_FIRST = pagination.newest_first("q")


# Recording (executors) ---------------------------------------------------------------------------------


async def record_queries(
    conn: AsyncConnection, *, task_id: uuid.UUID, lease_token: uuid.UUID, queries: list[dict[str, Any]]
) -> dict[str, int]:
    """Insert or complete the reported statements of the lease's attempt; finished rows are left as they are.

    Re-sending a report (an agent retrying after a timeout) is harmless: a running row takes the
    newer figures, a finished row keeps the ones it was completed with.
    """
    attempt = await _attempt_of_lease(conn, task_id, lease_token)
    written = 0
    async with conn.transaction():
        for item in queries:
            values = [item.get(name) for name in _REPORTED]
            cursor = await conn.execute(
                sql.SQL(
                    "insert into ops.query_history as q (run_id, task_id, attempt, project_id, statement_index, "
                    "details, {columns}) values (%s, %s, %s, %s, %s, %s::jsonb, {placeholders}) "
                    "on conflict (task_id, attempt, statement_index) do update set details = excluded.details, {sets} "
                    "where q.state = 'running' returning q.id"
                ).format(
                    columns=sql.SQL(", ").join(map(sql.Identifier, _REPORTED)),
                    placeholders=sql.SQL(", ").join(sql.Placeholder() * len(_REPORTED)),
                    sets=sql.SQL(", ").join(
                        sql.SQL("{0} = excluded.{0}").format(sql.Identifier(name)) for name in _REPORTED
                    ),
                ),
                [
                    attempt["run_id"],
                    task_id,
                    attempt["attempt"],
                    attempt["project_id"],
                    item["statement_index"],
                    json.dumps(item.get("details") or {}),
                    *values,
                ],
            )
            written += 1 if await cursor.fetchone() is not None else 0
    return {"accepted": written, "unchanged": len(queries) - written}


# Listing (users, through RLS) ------------------------------------------------------------------------


@dataclass(frozen=True)
class QueryFilters:
    """What the history list can be narrowed by."""

    engine: str | None = None
    states: list[str] = field(default_factory=list)
    project: str | None = None
    run_id: uuid.UUID | None = None
    task_id: uuid.UUID | None = None
    user: str | None = None
    text: str | None = None


async def list_queries(conn: AsyncConnection, *, filters: QueryFilters, cursor: str | None, limit: int) -> Page:
    """One page of history, newest first, and the cursor of the next (older) page."""
    query = ListQuery()
    if filters.text:
        escaped = pagination.escape_like(filters.text)
        query.add("(q.sql_text ilike %s or q.query_id like %s)", f"%{escaped}%", f"{escaped}%")
    query.one_of("q.state", filters.states, allowed=QUERY_STATES, field="state")
    query.equal("q.engine", filters.engine)
    query.equal("q.run_id", filters.run_id)
    query.equal("q.task_id", filters.task_id)
    query.equal("q.query_user", filters.user)
    if filters.project:
        query.equal("q.project_id", await resolve_project(conn, filters.project))
    if cursor:
        query.after(NEWEST_FIRST, *decode_cursor(cursor))
    return await query.page(
        conn, columns=QUERY_COLUMNS, source=QUERY_FROM, keyset=NEWEST_FIRST, limit=limit, cursor_of=cursor_after
    )


async def get_query(conn: AsyncConnection, *, query_history_id: uuid.UUID) -> dict[str, Any]:
    """One statement of the history, with its task key and project slug."""
    statement = sql.SQL("select {cols} from {src} where q.id = %s").format(
        cols=sql.SQL(QUERY_COLUMNS), src=sql.SQL(QUERY_FROM)
    )
    found = await fetch_rows(conn, statement, (query_history_id,))
    if not found:
        raise NotFound(f"query {query_history_id} does not exist or is not visible to you", field="query_history_id")
    return found[0]


# Result pages ------------------------------------------------------------------------------------------


class StoredArtifactFile(io.RawIOBase):
    """A seekable, read-only file over an artifact in any store, read by byte ranges.

    Parquet readers seek to the footer and then to the row groups they need, so a page of a large
    result costs a few range reads, never the whole object.
    """

    def __init__(self, store: ArtifactStore, key: str) -> None:
        self._store = store
        self._key = key
        self._size = store.size(key)
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(base + offset, 0)
        return self._position

    def readinto(self, buffer: Any) -> int:
        wanted = min(len(buffer), self._size - self._position)
        if wanted <= 0:
            return 0
        data = b"".join(
            self._store.iter_bytes(self._key, start=self._position, end=self._position + wanted, chunk_size=wanted)
        )
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)


def open_artifact(store: ArtifactStore, artifact: dict[str, Any]) -> BinaryIO:
    """A binary, seekable reader of the artifact's bytes (the file itself for the local store)."""
    key = storage_key_of(artifact)
    if isinstance(store, LocalArtifactStore):
        path = store.path(key)
        try:
            return path.open("rb")
        except FileNotFoundError:
            raise ArtifactMissing(key, str(path)) from None
    return io.BufferedReader(StoredArtifactFile(store, key), buffer_size=1 << 20)


def is_parquet_result(artifact: dict[str, Any]) -> bool:
    return str(artifact["content_type"]) == PARQUET_CONTENT_TYPE or str(artifact["name"]).endswith(".parquet")


def read_result_rows(
    store: ArtifactStore,
    artifact: dict[str, Any],
    *,
    offset: int,
    limit: int,
    masks: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Rows ``[offset, offset + limit)`` of a Parquet result, reading only the row groups that hold them; the
    columns named in ``masks`` (lower-case name -> mask kind, from the sources' policies) masked."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from control_room.services.result_rows import describe_columns, json_rows

    if not is_parquet_result(artifact):
        raise Invalid(
            f'artifact "{artifact["name"]}" is {artifact["content_type"]}, not a Parquet query result; '
            "page through the .parquet artifact of the same statement",
            field="artifact_id",
        )
    with open_artifact(store, artifact) as source:
        try:
            parquet = pq.ParquetFile(source)
        except (pa.ArrowException, OSError) as exc:
            raise Invalid(f'artifact "{artifact["name"]}" is not a readable Parquet file: {exc}',
                          field="artifact_id") from exc  # fmt: skip
        total = parquet.metadata.num_rows
        pieces: list[pa.Table] = []
        wanted = limit
        first_row = 0
        for group in range(parquet.metadata.num_row_groups):
            group_rows = parquet.metadata.row_group(group).num_rows
            if first_row + group_rows <= offset:
                first_row += group_rows
                continue
            if wanted <= 0:
                break
            table = parquet.read_row_group(group)
            start = max(offset - first_row, 0)
            piece = table.slice(start, wanted)
            pieces.append(piece)
            wanted -= piece.num_rows
            first_row += group_rows
        schema = parquet.schema_arrow
    page = pa.concat_tables(pieces) if pieces else schema.empty_table()
    end = offset + page.num_rows
    columns, rows = describe_columns(schema), json_rows(page)
    if masks:
        for index, column in enumerate(columns):
            kind = masks.get(column["name"].lower())
            if kind is not None:
                column["type"] = "null" if kind in ("null", "expression") else "string"
                for row in rows:
                    row[index] = mask_value(kind, row[index])
    return {
        "artifact_id": artifact["id"],
        "columns": columns,
        "rows": rows,
        "offset": offset,
        "limit": limit,
        "total_rows": total,
        "next_offset": end if end < total else None,
    }
