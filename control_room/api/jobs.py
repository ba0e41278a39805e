"""Job management for clients: templates and their runs, schedules (pause, resume, fire now), backfills."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from psycopg import AsyncConnection
from pydantic import BaseModel, Field, StrictBool

from control_room.api.deps import User, UserConnection
from control_room.api.models import Int, IsoDatetime, RunPage, RunPublic, Strict
from control_room.api.runs import submit_options, submit_route, submitted
from control_room.services import backfills, job_editing, jobs, runs, schedules
from control_room.services.pagination import page_reply

router = APIRouter(tags=["jobs"])


# Wire models ------------------------------------------------------------------------------------------


class TemplateFields(BaseModel):
    """A job template's own fields, first in its summary and in its detail."""

    id: uuid.UUID
    name: str
    project_id: uuid.UUID
    project: str
    description: str
    owner: str | None
    tags: list[str]
    archived_at: datetime | None


class TemplateSummary(TemplateFields):
    latest_version: int | None
    schedules: int
    runs: int = Field(description="Runs of the last 30 days.")
    success_rate: float | None = Field(description="Share of the last 30 days' runs that succeeded.")
    p50_s: float | None = Field(description="Median run duration of the last 30 days, seconds.")
    p95_s: float | None
    last_status: str | None
    last_run_id: uuid.UUID | None
    last_run_at: datetime | None
    next_fire_at: datetime | None = Field(description="The next scheduled fire of any enabled schedule.")


class TemplateList(BaseModel):
    items: list[TemplateSummary]


class TemplateVersionPublic(BaseModel):
    id: uuid.UUID
    version: int
    params_schema: dict[str, Any]
    tasks: list[dict[str, Any]]
    max_attempts: int
    retry_backoff_s: int
    timeout_s: int | None
    content_sha256: str
    created_by: str | None
    created_at: datetime


class TemplateScheduleRef(BaseModel):
    id: uuid.UUID
    name: str
    environment: str
    cron: str
    timezone: str
    params: dict[str, Any]
    enabled: bool
    paused: bool
    catchup: str
    catchup_limit: int
    overlap: str
    jitter_s: int
    next_fire_at: datetime | None
    description: str


class TemplateDetail(TemplateFields):
    created_at: datetime
    updated_at: datetime
    latest_version: int | None
    versions: list[TemplateVersionPublic]
    schedule_list: list[TemplateScheduleRef]


class TemplateRunCreate(Strict):
    environment: Literal["dev", "staging", "prod"] = "dev"
    params: dict[str, Any] = Field(default_factory=dict, description="Checked against the version's params schema.")
    version: Int | None = Field(default=None, ge=1, description="Template version; the latest when omitted.")
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)
    priority: Int = Field(default=0, ge=-1000, le=1000)
    tags: list[str] = Field(default_factory=list, max_length=32)


class TemplateRunPublic(RunPublic):
    template_id: uuid.UUID
    template_version: int


class SchedulePublic(BaseModel):
    id: uuid.UUID
    name: str
    project_id: uuid.UUID
    project: str
    template_id: uuid.UUID
    template: str
    environment: str
    cron: str
    timezone: str
    params: dict[str, Any]
    enabled: bool
    paused_at: datetime | None
    paused_by: str | None
    catchup: str
    catchup_limit: int
    overlap: str
    jitter_s: int
    misfire_grace_s: int
    next_fire_at: datetime | None
    next_due_at: datetime | None
    description: str


class ScheduleList(BaseModel):
    items: list[SchedulePublic]


class ScheduleFirePublic(BaseModel):
    id: uuid.UUID
    fire_time: datetime
    due_at: datetime
    status: str
    reason: str | None
    run_id: uuid.UUID | None
    run_status: str | None
    trigger: str
    fired_by: str | None
    template_version: int | None
    created_at: datetime


class ScheduleDetail(SchedulePublic):
    upcoming: list[datetime] = Field(description="The next fire times (UTC).")
    fires: list[ScheduleFirePublic] = Field(description="The latest fires, newest first.")


class FireResult(BaseModel):
    fire_id: uuid.UUID
    status: str
    run_id: uuid.UUID | None


class BackfillCreate(Strict):
    template: str = Field(min_length=1, max_length=200, description="Template id, name or project/name.")
    environment: Literal["dev", "staging", "prod"] = "dev"
    start: IsoDatetime
    end: IsoDatetime
    step: str | None = Field(
        default=None,
        max_length=200,
        description="15m, 6h, 1d, 1w or a cron; the schedule's cron if omitted.",
    )
    schedule: str | None = Field(default=None, max_length=200, description="A schedule of the template (id or name).")
    params: dict[str, Any] = Field(default_factory=dict)
    version: Int | None = Field(default=None, ge=1)
    max_concurrency: Int = Field(default=1, ge=1, le=100)
    order: Literal["oldest_first", "newest_first"] = "oldest_first"


class TemplateSave(Strict):
    project: str = Field(min_length=1, max_length=100, description="Project slug.")
    definition: dict[str, Any] = Field(
        description="One job template as the GitOps bundle writes it (name, description, owner, tags, "
        "params_schema, retries, timeout_s, tasks with their engine fields under config), without project.",
        examples=[{"name": "nightly", "tasks": [{"key": "land", "engine": "shell", "config": {"command": "true"}}]}],
    )
    expected_version: Int | None = Field(
        default=None, ge=0, description="Refuse (409) unless this is the latest version (0: the job must be new)."
    )


class TemplateSaved(BaseModel):
    template_id: uuid.UUID
    name: str
    version: int
    new_version: bool = Field(description="False when the definition was unchanged (details may have changed).")
    created: bool = Field(description="True when the job is new.")


class ScheduleSave(Strict):
    name: str = Field(min_length=1, max_length=200)
    environment: Literal["dev", "staging", "prod"] = "dev"
    cron: str = Field(min_length=1, max_length=200, description="Five-field cron or @hourly, @daily, ...")
    timezone: str = Field(default="UTC", max_length=100, description="IANA zone, e.g. Europe/Berlin.")
    params: dict[str, Any] = Field(default_factory=dict, description="Checked against the latest params schema.")
    enabled: StrictBool = True
    catchup: Literal["none", "latest", "all"] = "latest"
    catchup_limit: Int = Field(default=10, ge=1, le=1000)
    overlap: Literal["allow", "skip", "cancel_previous", "queue_one"] = "allow"
    jitter_s: Int = Field(default=0, ge=0, le=3600)
    misfire_grace_s: Int = Field(default=60, ge=1, le=86400)
    description: str = Field(default="", max_length=2000)


class BackfillInterval(BaseModel):
    position: int
    data_interval_start: datetime
    data_interval_end: datetime
    status: str
    run_id: uuid.UUID | None
    run_status: str | None
    error: str | None


class BackfillPublic(BaseModel):
    id: uuid.UUID
    project: str
    template_id: uuid.UUID
    template: str
    environment: str
    schedule_id: uuid.UUID | None
    range_start: datetime
    range_end: datetime
    step: str
    timezone: str
    params: dict[str, Any]
    template_version: int | None
    max_concurrency: int
    run_order: str
    total: int
    done: int = Field(description="Intervals whose run ended.")
    progress: dict[str, int] = Field(description="Intervals by run status (or pending, cancelled, failed).")
    status: str
    requested_by_name: str | None
    cancelled_at: datetime | None
    cancelled_by: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


class BackfillDetail(BackfillPublic):
    intervals: list[BackfillInterval]


class BackfillList(BaseModel):
    items: list[BackfillPublic]


# Templates ----------------------------------------------------------------------------------------------


@router.get("/templates", operation_id="listTemplates", response_model=TemplateList)
async def list_templates(
    conn: UserConnection,
    project: Annotated[str | None, Query(max_length=100)] = None,
    q: Annotated[str | None, Query(max_length=200, description="Text in the name or description.")] = None,
    include_archived: bool = False,
) -> dict[str, Any]:
    """Job templates with their latest version, last run, success rate and p50/p95 duration (30 days)."""
    items = await jobs.list_templates(conn, project=project, include_archived=include_archived, text=q)
    return {"items": items}


@router.get("/templates/{template_id}", operation_id="getTemplate", response_model=TemplateDetail)
async def get_template(template_id: uuid.UUID, conn: UserConnection) -> dict[str, Any]:
    """A template with every version (params schema, tasks) and its schedules."""
    return await jobs.get_template(conn, template_id=template_id)


@submit_route(
    router, "/templates/{template_id}/runs", operation_id="runTemplate", model=TemplateRunPublic,
    errors={"429": "A runs-per-day cap was reached."},
)  # fmt: skip
async def run_template(
    template_id: uuid.UUID, body: TemplateRunCreate, user: User, conn: UserConnection, response: Response
) -> dict[str, Any]:
    """Run a template version (operators); params are validated against its params JSON Schema (422 names the
    field as a JSON pointer such as `/params/source`)."""
    run, created = await jobs.run_template(
        conn,
        template_id=template_id,
        environment=body.environment,
        params=body.params,
        version=body.version,
        **submit_options(body, user),
    )
    return submitted(run, created, response)


@router.get("/templates/{template_id}/runs", operation_id="listTemplateRuns", response_model=RunPage)
async def list_template_runs(
    template_id: uuid.UUID,
    conn: UserConnection,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """Runs of one template, newest first."""
    page = await runs.list_runs(conn, filters=runs.RunFilters(template_id=template_id), cursor=cursor, limit=limit)
    return page_reply(page)


@submit_route(
    router, "/templates", operation_id="saveTemplate", model=TemplateSaved,
    existing="An existing job: saved as its next version, or unchanged.",
    errors={"409": "expected_version is not the job's latest version."},
)  # fmt: skip
async def save_template(body: TemplateSave, user: User, conn: UserConnection, response: Response) -> dict[str, Any]:
    """Create a job or save its next immutable version (admins), checked as the bundle checks it; 422 names the
    field (`tasks[0].config.command`). The same as the job editor's Save and `lakehouse jobs save`."""
    text = job_editing.definition_text(body.definition)
    project_id = await runs.resolve_project(conn, body.project)
    saved = await job_editing.save_template(
        conn, project_id=project_id, project=body.project, text=text, expected_version=body.expected_version,
        by=user.email,
    )  # fmt: skip
    return submitted(saved, saved["created"], response)


async def _set_archived(conn: AsyncConnection, template_id: uuid.UUID, archived: bool, by: str) -> dict[str, Any]:
    await job_editing.set_archived(conn, template_id=template_id, archived=archived, by=by)
    return await jobs.get_template(conn, template_id=template_id)


@router.post("/templates/{template_id}/archive", operation_id="archiveTemplate", response_model=TemplateDetail)
async def archive_template(template_id: uuid.UUID, user: User, conn: UserConnection) -> dict[str, Any]:
    """Archive a job (admins): it no longer runs and its schedules are disabled; audited."""
    return await _set_archived(conn, template_id, True, user.email)


@router.post("/templates/{template_id}/restore", operation_id="restoreTemplate", response_model=TemplateDetail)
async def restore_template(template_id: uuid.UUID, user: User, conn: UserConnection) -> dict[str, Any]:
    """Restore an archived job (admins); its schedules stay disabled until enabled again."""
    return await _set_archived(conn, template_id, False, user.email)


# Schedules ----------------------------------------------------------------------------------------------


async def _save_schedule(
    conn: AsyncConnection, *, template_id: uuid.UUID | None, schedule_id: uuid.UUID | None, body: ScheduleSave, by: str
) -> dict[str, Any]:
    draft = job_editing.ScheduleDraft(**body.model_dump())
    if template_id is None:
        assert schedule_id is not None
        current = await schedules.get_schedule(conn, schedule_id=schedule_id, now=datetime.now(UTC), upcoming=0)
        template_id = current["template_id"]
    template = await jobs.get_template(conn, template_id=template_id)
    saved = await job_editing.save_schedule(
        conn, template_id=template_id, template=template["name"], project=template["project"],
        schedule_id=schedule_id, draft=draft, by=by,
    )  # fmt: skip
    return await schedules.get_schedule(conn, schedule_id=saved, now=datetime.now(UTC))


@router.post(
    "/templates/{template_id}/schedules",
    operation_id="createSchedule",
    response_model=ScheduleDetail,
    status_code=201,
    responses={"409": {"description": "The job already has a schedule of this name."}},
)
async def create_schedule(
    template_id: uuid.UUID, body: ScheduleSave, user: User, conn: UserConnection
) -> dict[str, Any]:
    """Add a schedule to a job (admins): cron, zone and policies checked, params against the latest params schema."""
    return await _save_schedule(conn, template_id=template_id, schedule_id=None, body=body, by=user.email)


@router.put("/schedules/{schedule_id}", operation_id="updateSchedule", response_model=ScheduleDetail)
async def update_schedule(
    schedule_id: uuid.UUID, body: ScheduleSave, user: User, conn: UserConnection
) -> dict[str, Any]:
    """Change a schedule (admins); its upcoming fires are planned again; audited."""
    return await _save_schedule(conn, template_id=None, schedule_id=schedule_id, body=body, by=user.email)


def _schedule_switch_route(
    action: str, operation_id: str, switch: Callable[..., Awaitable[None]], description: str
) -> None:
    """POST /schedules/{schedule_id}/<action> (the route ``<action>_schedule``): ``switch(conn, schedule_id=...,
    by=...)``, answered with the schedule as it is now."""

    async def route(schedule_id: uuid.UUID, user: User, conn: UserConnection) -> dict[str, Any]:
        await switch(conn, schedule_id=schedule_id, by=user.email)
        return await schedules.get_schedule(conn, schedule_id=schedule_id, now=datetime.now(UTC))

    router.post(
        f"/schedules/{{schedule_id}}/{action}", operation_id=operation_id, response_model=ScheduleDetail,
        name=f"{action}_schedule", description=description,
    )(route)  # fmt: skip


_schedule_switch_route(
    "enable", "enableSchedule", partial(job_editing.set_schedule_enabled, enabled=True), "Enable a schedule (admins)."
)
_schedule_switch_route(
    "disable", "disableSchedule", partial(job_editing.set_schedule_enabled, enabled=False),
    'Disable a schedule (admins): it fires nothing, not even on "fire now", until enabled.',
)  # fmt: skip


@router.get("/schedules", operation_id="listSchedules", response_model=ScheduleList)
async def list_schedules(conn: UserConnection, template_id: uuid.UUID | None = None) -> dict[str, Any]:
    """Schedules with their policies and next fire."""
    return {"items": await schedules.list_schedules(conn, template_id=template_id)}


@router.get("/schedules/{schedule_id}", operation_id="getSchedule", response_model=ScheduleDetail)
async def get_schedule(schedule_id: uuid.UUID, conn: UserConnection) -> dict[str, Any]:
    """A schedule with its next 10 fire times and its latest fires (fired, skipped, missed, with reasons)."""
    return await schedules.get_schedule(conn, schedule_id=schedule_id, now=datetime.now(UTC))


_schedule_switch_route(
    "pause", "pauseSchedule", partial(schedules.set_paused, paused=True),
    "Pause a schedule (operators): it fires nothing until resumed.",
)  # fmt: skip
_schedule_switch_route(
    "resume", "resumeSchedule", partial(schedules.set_paused, paused=False),
    "Resume a schedule (operators): it fires again from its next fire time after now (no catch-up).",
)  # fmt: skip


@router.post("/schedules/{schedule_id}/fire", operation_id="fireSchedule", response_model=FireResult, status_code=201)
async def fire_schedule(schedule_id: uuid.UUID, user: User, conn: UserConnection) -> dict[str, Any]:
    """Fire a schedule now (operators), whatever its overlap policy; the run's interval ends now."""
    return await schedules.fire_now(conn, schedule_id=schedule_id, now=datetime.now(UTC), by=user.email)


# Backfills ----------------------------------------------------------------------------------------------


@router.post("/backfills", operation_id="createBackfill", response_model=BackfillDetail, status_code=201)
async def create_backfill(body: BackfillCreate, user: User, conn: UserConnection) -> dict[str, Any]:
    """One run per interval of a date range (operators), `max_concurrency` at a time, oldest or newest first."""
    template_id = await jobs.resolve_template(conn, body.template)
    schedule_id = await schedules.resolve_schedule(conn, body.schedule) if body.schedule else None
    return await backfills.create_backfill(
        conn,
        template_id=template_id,
        schedule_id=schedule_id,
        run_order=body.order,
        requested_by=user.user_id,
        requested_by_name=user.email,
        **body.model_dump(exclude={"template", "schedule", "order"}),  # the rest as the service names them
    )


@router.get("/backfills", operation_id="listBackfills", response_model=BackfillList)
async def list_backfills(conn: UserConnection, template_id: uuid.UUID | None = None) -> dict[str, Any]:
    """Backfills newest first, with progress."""
    return {"items": await backfills.list_backfills(conn, template_id=template_id)}


@router.get("/backfills/{backfill_id}", operation_id="getBackfill", response_model=BackfillDetail)
async def get_backfill(backfill_id: uuid.UUID, conn: UserConnection) -> dict[str, Any]:
    """A backfill with every interval and its run."""
    return await backfills.get_backfill(conn, backfill_id=backfill_id)


@router.post("/backfills/{backfill_id}/cancel", operation_id="cancelBackfill", response_model=BackfillDetail)
async def cancel_backfill(backfill_id: uuid.UUID, user: User, conn: UserConnection) -> dict[str, Any]:
    """Cancel a backfill as a group (operators): pending intervals never run, active runs are cancelled."""
    return await backfills.cancel_backfill(conn, backfill_id=backfill_id, by=user.email)
