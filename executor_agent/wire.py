"""The replies of the executor contract the agent reads (a subset of contracts/lakehouse-executor.openapi.yaml).

Field names and types follow the contract's schemas; tests/agent/test_wire_contract.py fails when a field
read here is missing from the contract or has another type. Unknown fields are ignored, so the control
plane may add fields without breaking deployed agents.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class WireModel(BaseModel):
    """A reply body: tolerant of fields added later by the control plane."""

    model_config = ConfigDict(extra="ignore")


class HealthPublic(WireModel):
    """``getHealth``: the control plane is up and migrated."""

    status: str = "ok"
    schema_version: str


class ExecutorPublic(WireModel):
    """``registerExecutor``: who this token is, and the timing to use."""

    id: uuid.UUID
    name: str
    pool: str
    labels: list[str]
    engines: list[str]
    max_concurrency: int
    status: str
    lease_seconds: int
    heartbeat_interval_s: float
    claim_wait_max_s: float


class ExecutorHeartbeatReply(WireModel):
    """``executorHeartbeat``: drain and cancel signals, and tasks this executor no longer holds."""

    drain: bool
    cancel_task_ids: list[uuid.UUID]
    lost_task_ids: list[uuid.UUID]
    server_time: datetime


class TaskAssignment(WireModel):
    """One claimed task with its lease (``claimTasks``)."""

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
    limits: dict[str, int] = Field(default_factory=dict)
    project_id: uuid.UUID
    project: str
    environment: str


class ClaimReply(WireModel):
    tasks: list[TaskAssignment]


class TaskHeartbeatReply(WireModel):
    """``heartbeatTask``: the new expiry, and whether a cancel was requested."""

    lease_expires_at: datetime
    cancel_requested: bool


class LeaseBatchItem(WireModel):
    """One item of ``heartbeatTasks``: ``ok`` false means the lease is lost."""

    task_id: uuid.UUID
    ok: bool
    lease_expires_at: datetime | None
    cancel_requested: bool
    error: str | None


class LeaseBatchReply(WireModel):
    items: list[LeaseBatchItem]


class EventBatchReply(WireModel):
    """``appendEvents``: how many were new, how many were re-sends."""

    accepted: int
    duplicates: int


TaskStatus = Literal[
    "pending", "queued", "claimed", "running", "succeeded", "failed", "cancelled", "timed_out", "lost", "skipped"
]


class FinalizeReply(WireModel):
    """``finalizeTask``: ``replayed`` is true when the same outcome had already been recorded."""

    task_status: TaskStatus
    run_status: str
    replayed: bool


class FinalizeBatchItem(WireModel):
    """One item of ``finalizeTasks``; ``status`` is the HTTP status the item would have had alone."""

    task_id: uuid.UUID
    ok: bool
    status: int
    task_status: TaskStatus | None
    run_status: str | None
    replayed: bool
    error: str | None


class FinalizeBatchReply(WireModel):
    items: list[FinalizeBatchItem]


class ReleaseReply(WireModel):
    """``releaseTask``: queued again, or cancelled when a cancel had been requested."""

    task_status: Literal["queued", "cancelled"]


class ArtifactPublic(WireModel):
    """A registered artifact (``completeArtifact``)."""

    id: uuid.UUID
    run_id: uuid.UUID
    task_id: uuid.UUID | None
    attempt: int | None
    name: str
    uri: str
    size_bytes: int
    sha256: str
    content_type: str


class UploadTicket(WireModel):
    """``initiateArtifact``: where to send the bytes, or the artifact when identical bytes are stored."""

    upload_id: uuid.UUID | None
    upload_url: str | None
    method: str | None
    headers: dict[str, str]
    expires_at: datetime | None
    artifact: ArtifactPublic | None
