"""Wire models of the contract API (XCreate / XPublic naming); the YAML contract is exported from these."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool

from control_room.services.artifacts import MAX_ARTIFACT_BYTES
from control_room.specs.tasks import RunSpec


def _not_a_bool(value: Any) -> Any:
    # JSON true/false are not numbers; pydantic's lax mode would read them as 1/0.
    if isinstance(value, bool):
        raise ValueError("must be a number, not true/false")
    return value


def _iso_datetime(value: Any) -> Any:
    # Only ISO 8601 text: pydantic would otherwise read "0.5" as a Unix timestamp.
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ValueError("must be an ISO 8601 date-time such as 2026-11-26T08:00:00Z") from exc
    return value


Int = Annotated[int, BeforeValidator(_not_a_bool)]
IsoDatetime = Annotated[datetime, BeforeValidator(_iso_datetime)]
Number = Annotated[float, BeforeValidator(_not_a_bool)]
Outcome = Literal["succeeded", "failed", "cancelled", "timed_out"]
RunStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TaskStatus = Literal[
    "pending", "queued", "claimed", "running", "succeeded", "failed", "cancelled", "timed_out", "lost", "skipped"
]
Level = Literal["debug", "info", "warning", "error"]


class Strict(BaseModel):
    """Request bodies refuse unknown fields, so a typo is an error rather than silently ignored."""

    model_config = ConfigDict(extra="forbid")


class ProblemItem(BaseModel):
    """One problem of a request: the field (dotted and as a JSON pointer into the body) and why."""

    field: str | None = None
    pointer: str | None = None
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details; ``field`` names the offending input when there is one."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    field: str | None = Field(default=None, description="The offending input, e.g. spec.tasks[0].threads.")
    pointer: str | None = Field(
        default=None, description="JSON pointer (RFC 6901) of the offending field in the body: /spec/tasks/0/threads."
    )
    errors: list[ProblemItem] | None = Field(default=None, description="Every problem found.")


# Executors -----------------------------------------------------------------------------------------


class ExecutorRegister(Strict):
    labels: list[str] = Field(default_factory=list, max_length=64)
    engines: list[str] = Field(default_factory=list, max_length=32)
    max_concurrency: Int = Field(default=1, ge=1, le=10000)
    version: str = Field(default="", max_length=64)
    hostname: str = Field(default="", max_length=255)
    metadata: dict[str, Any] = Field(default_factory=dict)


class ExecutorPublic(BaseModel):
    id: uuid.UUID
    name: str
    pool: str
    labels: list[str]
    engines: list[str]
    max_concurrency: int
    status: str
    lease_seconds: int = Field(description="Lease length granted by claims.")
    heartbeat_interval_s: float = Field(description="Send task heartbeats this often (a third of the lease).")
    claim_wait_max_s: float = Field(description="Longest wait_s the server honours on claims.")


class ExecutorHeartbeat(Strict):
    running_task_ids: list[uuid.UUID] = Field(default_factory=list, max_length=10000)


class ExecutorHeartbeatReply(BaseModel):
    drain: StrictBool = Field(description="Stop claiming; finish running tasks.")
    cancel_task_ids: list[uuid.UUID] = Field(description="Running tasks whose cancel was requested.")
    lost_task_ids: list[uuid.UUID] = Field(description="Tasks reported running that this executor no longer holds.")
    released_task_ids: list[uuid.UUID] = Field(
        default_factory=list,
        description="Tasks leased to this executor that it did not name (it lost track of them): handed back to "
        "the queue without counting an attempt.",
    )
    server_time: datetime


# Claims and leases -----------------------------------------------------------------------------------


class ClaimRequest(Strict):
    max_tasks: Int = Field(default=1, ge=1, le=100)
    engines: list[str] | None = Field(default=None, max_length=32, description="Default: registered engines.")
    labels: list[str] | None = Field(default=None, max_length=64, description="Default: registered labels.")
    wait_s: Number = Field(default=0, ge=0, le=60, description="Long-poll: wait up to this long for work.")
    claim_id: uuid.UUID | None = Field(
        default=None,
        description="A fresh id per claim; a retry with the same id (its reply was lost) returns the same tasks and "
        "leases instead of new ones.",
    )


class TaskAssignment(BaseModel):
    task_id: uuid.UUID
    run_id: uuid.UUID
    task_key: str
    engine: str
    spec: dict[str, Any]
    params: dict[str, Any]
    attempt: int
    max_attempts: int
    lease_token: uuid.UUID
    lease_expires_at: datetime
    heartbeat_interval_s: float
    timeout_s: int | None
    limits: dict[str, int] = Field(description="Caps that apply (max_runtime_s, scanned_bytes_per_query, ...).")
    project_id: uuid.UUID
    project: str
    environment: str


class ClaimReply(BaseModel):
    tasks: list[TaskAssignment]


class LeaseRef(Strict):
    lease_token: uuid.UUID


class ReleaseRequest(Strict):
    lease_token: uuid.UUID
    reason: str | None = Field(default=None, max_length=1000)


class ReleaseReply(BaseModel):
    task_status: Literal["queued", "cancelled"]


class TaskHeartbeatReply(BaseModel):
    lease_expires_at: datetime
    cancel_requested: bool


class LeaseItem(Strict):
    task_id: uuid.UUID
    lease_token: uuid.UUID


class LeaseBatch(Strict):
    items: list[LeaseItem] = Field(min_length=1, max_length=1000)


class LeaseBatchItem(BaseModel):
    task_id: uuid.UUID
    ok: bool
    lease_expires_at: datetime | None
    cancel_requested: bool
    error: str | None


class LeaseBatchReply(BaseModel):
    items: list[LeaseBatchItem]


class EventCreate(Strict):
    seq: Int = Field(ge=0, le=2_147_483_647, description="Per-attempt sequence number; re-sends are deduplicated.")
    ts: datetime | None = None
    type: str = Field(default="log", pattern=r"^[a-z][a-z0-9_.]{0,60}$")
    level: Level = "info"
    message: str = Field(default="", max_length=65536)
    data: dict[str, Any] = Field(default_factory=dict)


class EventBatch(Strict):
    lease_token: uuid.UUID
    events: list[EventCreate] = Field(max_length=1000)


class EventBatchReply(BaseModel):
    accepted: int
    duplicates: int


class FinalizeRequest(Strict):
    lease_token: uuid.UUID
    outcome: Outcome
    result: dict[str, Any] | None = None
    error: str | None = Field(default=None, max_length=65536)


class FinalizeReply(BaseModel):
    task_status: TaskStatus
    run_status: RunStatus
    replayed: bool = Field(description="True when this finalize repeated an already recorded one.")


class FinalizeItem(FinalizeRequest):
    task_id: uuid.UUID


class FinalizeBatch(Strict):
    items: list[FinalizeItem] = Field(min_length=1, max_length=1000)


class FinalizeBatchItem(BaseModel):
    task_id: uuid.UUID
    ok: bool
    status: int = Field(description="HTTP status this item would have had on its own.")
    task_status: TaskStatus | None
    run_status: RunStatus | None
    replayed: bool
    error: str | None


class FinalizeBatchReply(BaseModel):
    items: list[FinalizeBatchItem]


# Artifacts -------------------------------------------------------------------------------------------


class ArtifactInitiate(Strict):
    lease_token: uuid.UUID
    name: str = Field(min_length=1, max_length=512)
    size_bytes: Int = Field(ge=0, le=MAX_ARTIFACT_BYTES)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    content_type: str = Field(default="application/octet-stream", max_length=255)
    metadata: dict[str, Any] = Field(default_factory=dict)


class ArtifactFetch(Strict):
    lease_token: uuid.UUID
    task_key: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,100}$", description="The task that produced it.")
    name: str = Field(min_length=1, max_length=512)
    run_id: uuid.UUID | None = Field(default=None, description="Another run of the same project (default: this run).")


class ArtifactPublic(BaseModel):
    id: uuid.UUID
    run_id: uuid.UUID
    task_id: uuid.UUID | None
    task_key: str | None
    attempt: int | None
    name: str
    uri: str = Field(
        description="Where the bytes are stored (s3://…, file://…) for project admins; an opaque `artifact:<id>` for "
        "other members. Download with GET /artifacts/{id}/content either way."
    )
    size_bytes: int
    sha256: str
    content_type: str
    metadata: dict[str, Any]
    created_at: datetime


class UploadTicket(BaseModel):
    upload_id: uuid.UUID | None = Field(description="Null when an identical artifact is already stored.")
    upload_url: str | None = Field(description="PUT the bytes here with the given headers.")
    method: str | None
    headers: dict[str, str]
    expires_at: datetime | None
    artifact: ArtifactPublic | None = Field(description="Set when nothing needs uploading.")


class ArtifactList(BaseModel):
    items: list[ArtifactPublic]


# Runs ------------------------------------------------------------------------------------------------


class RunCreate(Strict):
    project: str = Field(min_length=1, max_length=100, description="Project id or slug.")
    environment: Literal["dev", "staging", "prod"] = "dev"
    spec: RunSpec
    params: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)
    priority: Int = Field(default=0, ge=-1000, le=1000)
    tags: list[str] = Field(default_factory=list, max_length=32)


class RunRetry(Strict):
    mode: Literal["all", "failed", "from_task"] = Field(
        default="all",
        description="all: run every task again. failed: reuse the outcomes and artifacts of the tasks that "
        "succeeded; run the failed, cancelled and downstream ones. from_task: run `from_task` and its downstream "
        "tasks, reusing the others' outcomes.",
    )
    from_task: str | None = Field(default=None, min_length=1, max_length=100, description="Key of a task (from_task).")


class RunPublic(BaseModel):
    id: uuid.UUID
    name: str
    project_id: uuid.UUID
    project: str
    environment: str
    status: RunStatus
    priority: int
    trigger: str
    requested_by: uuid.UUID | None
    requested_by_name: str | None
    tags: list[str]
    engines: list[str]
    task_count: int
    params: dict[str, Any]
    retry_of: uuid.UUID | None
    cancel_requested: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    duration_s: float | None
    warnings: list[str] = Field(
        default_factory=list,
        description="Why the run may wait, found at submit: e.g. no executor of a task's pool that offers its engine "
        "is online or was seen recently.",
    )


class AttemptPublic(BaseModel):
    attempt: int
    executor_id: uuid.UUID | None
    executor_name: str | None
    claimed_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    outcome: str | None
    error: str | None


class TaskPublic(BaseModel):
    id: uuid.UUID
    key: str
    engine: str
    status: TaskStatus
    attempt: int
    max_attempts: int
    depends_on: list[str]
    pool: str | None
    required_labels: list[str]
    timeout_s: int | None
    executor_id: uuid.UUID | None
    executor_name: str | None
    cancel_requested: bool
    queued_at: datetime | None
    claimed_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    result: dict[str, Any] | None
    error: str | None
    routing_problem: str | None = Field(
        default=None,
        description='Why no executor can take the task as routed, e.g. "no executor in pool etl offers engine spark".',
    )
    attempts: list[AttemptPublic]
    reused_from_task: uuid.UUID | None = Field(
        default=None, description="Not run: a re-run reused the outcome (and artifacts) of this task of an earlier run."
    )
    reused_from_run: uuid.UUID | None = Field(default=None, description="The run of `reused_from_task`.")
    queue_reason: str | None = Field(
        default=None,
        description="Why a pending or queued task waits, from the control plane: upstream tasks, retry backoff, no "
        "live (or only draining) executor of its pool offering its engine, the pool's slots all busy, or a cap.",
    )


class RunDetail(RunPublic):
    spec: dict[str, Any]
    error: str | None = Field(
        description="Why a failed or cancelled run ended: the first unsuccessful task and its error, and how many "
        "other tasks did not succeed."
    )
    tasks: list[TaskPublic]
    reruns: list[uuid.UUID] = Field(default_factory=list, description="Runs that re-ran this one (their retry_of).")


class RunPage(BaseModel):
    items: list[RunPublic]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page; null at the end.")


class EventPublic(BaseModel):
    id: int
    run_id: uuid.UUID
    task_id: uuid.UUID | None
    task_key: str | None
    attempt: int | None
    seq: int | None
    ts: datetime
    type: str
    level: Level
    message: str
    data: dict[str, Any]


class EventPage(BaseModel):
    items: list[EventPublic]
    next_after_id: int | None = Field(description="Highest id returned: pass as after_id to continue forward.")
    next_before_id: int | None = Field(description="Lowest id returned: pass as before_id for older events.")
