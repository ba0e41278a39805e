"""Promotion gates for clients: the pipeline (deployed versions), promotion requests and their decisions,
rollbacks and external check reports (CI's pr-gate). Roles and approvers are checked in SQL."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from psycopg import AsyncConnection
from pydantic import BaseModel, Field

from control_room.api.deps import User, UserConnection
from control_room.api.models import Int, Strict
from control_room.services import jobs, promotions
from control_room.services.pagination import page_reply
from control_room.services.runs import resolve_project

router = APIRouter(tags=["promotions"])

Environment = Literal["dev", "staging", "prod"]
MAX_VERSION = 2_147_483_647  # versions are Postgres integers


# Wire models ------------------------------------------------------------------------------------------


class EvidenceLink(BaseModel):
    kind: str = Field(description="run, incident, version or url.")
    id: str | None = Field(description="The run's, incident's or version's id, or the URL.")
    label: str


class PromotionCheck(BaseModel):
    name: str = Field(description="successful_runs, dbt_tests, critical_alerts, contract, check:<name> or check_run.")
    label: str
    passed: bool
    summary: str
    evidence: list[EvidenceLink]


class PromotionDecision(BaseModel):
    id: int
    decision: str
    actor: str
    actor_id: uuid.UUID | None
    comment: str
    evidence_epoch: int
    created_at: datetime
    in_force: bool = Field(description="An approval given under the current evidence (it counts).")


class PromotionRequestPublic(BaseModel):
    id: uuid.UUID
    project_id: uuid.UUID
    project: str
    template_id: uuid.UUID
    job: str
    version: int
    from_environment: str
    to_environment: str
    kind: Literal["promote", "rollback"] = Field(
        description="promote: move the version into to_environment; rollback: back to the version deployed "
        "there before (no checks; the gate's rollback_approvals)."
    )
    gate_name: str
    gate: dict[str, Any] = Field(description="The gate as it was when the request opened.")
    requested_by: str
    requested_by_id: uuid.UUID | None
    comment: str
    status: str = Field(description="pending, promoted, rejected, cancelled or superseded.")
    checks: list[PromotionCheck]
    checks_passed: bool
    evidence_epoch: int = Field(description="Changes of the evidence so far; approvals of earlier epochs expired.")
    approvals: int = Field(description="Approvals in force.")
    required_approvals: int
    evaluated_at: datetime | None
    decided_at: datetime | None
    decided_by: str | None
    outcome: str | None
    created_at: datetime
    updated_at: datetime
    check_run_id: uuid.UUID | None = Field(
        default=None, description="The run of the gate's check tasks made for the current evidence (check_run)."
    )
    check_run_refusal: str | None = Field(default=None, description="Why no check run could be submitted.")


class PromotionRequestDetail(PromotionRequestPublic):
    decisions: list[PromotionDecision]


class PromotionRequestPage(BaseModel):
    items: list[PromotionRequestPublic]
    next_cursor: str | None


class PromotionCreate(Strict):
    job: str = Field(min_length=1, max_length=200, description="Template id, name or project/name.")
    version: Int = Field(ge=1, le=MAX_VERSION)
    to_environment: Literal["staging", "prod"]
    comment: str = Field(default="", max_length=2000)


class DecisionCreate(Strict):
    comment: str = Field(default="", max_length=2000, description="Required to reject.")


class PipelineEnvironment(BaseModel):
    gate: str | None = Field(description="The gate leading into this environment (none: any version runs).")
    gated: bool
    runs: int | None = Field(description="The version a run there uses when none is asked for.")
    deployed: int | None
    deployed_at: datetime | None
    request_id: uuid.UUID | None = Field(description="The pending promotion request into this environment.")
    request_version: int | None
    request_kind: Literal["promote", "rollback"] | None = Field(description="rollback: back to request_version.")
    request_checks_passed: bool | None
    request_approvals: int | None
    request_required_approvals: int | None


class PipelineJob(BaseModel):
    template_id: uuid.UUID
    job: str
    latest: int | None
    environments: dict[str, PipelineEnvironment]


class Pipeline(BaseModel):
    items: list[PipelineJob]


class DeploymentPublic(BaseModel):
    id: int
    environment: str
    version: int
    previous_version: int | None
    action: str = Field(description="initial, promote or rollback.")
    promotion_id: uuid.UUID | None
    actor: str
    comment: str
    deployed_at: datetime


class DeploymentList(BaseModel):
    items: list[DeploymentPublic]


class RollbackCreate(Strict):
    environment: Environment
    comment: str = Field(default="", max_length=2000)


class RollbackResult(BaseModel):
    version: int = Field(description="The version rolled back to (or asked for).")
    previous_version: int = Field(description="The version deployed when the rollback was asked.")
    status: Literal["rolled_back", "pending", "promoted"] = Field(
        description="rolled_back: done at once; pending: a rollback request awaits the gate's rollback approvals."
    )
    request_id: uuid.UUID | None = Field(description="The rollback request, when the gate asks for approvals.")


class CheckReportCreate(Strict):
    name: str = Field(min_length=1, max_length=100, description="The check the gate requires, e.g. pr-gate.")
    status: Literal["passed", "failed", "pending"]
    url: str | None = Field(default=None, max_length=2000, description="Link to the check's result.")
    summary: str = Field(default="", max_length=2000)


class CheckReportResult(BaseModel):
    id: int


# Routes ---------------------------------------------------------------------------------------------------


@router.get("/promotions/pipeline", operation_id="getPromotionPipeline", response_model=Pipeline)
async def get_pipeline(conn: UserConnection, project: Annotated[str, Query(max_length=100)]) -> dict[str, Any]:
    """Each job of a project with the version each environment runs and the pending request into it."""
    project_id = await resolve_project(conn, project)
    return {"items": await promotions.pipeline(conn, project_id=project_id)}


@router.get("/promotions", operation_id="listPromotions", response_model=PromotionRequestPage)
async def list_promotions(
    conn: UserConnection,
    project: Annotated[str | None, Query(max_length=100)] = None,
    job: Annotated[str | None, Query(max_length=200, description="Template id, name or project/name.")] = None,
    status: Annotated[str | None, Query(max_length=20)] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """Promotion requests newest first (keyset pages)."""
    project_id = await resolve_project(conn, project) if project else None
    template_id = await jobs.resolve_template(conn, job, project=project) if job else None
    page = await promotions.requests_page(
        conn, project_id=project_id, template_id=template_id, status=status, cursor=cursor, limit=limit
    )
    return page_reply(page)


@router.post("/promotions", operation_id="requestPromotion", response_model=PromotionRequestDetail, status_code=201)
async def request_promotion(body: PromotionCreate, user: User, conn: UserConnection) -> dict[str, Any]:
    """Ask to move a job's version into staging or prod (operators); its checks are evaluated at once, and
    it is promoted as soon as they pass and the gate's approvers have approved."""
    template_id = await jobs.resolve_template(conn, body.job)
    return await promotions.request_promotion(
        conn, template_id=template_id, version=body.version, to_environment=body.to_environment,
        comment=body.comment, user_id=user.user_id,
    )  # fmt: skip


@router.get("/promotions/{request_id}", operation_id="getPromotion", response_model=PromotionRequestDetail)
async def get_promotion(request_id: uuid.UUID, conn: UserConnection) -> dict[str, Any]:
    """A request with its checks, their evidence links, and every approval, rejection and cancellation."""
    return await promotions.get_request(conn, request_id=request_id)


async def _decide(conn: AsyncConnection, request_id: uuid.UUID, decision: str, body: DecisionCreate) -> dict[str, Any]:
    await promotions.decide(conn, request_id=request_id, decision=decision, comment=body.comment)
    return await promotions.get_request(conn, request_id=request_id)


@router.post("/promotions/{request_id}/approve", operation_id="approvePromotion", response_model=PromotionRequestDetail)
async def approve_promotion(request_id: uuid.UUID, body: DecisionCreate, conn: UserConnection) -> dict[str, Any]:
    """Approve (the gate's approvers, never the requester; viewers get 403). A decided request answers 409."""
    return await _decide(conn, request_id, "approve", body)


@router.post("/promotions/{request_id}/reject", operation_id="rejectPromotion", response_model=PromotionRequestDetail)
async def reject_promotion(request_id: uuid.UUID, body: DecisionCreate, conn: UserConnection) -> dict[str, Any]:
    """Reject with a comment (the gate's approvers): the request ends; a new request starts over."""
    return await _decide(conn, request_id, "reject", body)


@router.post("/promotions/{request_id}/cancel", operation_id="cancelPromotion", response_model=PromotionRequestDetail)
async def cancel_promotion(request_id: uuid.UUID, body: DecisionCreate, conn: UserConnection) -> dict[str, Any]:
    """Cancel a pending request (its requester or a project admin)."""
    return await _decide(conn, request_id, "cancel", body)


@router.get("/templates/{template_id}/deployments", operation_id="listDeployments", response_model=DeploymentList)
async def list_deployments(
    template_id: uuid.UUID, conn: UserConnection, environment: Environment | None = None
) -> dict[str, Any]:
    """A job's deployment history (initial, promotions, rollbacks), newest first."""
    return {"items": await promotions.deployments(conn, template_id=template_id, environment=environment)}


@router.post("/templates/{template_id}/rollback", operation_id="rollbackDeployment", response_model=RollbackResult)
async def rollback_deployment(
    template_id: uuid.UUID, body: RollbackCreate, user: User, conn: UserConnection
) -> dict[str, Any]:
    """Deploy the version that ran before the current one in an environment (admins; audited; no checks). When
    the gate into it sets rollback_approvals, this opens a rollback request instead (operators; four eyes)."""
    return await promotions.rollback(conn, template_id=template_id, user_id=user.user_id, **body.model_dump())


@router.post(
    "/templates/{template_id}/versions/{version}/checks",
    operation_id="reportVersionCheck",
    response_model=CheckReportResult,
    status_code=201,
)
async def report_version_check(
    template_id: uuid.UUID,
    version: Annotated[int, Path(ge=1, le=MAX_VERSION)],
    body: CheckReportCreate,
    conn: UserConnection,
) -> dict[str, Any]:
    """Report an external check's result for a version (CI, operators); pending requests re-evaluate."""
    report_id = await promotions.report_check(
        conn, template_id=template_id, version=version, name=body.name, status=body.status, url=body.url,
        summary=body.summary,
    )  # fmt: skip
    return {"id": report_id}
