"""Event retention: finished runs' events and attempts to verified Parquet in the artifact store, then out of Postgres.

One pass (``archive_due``) claims runs past their project's retention (ops.claim_event_archives: one archive
row per run, so replicas never archive a run twice), writes each run's events and attempts as two Parquet
files, stores them write-once with their SHA-256 (the artifact store's checks), records them, and deletes the
rows in small batches, each one short transaction. A crash anywhere leaves the run resumable: before the
record nothing is deleted; after it the Parquet holds every row still to delete. The run page reads the
archive back with ``archived_events``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from anyio import to_thread
from psycopg import AsyncConnection

from control_room.db.rows import first_model, model_list, scalar
from control_room.db.tables import EventArchive
from control_room.services.errors import Invalid, NotFound
from control_room.storage import ArtifactExists, ArtifactStore, StorageError, get_store

if TYPE_CHECKING:  # Arrow is imported by the pass and the reader that need it, not by a replica's start
    import pyarrow as pa

PARQUET_CONTENT_TYPE = "application/vnd.apache.parquet"
LEASE_SECONDS = 300  # a replica that holds a run this long without progress is presumed dead
READ_PAGE = 20_000  # events read (and written as one row group) at a time


@cache
def event_schema() -> pa.Schema:
    """The events file's columns."""
    import pyarrow as pa

    return pa.schema(
        [
            ("id", pa.int64()),
            ("run_id", pa.string()),
            ("task_id", pa.string()),
            ("task_key", pa.string()),
            ("attempt", pa.int32()),
            ("seq", pa.int32()),
            ("ts", pa.timestamp("us", tz="UTC")),
            ("type", pa.string()),
            ("level", pa.string()),
            ("message", pa.string()),
            ("data", pa.string()),  # the event's JSON object, as text
        ]
    )


@cache
def attempt_schema() -> pa.Schema:
    """The attempts file's columns."""
    import pyarrow as pa

    return pa.schema(
        [
            ("task_id", pa.string()),
            ("task_key", pa.string()),
            ("attempt", pa.int32()),
            ("run_id", pa.string()),
            ("executor_id", pa.string()),
            ("executor_name", pa.string()),
            ("claimed_at", pa.timestamp("us", tz="UTC")),
            ("started_at", pa.timestamp("us", tz="UTC")),
            ("finished_at", pa.timestamp("us", tz="UTC")),
            ("outcome", pa.string()),
            ("result", pa.string()),  # JSON text
            ("error", pa.string()),
        ]
    )


# The attempt fields runs.get_run gives each task (executor_id apart, stored as text).
ATTEMPT_FIELDS = ("attempt", "executor_name", "claimed_at", "started_at", "finished_at", "outcome", "error")


@dataclass
class PassResult:
    """What one pass did: runs archived and rows removed, and how long each delete batch took."""

    runs_claimed: int = 0
    runs_done: int = 0
    events_archived: int = 0
    attempts_archived: int = 0
    rows_deleted: int = 0
    claims_lost: int = 0
    batch_seconds: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class StoredFile:
    """One Parquet file in the store."""

    key: str
    size: int
    sha256: str


def archive_key(project_id: uuid.UUID, run_id: uuid.UUID, name: str) -> str:
    """Where a run's archive file lives; beside, never inside, the run's artifacts (which start with the project)."""
    return f"retention/{project_id}/{run_id}/{name}"


async def archive_due(
    conn: AsyncConnection,
    *,
    now: Callable[[], datetime],
    worker: str,
    max_runs: int = 20,
    delete_batch: int = 5000,
    store: ArtifactStore | None = None,
) -> PassResult:
    """Claim up to ``max_runs`` runs past retention (or left unfinished by a dead replica) and archive each.

    ``conn`` is an autocommit connection of a trusted caller (the loop's); ``now`` the clock.
    """
    store = store or get_store()
    result = PassResult()
    claims = await model_list(
        conn,
        EventArchive,
        "select * from ops.claim_event_archives(%s, %s, %s, %s)",
        (now(), worker, max_runs, LEASE_SECONDS),
    )
    result.runs_claimed = len(claims)
    for claim in claims:
        if claim.status == "writing":
            written = await write_archive(conn, claim=claim, store=store, now=now)
            if written is None:
                result.claims_lost += 1
                continue
            result.events_archived += written[0]
            result.attempts_archived += written[1]
        if await delete_archived(conn, claim=claim, batch=delete_batch, now=now, result=result):
            result.runs_done += 1
        else:
            result.claims_lost += 1
    return result


async def write_archive(
    conn: AsyncConnection, *, claim: EventArchive, store: ArtifactStore, now: Callable[[], datetime]
) -> tuple[int, int] | None:
    """Write, store, verify and record a claimed run's Parquet files.

    Returns (events, attempts) archived, or None when the claim was lost to another replica."""
    run_id, project_id = claim.run_id, claim.project_id
    events_bytes, event_count, last_event_id = await _events_parquet(conn, run_id)
    attempts_bytes, attempt_count = await _attempts_parquet(conn, run_id)
    events_file = await to_thread.run_sync(
        lambda: _store(store, archive_key(project_id, run_id, f"events-upto-{last_event_id}.parquet"), events_bytes)
    )
    attempts_file = await to_thread.run_sync(
        lambda: _store(store, archive_key(project_id, run_id, f"attempts-{attempt_count}.parquet"), attempts_bytes)
    )
    recorded = await scalar(
        conn,
        "select ops.record_event_archive(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (run_id, claim.claim_token, last_event_id, event_count, attempt_count,
         events_file.key, events_file.size, events_file.sha256,
         attempts_file.key, attempts_file.size, attempts_file.sha256, now()),
    )  # fmt: skip
    if not recorded:
        return None
    return event_count, attempt_count


async def delete_archived(
    conn: AsyncConnection, *, claim: EventArchive, batch: int, now: Callable[[], datetime], result: PassResult
) -> bool:
    """Delete the run's archived rows batch by batch (one short transaction each); False if the claim was lost."""
    while True:
        started = time.perf_counter()
        cur = await conn.execute(
            "select deleted, finished, lost from ops.delete_archived_rows(%s, %s, %s, %s, %s)",
            (claim.run_id, claim.claim_token, batch, now(), LEASE_SECONDS),
        )
        row = await cur.fetchone()
        result.batch_seconds.append(time.perf_counter() - started)
        if row is None or row[2]:
            return False
        result.rows_deleted += int(row[0])
        if row[1]:
            return True


def _store(store: ArtifactStore, key: str, data: bytes) -> StoredFile:
    """Put the bytes write-once and re-read them against their SHA-256. A file left by an earlier try of the
    same run (a crash before the record) has the same key and, the rows being the same, the same bytes."""
    sha = hashlib.sha256(data).hexdigest()
    with contextlib.suppress(ArtifactExists):
        store.put_bytes(key, data, sha256=sha, content_type=PARQUET_CONTENT_TYPE)
    verified = store.verify(key, size=len(data), sha256=sha)
    if not verified.ok:
        raise StorageError(
            f"archive {key!r} does not hold the bytes just written ({verified.message}); "
            "remove it from the artifact store so the retention loop can write it again"
        )
    return StoredFile(key=key, size=len(data), sha256=sha)


def _micros(column: str) -> str:
    """A timestamptz as microseconds since the epoch: Arrow takes those as they are, where it converts each
    zone-aware datetime psycopg makes one by one (seconds per 10,000 rows)."""
    return f"(extract(epoch from {column}) * 1000000)::bigint"


def _table(rows: list[tuple[Any, ...]], schema: pa.Schema) -> pa.Table:
    """Rows as an Arrow table, column by column (from_pylist converts aware datetimes one by one: 80x slower)."""
    import pyarrow as pa

    columns = list(zip(*rows, strict=True)) if rows else [() for _ in schema.names]
    return pa.Table.from_arrays([pa.array(c, type=f.type) for c, f in zip(columns, schema, strict=True)], schema=schema)


EVENTS_PAGE_SQL = (
    f"select e.id, e.run_id::text, e.task_id::text, t.key, e.attempt, e.seq, {_micros('e.ts')}, e.type, e.level, "
    "e.message, e.data::text from ops.events e left join ops.tasks t on t.id = e.task_id "
    "where e.run_id = %s and e.id > %s order by e.id limit %s"
)


async def _events_parquet(conn: AsyncConnection, run_id: uuid.UUID) -> tuple[bytes, int, int]:
    """The run's events in id order as Parquet (zstd), their count and the last id (0 when none)."""
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    count, last = 0, 0
    with pq.ParquetWriter(sink, event_schema(), compression="zstd") as writer:
        while True:
            async with conn.cursor() as cur:
                await cur.execute(EVENTS_PAGE_SQL, (run_id, last, READ_PAGE))
                rows = await cur.fetchall()
            if not rows:
                break
            writer.write_table(_table(rows, event_schema()))
            count += len(rows)
            last = int(rows[-1][0])
            if len(rows) < READ_PAGE:
                break
    return sink.getvalue(), count, last


async def _attempts_parquet(conn: AsyncConnection, run_id: uuid.UUID) -> tuple[bytes, int]:
    """The run's attempts as Parquet, ordered by task and attempt, and their count."""
    async with conn.cursor() as cur:
        await cur.execute(
            f"select a.task_id::text, t.key, a.attempt, a.run_id::text, a.executor_id::text, x.name, "
            f"{_micros('a.claimed_at')}, {_micros('a.started_at')}, {_micros('a.finished_at')}, a.outcome, "
            "a.result::text, a.error from ops.task_attempts a "
            "join ops.tasks t on t.id = a.task_id left join ops.executors x on x.id = a.executor_id "
            "where a.run_id = %s order by t.key, a.attempt",
            (run_id,),
        )
        rows = await cur.fetchall()
    import pyarrow.parquet as pq

    table = _table(rows, attempt_schema())
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue(), len(rows)


# Reading back ----------------------------------------------------------------------------------------


async def archive_of(conn: AsyncConnection, *, run_id: uuid.UUID) -> EventArchive | None:
    """The run's recorded archive (RLS applies to the caller), or None when its events were never archived."""
    return await first_model(
        conn, EventArchive, "select * from ops.event_archives where run_id = %s and status <> 'writing'", (run_id,)
    )


def _read_verified(store: ArtifactStore, key: str | None, size: int | None, sha256: str | None) -> pa.Table:
    """The Parquet file's table, after checking its bytes against the recorded size and SHA-256."""
    if key is None or size is None or sha256 is None:  # recorded together before the status leaves 'writing'
        raise StorageError("the run's archive row records no Parquet file; see the retention loop's log for why")
    data = b"".join(store.iter_bytes(key, chunk_size=1 << 20))
    actual = hashlib.sha256(data).hexdigest()
    if len(data) != size or actual != sha256:
        raise StorageError(
            f"archive {key!r}: stored bytes ({len(data)} bytes, SHA-256 {actual}) differ from the recorded "
            f"{size} bytes, {sha256}; restore the file from a backup of the artifact store"
        )
    import pyarrow.parquet as pq

    return pq.read_table(io.BytesIO(data))


async def archived_events(
    conn: AsyncConnection,
    *,
    run_id: uuid.UUID,
    after_id: int = 0,
    limit: int = 1000,
    store: ArtifactStore | None = None,
) -> tuple[EventArchive, list[dict[str, Any]]]:
    """The run's archive and its archived events with id > ``after_id`` (at most ``limit``), in id order,
    shaped like ``events.list_events`` rows. NotFound when the run has no archive the caller may see."""
    if limit < 1:
        raise Invalid("must be at least 1", field="limit")
    archive = await archive_of(conn, run_id=run_id)
    if archive is None:
        raise NotFound(f"run {run_id} has no archived events (or is not visible to you)", field="run_id")
    store = store or get_store()
    table = await to_thread.run_sync(
        lambda: _read_verified(store, archive.events_key, archive.events_size_bytes, archive.events_sha256)
    )
    rows = [r for r in table.to_pylist() if r["id"] > after_id][:limit]
    for row in rows:
        row["run_id"] = uuid.UUID(row["run_id"])
        row["task_id"] = uuid.UUID(row["task_id"]) if row["task_id"] else None
        row["data"] = json.loads(row["data"]) if row["data"] else {}
    return archive, rows


async def archived_attempts(
    conn: AsyncConnection, *, run_id: uuid.UUID, store: ArtifactStore | None = None
) -> list[dict[str, Any]]:
    """The run's archived attempts (task key, attempt, executor, times, outcome, error), by task and attempt."""
    archive = await archive_of(conn, run_id=run_id)
    if archive is None:
        raise NotFound(f"run {run_id} has no archived attempts (or is not visible to you)", field="run_id")
    store = store or get_store()
    table = await to_thread.run_sync(
        lambda: _read_verified(store, archive.attempts_key, archive.attempts_size_bytes, archive.attempts_sha256)
    )
    rows: list[dict[str, Any]] = table.to_pylist()
    for row in rows:
        row["result"] = json.loads(row["result"]) if row["result"] else None
    return rows


# The per-project setting ---------------------------------------------------------------------------------


async def get_retention(conn: AsyncConnection, *, project_id: uuid.UUID) -> int:
    """The project's event retention in days (0: kept forever)."""
    days = await scalar(conn, "select event_retention_days from ops.projects where id = %s", (project_id,))
    if days is None:
        raise NotFound(f"project {project_id} does not exist or is not visible to you", field="project")
    return int(days)


async def set_retention(conn: AsyncConnection, *, project_id: uuid.UUID, days: int) -> int:
    """Set the project's event retention (project admins; checked and audited in SQL)."""
    if not 0 <= days <= 3650:
        raise Invalid("must be between 0 (keep forever) and 3650 days", field="event_retention_days")
    return int(await scalar(conn, "select ops.set_event_retention(%s, %s)", (project_id, days)))


async def fill_archived_attempts(
    conn: AsyncConnection, *, run: dict[str, Any], store: ArtifactStore | None = None
) -> None:
    """Give the tasks of ``run`` (as ``runs.get_run`` returns it) their archived attempts, where they have none
    left in Postgres, so the page's attempts table and timeline stay whole after retention."""
    by_task: dict[uuid.UUID, list[dict[str, Any]]] = {}
    for row in await archived_attempts(conn, run_id=run["id"], store=store):
        attempt = {key: row[key] for key in ATTEMPT_FIELDS}
        attempt["executor_id"] = uuid.UUID(row["executor_id"]) if row["executor_id"] else None
        by_task.setdefault(uuid.UUID(row["task_id"]), []).append(attempt)
    for task in run["tasks"]:
        if not task["attempts"]:
            task["attempts"] = by_task.get(task["id"], [])
