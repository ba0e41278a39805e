"""Event retention for clients: a project's retention setting, and a run's archived events and attempts."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from control_room.api.deps import User, UserConnection
from control_room.api.models import EventPublic
from control_room.services import retention, runs
from control_room.services.auth import act_as

router = APIRouter(tags=["retention"])


class ProjectRetention(BaseModel):
    project_id: uuid.UUID
    event_retention_days: int = Field(
        description="Days after a run finished before its events and attempts move to the Parquet archive; 0 keeps "
        "them in Postgres forever."
    )


class ProjectRetentionUpdate(BaseModel):
    event_retention_days: int = Field(ge=0, le=3650, description="0 (keep forever) to 3650 days.")


class EventArchivePublic(BaseModel):
    run_id: uuid.UUID
    status: str = Field(description="deleting (rows being removed) or done.")
    retention_days: int
    event_count: int
    attempt_count: int
    events_size_bytes: int
    events_sha256: str
    attempts_size_bytes: int
    attempts_sha256: str
    archived_at: datetime
    deleted_at: datetime | None


class ArchivedAttempt(BaseModel):
    task_id: uuid.UUID
    task_key: str
    attempt: int
    executor_id: uuid.UUID | None
    executor_name: str | None
    claimed_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    outcome: str | None
    error: str | None


class ArchivedEventPage(BaseModel):
    archive: EventArchivePublic
    items: list[EventPublic] = Field(description="Archived events in id order (the bytes checked against SHA-256).")
    next_after_id: int | None = Field(description="Highest id returned: pass as after_id to continue.")


class ArchivedAttemptList(BaseModel):
    archive: EventArchivePublic
    items: list[ArchivedAttempt]


@router.get("/projects/{project}/retention", operation_id="getProjectRetention", response_model=ProjectRetention)
async def get_project_retention(project: str, conn: UserConnection) -> dict[str, Any]:
    """The project's event retention (any member; project slug or id)."""
    project_id = await runs.resolve_project(conn, project)
    days = await retention.get_retention(conn, project_id=project_id)
    return {"project_id": project_id, "event_retention_days": days}


@router.put("/projects/{project}/retention", operation_id="setProjectRetention", response_model=ProjectRetention)
async def put_project_retention(
    project: str, body: ProjectRetentionUpdate, user: User, conn: UserConnection
) -> dict[str, Any]:
    """Set the project's event retention (project admins); audited."""
    await act_as(conn, user.email, local=True)
    project_id = await runs.resolve_project(conn, project)
    days = await retention.set_retention(conn, project_id=project_id, days=body.event_retention_days)
    return {"project_id": project_id, "event_retention_days": days}


@router.get("/runs/{run_id}/events/archived", operation_id="listArchivedRunEvents", response_model=ArchivedEventPage)
async def list_archived_events(
    run_id: uuid.UUID,
    conn: UserConnection,
    after_id: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> dict[str, Any]:
    """The run's events that the retention moved to Parquet, read back from the artifact store (404 when none)."""
    archive, items = await retention.archived_events(conn, run_id=run_id, after_id=after_id, limit=limit)
    return {"archive": archive, "items": items, "next_after_id": items[-1]["id"] if items else after_id}


@router.get("/runs/{run_id}/attempts/archived", operation_id="listArchivedRunAttempts",
            response_model=ArchivedAttemptList)  # fmt: skip
async def list_archived_attempts(run_id: uuid.UUID, conn: UserConnection) -> dict[str, Any]:
    """The run's task attempts that the retention moved to Parquet (404 when none)."""
    archive = await retention.archive_of(conn, run_id=run_id)
    items = await retention.archived_attempts(conn, run_id=run_id)
    return {"archive": archive, "items": items}
