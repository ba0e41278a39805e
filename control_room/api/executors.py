"""Executor-facing operations: register, heartbeats, claim, events, artifacts, finalize."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from fastapi.types import DecoratedCallable
from pydantic import BaseModel, TypeAdapter

from control_room.api.artifact_bytes import binary_content, bytes_reply, stream_artifact
from control_room.api.deps import Executor, Pool
from control_room.api.json_body import post_with_model_body
from control_room.api.models import (
    ArtifactFetch,
    ArtifactInitiate,
    ArtifactPublic,
    ClaimReply,
    ClaimRequest,
    EventBatch,
    EventBatchReply,
    EventCreate,
    ExecutorHeartbeat,
    ExecutorHeartbeatReply,
    ExecutorPublic,
    ExecutorRegister,
    FinalizeBatch,
    FinalizeBatchReply,
    FinalizeReply,
    FinalizeRequest,
    LeaseBatch,
    LeaseBatchReply,
    LeaseRef,
    ReleaseReply,
    ReleaseRequest,
    TaskHeartbeatReply,
    UploadTicket,
)
from control_room.db.notify import get_notifier
from control_room.services import artifacts, tasks
from control_room.services.retry import retry_transaction

EVENTS_JSON = TypeAdapter(list[EventCreate])

router = APIRouter(tags=["executors"])
LEASE_ERRORS: dict[int | str, dict[str, Any]] = {"409": {"description": "Lease lost: stop working on the task."}}


def leased_task_route(
    feature_router: APIRouter, path: str, *, operation_id: str, response_model: type[BaseModel]
) -> Callable[[DecoratedCallable], DecoratedCallable]:
    """A POST an executor makes about a task it holds the lease of, on another feature's router: tagged
    executors, answered 409 when the lease is lost."""
    return feature_router.post(
        path, operation_id=operation_id, tags=["executors"], response_model=response_model, responses=LEASE_ERRORS
    )


@router.post("/executors/register", operation_id="registerExecutor", response_model=ExecutorPublic)
async def register_executor(body: ExecutorRegister, executor: Executor, db: Pool) -> dict[str, Any]:
    """Announce this agent's engines, labels and capacity; returns the lease timing to use."""
    async with db.connection() as conn:
        return await tasks.register(conn, executor, **body.model_dump())


@router.post("/executors/heartbeat", operation_id="executorHeartbeat", response_model=ExecutorHeartbeatReply)
async def executor_heartbeat(body: ExecutorHeartbeat, executor: Executor, db: Pool) -> dict[str, Any]:
    """Liveness; the reply carries drain and cancel signals."""
    async with db.connection() as conn:
        return await tasks.executor_heartbeat(conn, executor, running_task_ids=body.running_task_ids)


@router.post("/tasks/claim", operation_id="claimTasks", response_model=ClaimReply)
async def claim_tasks(body: ClaimRequest, executor: Executor, db: Pool) -> dict[str, Any]:
    """Claim up to max_tasks of this executor's pool; with none queued, wait up to wait_s (long poll)."""
    notifier = await get_notifier() if body.wait_s > 0 else None
    rows = await tasks.claim(db, notifier, executor, tasks.ClaimOptions(**body.model_dump()))
    return {"tasks": rows}


@router.post("/tasks/heartbeat", operation_id="heartbeatTasks", response_model=LeaseBatchReply, responses=LEASE_ERRORS)
async def heartbeat_tasks(body: LeaseBatch, executor: Executor, db: Pool) -> dict[str, Any]:
    """Extend many leases at once; each item says whether its lease is still held."""
    async with db.connection() as conn:
        return {"items": await tasks.task_heartbeats(conn, items=[i.model_dump() for i in body.items])}


@router.post("/tasks/finalize", operation_id="finalizeTasks", response_model=FinalizeBatchReply, responses=LEASE_ERRORS)
async def finalize_tasks(body: FinalizeBatch, executor: Executor, db: Pool) -> dict[str, Any]:
    """Finalize many tasks at once; each item succeeds or fails on its own."""
    items = [i.model_dump(mode="json") for i in body.items]
    async with db.connection() as conn:  # autocommit: each try is one whole transaction
        return {
            "items": await retry_transaction(
                lambda: tasks.finalize_many(conn, items=items), what=f"finalize by executor {executor.name}"
            )
        }


@router.post(
    "/tasks/{task_id}/heartbeat",
    operation_id="heartbeatTask",
    response_model=TaskHeartbeatReply,
    responses=LEASE_ERRORS,
)
async def heartbeat_task(task_id: uuid.UUID, body: LeaseRef, executor: Executor, db: Pool) -> dict[str, Any]:
    """Extend the task's lease; 409 when it was lost. The reply says whether a cancel was requested."""
    async with db.connection() as conn:
        return await tasks.task_heartbeat(conn, task_id=task_id, lease_token=body.lease_token)


@post_with_model_body(  # a hundred events a call: validated from the bytes
    router,
    "/tasks/{task_id}/events",
    EventBatch,
    operation_id="appendEvents",
    response_model=EventBatchReply,
    responses=LEASE_ERRORS,
)
async def append_events(task_id: uuid.UUID, body: EventBatch, executor: Executor, db: Pool) -> dict[str, int]:
    """Append a batch of the attempt's events; idempotent by seq (re-sends are counted as duplicates)."""
    # The whole batch dumped straight to JSON text by pydantic-core: half the time of a dump to Python objects
    # and a JSON encoding of those.
    events = EVENTS_JSON.dump_json(body.events, exclude_none=True).decode()
    async with db.connection() as conn:
        return await tasks.append_events(
            conn, task_id=task_id, lease_token=body.lease_token, events_json=events, count=len(body.events)
        )


@router.post(
    "/tasks/{task_id}/finalize", operation_id="finalizeTask", response_model=FinalizeReply, responses=LEASE_ERRORS
)
async def finalize_task(task_id: uuid.UUID, body: FinalizeRequest, executor: Executor, db: Pool) -> dict[str, Any]:
    """Record the attempt's outcome; repeating the same finalize is harmless, a stale lease gets 409."""
    async with db.connection() as conn:  # autocommit: each try is one whole transaction
        return await retry_transaction(
            lambda: tasks.finalize(conn, task_id=task_id, **body.model_dump()),
            what=f"finalize by executor {executor.name}",
        )


@router.post(
    "/tasks/{task_id}/artifacts",
    operation_id="initiateArtifact",
    response_model=UploadTicket,
    responses=LEASE_ERRORS,
)
async def initiate_artifact(
    task_id: uuid.UUID, body: ArtifactInitiate, request: Request, executor: Executor, db: Pool
) -> dict[str, Any]:
    """Start an upload: returns where to PUT the bytes (a presigned S3 URL or this server)."""
    async with db.connection() as conn:
        return await artifacts.initiate_upload(
            conn, task_id=task_id, base_url=str(request.base_url), **body.model_dump()
        )


@router.put(
    "/uploads/{upload_id}",
    operation_id="uploadArtifactBytes",
    status_code=204,
    response_class=Response,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": binary_content("application/octet-stream"),
        },
        "x-problems": ["400", "401", "403", "404", "409", "422", "500"],
    },
)
async def upload_artifact_bytes(upload_id: uuid.UUID, request: Request, executor: Executor, db: Pool) -> Response:
    """The bytes of an upload to the local store; size and SHA-256 are verified while streaming."""
    async with db.connection() as conn:
        await artifacts.receive_upload(conn, upload_id=upload_id, chunks=request.stream())
    return Response(status_code=204)


@router.post(
    "/tasks/{task_id}/artifacts/{upload_id}/complete",
    operation_id="completeArtifact",
    response_model=ArtifactPublic,
    responses=LEASE_ERRORS,
)
async def complete_artifact(
    task_id: uuid.UUID, upload_id: uuid.UUID, body: LeaseRef, executor: Executor, db: Pool
) -> dict[str, Any]:
    """Verify the stored bytes (size and SHA-256) and register the artifact; a mismatch registers nothing."""
    async with db.connection() as conn:
        return await artifacts.complete_upload(conn, task_id=task_id, upload_id=upload_id, lease_token=body.lease_token)


@router.post(
    "/tasks/{task_id}/release", operation_id="releaseTask", response_model=ReleaseReply, responses=LEASE_ERRORS
)
async def release_task(task_id: uuid.UUID, body: ReleaseRequest, executor: Executor, db: Pool) -> dict[str, Any]:
    """Hand the lease back (the agent is shutting down): the task is queued again for another agent and
    this attempt does not count against max_attempts."""
    async with db.connection() as conn:
        return {
            "task_status": await tasks.release(conn, task_id=task_id, lease_token=body.lease_token, reason=body.reason)
        }


@router.post(
    "/tasks/{task_id}/artifacts/fetch",
    operation_id="fetchArtifact",
    response_class=StreamingResponse,
    responses={
        "200": bytes_reply(
            "The artifact's bytes; `X-Artifact-Sha256` lets the agent verify them.", "application/octet-stream"
        ),
        **LEASE_ERRORS,
    },
)
async def fetch_artifact(task_id: uuid.UUID, body: ArtifactFetch, executor: Executor, db: Pool) -> StreamingResponse:
    """Download an artifact of an earlier task (of this run, or of another run of the same project) while
    holding this task's lease: a dbt project, a Spark application, a manifest for slim CI."""
    async with db.connection() as conn:
        artifact = await artifacts.find_for_task(conn, task_id=task_id, **body.model_dump())
    return await stream_artifact(
        artifact,
        media_type="application/octet-stream",
        headers={"X-Artifact-Sha256": artifact["sha256"], "X-Artifact-Id": str(artifact["id"])},
    )
