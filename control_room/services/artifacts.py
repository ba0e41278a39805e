"""Artifacts: upload sessions (initiate, receive, complete with verified size and SHA-256), listing, reads."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from anyio import to_thread
from psycopg import AsyncConnection

from control_room.config import get_settings
from control_room.db.rows import dict_rows, first_dict_row, first_model, scalar
from control_room.db.tables import ArtifactUpload
from control_room.services.errors import Conflict, Invalid, LeaseLost, NotFound
from control_room.services.pagination import ListQuery, Page, newest_first
from control_room.storage import (
    ArtifactExists,
    ArtifactStore,
    ChecksumMismatch,
    SizeMismatch,
    StorageError,
    artifact_key,
    get_store,
)

SHA256 = re.compile(r"^[0-9a-f]{64}$")
MAX_ARTIFACT_BYTES = 50 * 1024**3
# `uri` is the store location for project admins and trusted callers, an opaque `artifact:<id>` for other
# members (ops.artifact_location, 20261203000120_artifact_locations.sql).
ARTIFACT_COLUMNS = (
    "a.id, a.run_id, a.project_id, a.task_id, t.key as task_key, a.attempt, a.name, "
    "ops.artifact_location(a.id) as uri, a.size_bytes, a.sha256, a.content_type, a.metadata, a.created_at"
)
NEWEST_FIRST = newest_first("a")


async def _attempt_of_lease(conn: AsyncConnection, task_id: uuid.UUID, lease_token: uuid.UUID) -> dict[str, Any]:
    row = await first_dict_row(
        conn,
        "select a.attempt, a.run_id, t.project_id from ops.task_attempts a join ops.tasks t on t.id = a.task_id "
        "where a.task_id = %s and a.lease_token = %s",
        (task_id, lease_token),
    )
    if row is None:
        raise LeaseLost(f"lease token does not belong to task {task_id}")
    return row


async def _artifact(conn: AsyncConnection, where: str, args: tuple[Any, ...]) -> dict[str, Any] | None:
    return await first_dict_row(
        conn,
        f"select {ARTIFACT_COLUMNS} from ops.artifacts a left join ops.tasks t on t.id = a.task_id where {where}",
        args,
    )


async def initiate_upload(
    conn: AsyncConnection,
    *,
    task_id: uuid.UUID,
    lease_token: uuid.UUID,
    name: str,
    size_bytes: int,
    sha256: str,
    content_type: str,
    metadata: dict[str, Any],
    base_url: str,
) -> dict[str, Any]:
    """Open an upload: where to PUT the bytes. An identical artifact already stored is returned as done."""
    if not SHA256.match(sha256):
        raise Invalid("must be 64 lower-case hex characters", field="sha256")
    if not 0 <= size_bytes <= MAX_ARTIFACT_BYTES:
        raise Invalid(f"must be between 0 and {MAX_ARTIFACT_BYTES} bytes", field="size_bytes")
    attempt = await _attempt_of_lease(conn, task_id, lease_token)
    try:
        key = artifact_key(attempt["project_id"], attempt["run_id"], task_id, attempt["attempt"], name)
    except ValueError as exc:
        raise Invalid(str(exc), field="name") from exc
    existing = await _artifact(
        conn, "a.task_id = %s and a.attempt = %s and a.name = %s", (task_id, attempt["attempt"], name)
    )
    if existing is not None:
        if existing["sha256"] == sha256 and existing["size_bytes"] == size_bytes:
            return {
                "upload_id": None,
                "artifact": existing,
                "upload_url": None,
                "method": None,
                "headers": {},
                "expires_at": None,
            }
        raise Conflict(f'artifact "{name}" of this attempt already exists with other content', field="name")
    settings = get_settings()
    expires = datetime.now(UTC) + timedelta(seconds=settings.upload_url_expiry_seconds)
    upload_id = await scalar(
        conn,
        "insert into ops.artifact_uploads (task_id, attempt, run_id, project_id, lease_token, name, size_bytes, "
        "sha256, content_type, metadata, storage_key, expires_at) "
        "values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s) returning id",
        (
            task_id,
            attempt["attempt"],
            attempt["run_id"],
            attempt["project_id"],
            lease_token,
            name,
            size_bytes,
            sha256,
            content_type,
            json.dumps(metadata),
            key,
            expires,
        ),
    )
    store = get_store()
    target = await to_thread.run_sync(
        lambda: store.upload_target(
            key,
            size=size_bytes,
            sha256=sha256,
            content_type=content_type,
            local_put_url=f"{base_url.rstrip('/')}/api/v1/uploads/{upload_id}",
        )
    )
    return {
        "upload_id": upload_id,
        "artifact": None,
        "upload_url": target.url,
        "method": target.method,
        "headers": target.headers,
        "expires_at": target.expires_at,
    }


async def _upload(conn: AsyncConnection, upload_id: uuid.UUID) -> ArtifactUpload:
    row = await first_model(conn, ArtifactUpload, "select * from ops.artifact_uploads where id = %s", (upload_id,))
    if row is None:
        raise NotFound(f"upload {upload_id} does not exist", field="upload_id")
    return row


async def receive_upload(conn: AsyncConnection, *, upload_id: uuid.UUID, chunks: Any) -> None:
    """Take the bytes of a local-store upload, verifying size and SHA-256 while streaming."""
    upload = await _upload(conn, upload_id)
    if upload.status == "completed":
        raise Conflict("this upload is already complete; artifacts are immutable", field="upload_id")
    if upload.expires_at < datetime.now(UTC):
        raise Conflict("this upload URL has expired; initiate the upload again", field="upload_id")
    store = get_store()
    if store.kind != "local":
        raise Invalid(
            "this control plane stores artifacts in S3: PUT the bytes to the presigned URL", field="upload_id"
        )
    try:
        await store.receive(upload.storage_key, chunks, size=upload.size_bytes, sha256=upload.sha256)
    except (ChecksumMismatch, SizeMismatch) as exc:
        await conn.execute("update ops.artifact_uploads set error = %s where id = %s", (str(exc), upload_id))
        raise Invalid(f"upload rejected, nothing stored: {exc}", field="body") from exc
    except ArtifactExists as exc:
        raise Conflict("these bytes were already received for this upload; complete it", field="upload_id") from exc
    await conn.execute("update ops.artifact_uploads set status = 'received', error = null where id = %s", (upload_id,))


async def complete_upload(
    conn: AsyncConnection, *, task_id: uuid.UUID, upload_id: uuid.UUID, lease_token: uuid.UUID
) -> dict[str, Any]:
    """Verify the stored bytes against the declared size and SHA-256, then register the artifact."""
    upload = await _upload(conn, upload_id)
    if upload.task_id != task_id or upload.lease_token != lease_token:
        raise LeaseLost(f"upload {upload_id} does not belong to this task and lease")
    if upload.status == "completed" and upload.artifact_id:
        found = await _artifact(conn, "a.id = %s", (upload.artifact_id,))
        assert found is not None
        return found
    store = get_store()
    result = await to_thread.run_sync(
        lambda: _verify(store, upload.storage_key, upload.size_bytes, upload.sha256)
    )
    if not result[0]:
        await conn.execute(
            "update ops.artifact_uploads set status = 'rejected', error = %s where id = %s", (result[1], upload_id)
        )
        if store.kind == "s3":
            await to_thread.run_sync(lambda: store.delete_pending(upload.storage_key))
        raise Invalid(f"upload rejected, nothing registered: {result[1]}", field="sha256")
    async with conn.transaction():
        artifact_id = await scalar(
            conn,
            "insert into ops.artifacts (run_id, project_id, task_id, attempt, name, uri, size_bytes, sha256, "
            "content_type, metadata) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb) "
            "on conflict (task_id, attempt, name) do nothing returning id",
            (
                upload.run_id,
                upload.project_id,
                task_id,
                upload.attempt,
                upload.name,
                store.uri(upload.storage_key),
                upload.size_bytes,
                upload.sha256,
                upload.content_type,
                json.dumps(upload.metadata_),
            ),
        )
        if artifact_id is None:
            raise Conflict(f'artifact "{upload.name}" of this attempt is already registered', field="name")
        await conn.execute(
            "update ops.artifact_uploads set status = 'completed', artifact_id = %s, completed_at = now() "
            "where id = %s",
            (artifact_id, upload_id),
        )
    found = await _artifact(conn, "a.id = %s", (artifact_id,))
    assert found is not None
    return found


def _verify(store: ArtifactStore, key: str, size: int, sha256: str) -> tuple[bool, str]:
    try:
        result = store.verify(key, size=size, sha256=sha256)
    except StorageError as exc:
        return False, str(exc)
    return result.ok, result.message


async def list_run_artifacts(
    conn: AsyncConnection, *, run_id: uuid.UUID, task_id: uuid.UUID | None = None
) -> list[dict[str, Any]]:
    """Artifacts of a run (optionally one task), oldest first; a re-run lists those of the tasks whose
    outcome it reused too (they stay where they were made, in the earlier run)."""
    where = (
        "(a.run_id = %s or a.task_id in (select x.reused_from_task from ops.tasks x "
        "where x.run_id = %s and x.reused_from_task is not null))"
    )
    args: list[Any] = [run_id, run_id]
    if task_id is not None:
        where += " and a.task_id = %s"
        args.append(task_id)
    return await dict_rows(
        conn,
        f"select {ARTIFACT_COLUMNS} from ops.artifacts a left join ops.tasks t on t.id = a.task_id "
        f"where {where} order by a.created_at, a.name limit 10000",
        args,
    )


async def get_artifact(conn: AsyncConnection, *, artifact_id: uuid.UUID) -> dict[str, Any]:
    found = await _artifact(conn, "a.id = %s", (artifact_id,))
    if found is None:
        raise NotFound(f"artifact {artifact_id} does not exist or is not visible to you", field="artifact_id")
    return found


def storage_key_of(artifact: dict[str, Any]) -> str:
    """The store key of a registered artifact (from its ids, as it was written)."""
    return artifact_key(
        artifact["project_id"], artifact["run_id"], artifact["task_id"], artifact["attempt"], artifact["name"]
    )


async def list_project_artifacts(
    conn: AsyncConnection,
    *,
    project_id: uuid.UUID,
    run_id: uuid.UUID | None = None,
    text: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page:
    """A project's artifacts across runs, newest first (keyset on created_at, id), optionally of one
    run or with ``text`` in the name; returns the rows (with their run's name) and the next cursor."""
    query = ListQuery()
    query.equal("a.project_id", project_id)
    query.equal("a.run_id", run_id)
    query.matches("a.name", text.strip() if text else None)
    if cursor:
        query.after(NEWEST_FIRST, *_decode_cursor(cursor))
    return await query.page(
        conn,
        columns=f"{ARTIFACT_COLUMNS}, r.name as run_name",
        source="ops.artifacts a left join ops.tasks t on t.id = a.task_id join ops.runs r on r.id = a.run_id",
        keyset=NEWEST_FIRST,
        limit=limit,
        cursor_of=lambda row: f"{row['created_at'].isoformat()}|{row['id']}",
    )


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The (created_at, id) of this list's own cursor (plain ``created_at|id``, as the Artifacts page keeps it)."""
    try:
        at, artifact_id = cursor.split("|", 1)
        return datetime.fromisoformat(at), uuid.UUID(artifact_id)
    except ValueError as exc:
        raise Invalid("not a cursor of this list; start from the first page", field="cursor") from exc


async def find_for_task(
    conn: AsyncConnection,
    *,
    task_id: uuid.UUID,
    lease_token: uuid.UUID,
    task_key: str,
    name: str,
    run_id: uuid.UUID | None,
) -> dict[str, Any]:
    """An artifact an executor may read while holding a lease: produced by task ``task_key`` of this run
    (or of ``run_id`` in the same project), newest attempt first."""
    attempt = await _attempt_of_lease(conn, task_id, lease_token)
    source_run = run_id or attempt["run_id"]
    # A task whose outcome a re-run reused has its artifacts where they were made (reused_from_task).
    found = await _artifact(
        conn,
        "a.task_id = (select coalesce(x.reused_from_task, x.id) from ops.tasks x where x.run_id = %s and x.key = %s) "
        "and a.project_id = %s and a.name = %s order by a.attempt desc nulls last, a.created_at desc limit 1",
        (source_run, task_key, attempt["project_id"], name),
    )
    if found is None:
        raise NotFound(f'no artifact "{name}" of task "{task_key}" in run {source_run} of this project', field="name")
    return found
