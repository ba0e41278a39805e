"""Client-facing operations: submit, list, inspect, cancel and retry runs; events (pages and SSE); artifacts."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, Header, Path, Query, Response
from fastapi.responses import StreamingResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent
from fastapi.types import DecoratedCallable
from pydantic import BaseModel

from control_room.api.artifact_bytes import bytes_reply, stream_artifact
from control_room.api.deps import Pool, User, UserConnection
from control_room.api.models import (
    ArtifactList,
    ArtifactPublic,
    EventPage,
    IsoDatetime,
    RunCreate,
    RunDetail,
    RunPage,
    RunPublic,
    RunRetry,
)
from control_room.db.notify import EVENTS_CHANNEL, get_notifier
from control_room.services import artifacts, events, result_policies, runs, task_detail
from control_room.services.auth import UserPrincipal, scoped
from control_room.services.errors import CapExceeded, Invalid
from control_room.services.pagination import page_reply
from control_room.services.retry import retry_transaction

router = APIRouter(tags=["runs"])
STREAM_PAGE = 500


class SubmitBody(Protocol):
    """The fields every submit body has (runs of a spec, runs of a template)."""

    @property
    def idempotency_key(self) -> str | None: ...
    @property
    def priority(self) -> int: ...
    @property
    def tags(self) -> list[str]: ...


def submit_options(body: SubmitBody, user: UserPrincipal) -> runs.SubmitOptions:
    """What every submit through the API passes besides the run itself: the body's idempotency key, priority
    and tags, and the caller as requester."""
    return runs.SubmitOptions(
        idempotency_key=body.idempotency_key,
        priority=body.priority,
        tags=body.tags,
        trigger="api",
        requested_by=user.user_id,
        requested_by_name=user.email,
    )


def submitted(run: dict[str, Any], created: bool, response: Response) -> dict[str, Any]:
    """The reply of a create: 201 when it made something new, 200 when the thing already existed (the run of the
    same idempotency key; a job saved as its next version)."""
    if not created:
        response.status_code = 200
    return run


def submit_route(
    on: APIRouter,
    path: str,
    *,
    operation_id: str,
    model: type[BaseModel],
    existing: str = "A run with this idempotency key already existed.",
    errors: dict[str, str] | None = None,
) -> Callable[[DecoratedCallable], DecoratedCallable]:
    """The POST route of a create answered with ``submitted``: 201 with ``model``, or 200 with it when the thing
    already existed (``existing`` says when); ``errors``: other statuses it answers and what they mean."""
    responses: dict[int | str, dict[str, Any]] = {"200": {"description": existing, "model": model}}
    responses.update({status: {"description": meaning} for status, meaning in (errors or {}).items()})
    return on.post(path, operation_id=operation_id, response_model=model, status_code=201, responses=responses)


@submit_route(
    router, "/runs", operation_id="submitRun", model=RunPublic,
    errors={"429": "A runs-per-day cap was reached.", "409": "Conflict."},
)  # fmt: skip
async def submit_run(body: RunCreate, user: User, db: Pool, response: Response) -> dict[str, Any]:
    """Submit a run of a spec with params; the same idempotency key returns the existing run (200)."""

    async def submit() -> tuple[dict[str, Any], bool]:
        # One round trip: in pipeline mode BEGIN, the role, the submit, the read of its run and the COMMIT (whose
        # NOTIFY wakes a waiting agent: the first half of dispatch latency) go out together, and the answers are
        # read after. A submit a cap refused commits only what ops.submit_run recorded of the refusal (the row
        # beside its cap, the cap's breach count); there is no run to read.
        async with db.connection() as conn, conn.pipeline():
            async with scoped(conn, user):
                sent = await runs.send_submit(
                    conn,
                    project=body.project,
                    environment=body.environment,
                    spec=body.spec.model_dump(mode="json", exclude_unset=True, by_alias=True),
                    params=body.params,
                    **submit_options(body, user),
                )
                read = await runs.send_run_read(conn, None)
            async with sent, read:
                run_id, created, refusal = await runs.submit_answer(sent)
                if refusal:
                    raise CapExceeded(refusal)
                assert run_id is not None
                return await runs.run_read(read, run_id), created

    run, created = await retry_transaction(submit, what=f"submit by {user.email}")
    return submitted(run, created, response)


@router.get("/runs", operation_id="listRuns", response_model=RunPage)
async def list_runs(
    conn: UserConnection,
    status: Annotated[list[str] | None, Query(description="One or more run statuses.")] = None,
    project: Annotated[str | None, Query(max_length=100)] = None,
    environment: Annotated[str | None, Query(pattern="^(dev|staging|prod)$")] = None,
    engine: Annotated[str | None, Query(max_length=40)] = None,
    trigger: Annotated[str | None, Query(max_length=40)] = None,
    q: Annotated[str | None, Query(max_length=200, description="Text in the run name, or an id prefix.")] = None,
    created_after: IsoDatetime | None = None,
    created_before: IsoDatetime | None = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """Runs newest first, filtered; keyset pagination through `cursor`."""
    filters = runs.RunFilters(
        statuses=status or [],
        project=project,
        environment=environment,
        engine=engine,
        trigger=trigger,
        text=q,
        created_after=created_after,
        created_before=created_before,
    )
    return page_reply(await runs.list_runs(conn, filters=filters, cursor=cursor, limit=limit))


@router.get("/runs/{run_id}", operation_id="getRun", response_model=RunDetail)
async def get_run(run_id: uuid.UUID, conn: UserConnection) -> dict[str, Any]:
    """A run with its spec, tasks and every task's attempts."""
    return await runs.get_run(conn, run_id=run_id)


@router.post("/runs/{run_id}/cancel", operation_id="cancelRun", response_model=RunDetail)
async def cancel_run(run_id: uuid.UUID, user: User, conn: UserConnection) -> dict[str, Any]:
    """Cancel a run (operators): waiting tasks end at once, running ones are stopped by their agents."""
    return await runs.cancel_run(conn, run_id=run_id, by=user.email)


@router.post(
    "/runs/{run_id}/retry",
    operation_id="retryRun",
    response_model=RunPublic,
    status_code=201,
    responses={
        "409": {"description": "The run's state does not allow this re-run (e.g. it is still running)."},
        "429": {"description": "A runs-per-day cap was reached."},
    },
)
async def retry_run(
    run_id: uuid.UUID, user: User, conn: UserConnection, body: RunRetry | None = None
) -> dict[str, Any]:
    """Re-run a finished run (operators): every task (`all`, the default), only what failed and its downstream
    (`failed`, reusing the succeeded tasks' outcomes and artifacts), or from one task on (`from_task`)."""
    options = body or RunRetry()
    return await runs.retry_run(
        conn,
        run_id=run_id,
        requested_by=user.user_id,
        requested_by_name=user.email,
        mode=options.mode,
        from_task=options.from_task,
    )


@router.get("/runs/{run_id}/events", operation_id="listRunEvents", response_model=EventPage)
async def list_run_events(
    run_id: uuid.UUID,
    conn: UserConnection,
    after_id: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    before_id: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    task_id: uuid.UUID | None = None,
    attempt: Annotated[int | None, Query(ge=1, le=10_000, description="Only this attempt's events.")] = None,
    level: Annotated[str | None, Query(pattern="^(debug|info|warning|error)$", description="Minimum level.")] = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> dict[str, Any]:
    """Events in id order. Without after_id the newest page comes back (to open a timeline at its end);
    page older with before_id, newer with after_id."""
    await runs.get_run(conn, run_id=run_id, with_tasks=False)
    items = await events.list_events(
        conn,
        run_id=run_id,
        after_id=after_id,
        before_id=before_id,
        task_id=task_id,
        attempt=attempt,
        min_level=level,
        text=q,
        limit=limit,
    )
    return {
        "items": items,
        "next_after_id": items[-1]["id"] if items else after_id,
        "next_before_id": items[0]["id"] if items else None,
    }


async def _stream_start(
    run_id: uuid.UUID,
    user: User,
    db: Pool,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    after_id: Annotated[int | None, Query(ge=0, le=2**62, description="Start after this id (header wins).")] = None,
) -> int:
    # A dependency runs before the response starts: an unknown run or a bad Last-Event-ID is a 404/422
    # problem, not a 200 whose stream breaks off.
    start = after_id or 0
    if last_event_id:
        try:
            start = int(last_event_id)
        except ValueError as exc:
            raise Invalid("Last-Event-ID must be an event id returned by this stream", field="Last-Event-ID") from exc
        if not 0 <= start <= 2**62:
            raise Invalid("Last-Event-ID must be an event id returned by this stream", field="Last-Event-ID")
    async with db.connection() as conn, scoped(conn, user):
        await runs.get_run(conn, run_id=run_id, with_tasks=False)
    return start


@router.get(
    "/runs/{run_id}/events/stream",
    operation_id="streamRunEvents",
    response_class=EventSourceResponse,
    responses={"200": {"description": "text/event-stream of events (id = event id, event = type, data = JSON)."}},
)
async def stream_run_events(
    run_id: uuid.UUID, user: User, db: Pool, start: Annotated[int, Depends(_stream_start)]
) -> AsyncIterator[ServerSentEvent]:
    """Server-Sent Events of the run, resuming after `Last-Event-ID`; ends with an `end` event once the
    run has finished and every event was sent. Each event's data is an EventPublic as JSON."""
    notifier = await get_notifier()
    last = start
    while True:
        waiter = notifier.waiter(EVENTS_CHANNEL, str(run_id))
        async with db.connection() as conn, scoped(conn, user):
            finished = await events.run_is_finished(conn, run_id=run_id)
            page = await events.list_events(conn, run_id=run_id, after_id=last, limit=STREAM_PAGE)
        for row in page:
            last = row["id"]
            yield ServerSentEvent(id=str(row["id"]), event=row["type"], data=_jsonable(row))
        if len(page) == STREAM_PAGE:
            continue
        if finished:
            yield ServerSentEvent(event="end", data={"run_id": str(run_id), "last_event_id": last})
            return
        await notifier.wait(waiter, 5.0)


@router.get(
    "/runs/{run_id}/tasks/{task}/log",
    operation_id="downloadTaskLog",
    response_class=StreamingResponse,
    responses={
        "200": {
            "description": "The task's events as a text log, oldest first: one line per event (UTC time, level, "
            "type, message, data), served as a file to save.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
)
async def download_task_log(
    run_id: uuid.UUID,
    task: Annotated[str, Path(min_length=1, max_length=200, description="The task's id or key.")],
    user: User,
    db: Pool,
    attempt: Annotated[int | None, Query(ge=1, le=10_000, description="One attempt (all of them without).")] = None,
) -> StreamingResponse:
    """The whole log of a task (or one attempt of it) as a file, streamed in pages however long it is."""
    async with db.connection() as conn, scoped(conn, user):
        await runs.get_run(conn, run_id=run_id, with_tasks=False)
        task_id, key = await task_detail.resolve_task(conn, run_id=run_id, task=task)

    async def lines() -> AsyncIterator[bytes]:
        async with db.connection() as conn, scoped(conn, user):
            async for line in task_detail.attempt_log(conn, run_id=run_id, task_id=task_id, attempt=attempt):
                yield line.encode()

    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in key)
    suffix = f"-attempt-{attempt}" if attempt else ""
    return StreamingResponse(
        lines(),
        media_type="text/plain; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="run-{str(run_id)[:8]}-{name}{suffix}.log"'},
    )


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for key in ("run_id", "task_id"):
        if out.get(key) is not None:
            out[key] = str(out[key])
    out["ts"] = row["ts"].isoformat()
    return out


@router.get("/runs/{run_id}/artifacts", operation_id="listRunArtifacts", response_model=ArtifactList)
async def list_run_artifacts(
    run_id: uuid.UUID, conn: UserConnection, task_id: uuid.UUID | None = None
) -> dict[str, Any]:
    """Artifacts of a run (optionally of one task)."""
    await runs.get_run(conn, run_id=run_id, with_tasks=False)
    return {"items": await artifacts.list_run_artifacts(conn, run_id=run_id, task_id=task_id)}


@router.get("/artifacts/{artifact_id}", operation_id="getArtifact", response_model=ArtifactPublic)
async def get_artifact(artifact_id: uuid.UUID, conn: UserConnection) -> dict[str, Any]:
    """One artifact's metadata (name, size, SHA-256, content type)."""
    return await artifacts.get_artifact(conn, artifact_id=artifact_id)


@router.get(
    "/artifacts/{artifact_id}/content",
    operation_id="downloadArtifact",
    response_class=StreamingResponse,
    responses={"200": bytes_reply("The artifact's bytes, served with the content type it was uploaded with.", "*/*")},
)
async def download_artifact(artifact_id: uuid.UUID, user: User, db: Pool) -> StreamingResponse:
    """The artifact's bytes, with its SHA-256 as the ETag (403 when the access policies of the datasets its
    task read withhold its rows from the caller)."""
    async with db.connection() as conn, scoped(conn, user):
        artifact = await artifacts.get_artifact(conn, artifact_id=artifact_id)
        await result_policies.require_rows_visible(conn, artifact=artifact)
    filename = artifact["name"].rsplit("/", 1)[-1].replace('"', "")
    return await stream_artifact(
        artifact,
        media_type=artifact["content_type"],
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
