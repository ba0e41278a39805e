"""Governance for clients: the routing matrix (read, plan, apply), the routing simulator, caps with live usage
(org and project admins edit), and GitOps drift against the last deployed bundle with an export as a zip."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field, StrictBool

from control_room.api.artifact_bytes import binary_content
from control_room.api.deps import Pool, User, UserConnection
from control_room.api.models import Int, Strict
from control_room.bundle.models import CapKind, CapScope
from control_room.db.connection import connect, database_url
from control_room.services import caps, governance, routing
from control_room.services.auth import scoped
from control_room.services.governance import resolve_org

router = APIRouter(tags=["governance"])

OrgQuery = Query(description="The org's slug or id (optional when you belong to one org only).")


# Wire models ------------------------------------------------------------------------------------------


class RoutingRuleFields(Strict):
    """One rule of the matrix; ``id`` names a live rule to keep (omit it to create one)."""

    id: uuid.UUID | None = None
    name: str = Field(min_length=1, max_length=200)
    position: Int = Field(default=0, description="Kept where the order allows; 0 lets the server place the rule.")
    project: str = Field(
        default="",
        description='Project slug; empty matches any project; "#<project id>" for a project you cannot see.',
    )
    environment: Literal["", "dev", "staging", "prod"] = ""
    engine: str = ""
    labels: list[str] = Field(default_factory=list, description="The task must carry all of these labels.")
    tags: list[str] = Field(default_factory=list, description="The run must carry all of these tags.")
    pool: str = Field(default=routing.DEFAULT_POOL, pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    required_labels: list[str] = Field(default_factory=list)
    allow_pool_override: StrictBool = False
    owner: str = ""
    escalation: list[str] = Field(default_factory=list)
    enabled: StrictBool = True


class RoutingRulePublic(RoutingRuleFields):
    id: uuid.UUID | None = None


class RoutingWarning(BaseModel):
    rule: int = Field(description="Index of the rule in the list; -1 for the matrix as a whole.")
    name: str
    kind: str = Field(description="invalid | shadowed | no_executor | owner | no_catch_all")
    message: str
    field: str


class RoutingMatrix(BaseModel):
    org: str
    fingerprint: str = Field(description="Send it back with an apply: a matrix changed meanwhile is refused (409).")
    rules: list[RoutingRulePublic]
    warnings: list[RoutingWarning]


class RoutingDraft(Strict):
    org: str | None = None
    fingerprint: str | None = Field(default=None, description="From GET /routing/rules; omit to skip the check.")
    rules: list[RoutingRuleFields] = Field(description="Every rule, in priority order.")


class RerouteMove(BaseModel):
    from_pool: str
    to_pool: str
    tasks: int


class RoutingPlan(BaseModel):
    changes: list[str] = Field(description="One line per rule: + created, ~ updated (fields), - deleted.")
    warnings: list[RoutingWarning]
    reroute: list[RerouteMove] = Field(description="Queued tasks the apply would move to another pool.")


class RoutingApplied(BaseModel):
    created: int
    updated: int
    deleted: int
    fingerprint: str


class RuleVerdictPublic(BaseModel):
    name: str
    matched: bool
    reasons: list[str]


class RefusalPublic(BaseModel):
    at: datetime = Field(description="When it happened (a hold: when the task started waiting).")
    layer: str = Field(
        description="submit (run refused), claim (task held in the queue), agent (attempt stopped) or engine "
        "(query refused)."
    )
    run_id: uuid.UUID | None = Field(description="Null for a refused submit: it created no run.")
    run_name: str = Field(description="The run's name (a refused submit: the name the run would have had).")
    task_key: str
    attempt: int | None
    message: str
    ended_at: datetime | None = Field(
        default=None, description="A hold: when the task was claimed at last (null while it still waits)."
    )
    principal: str = Field(default="", description="Who submitted the run (or tried to).")
    project: str = ""
    environment: str = ""
    repeats: int = Field(default=1, description="The same submit refused again within 10 minutes counts here.")


class RefusalPage(BaseModel):
    items: list[RefusalPublic]
    next_cursor: str | None = Field(description="Pass as cursor for the next (older) page; null on the last.")


class CapPublic(BaseModel):
    id: uuid.UUID
    name: str
    scope: str
    target: str
    project: str
    environment: str
    pool: str
    engine: str
    kind: str
    limit: int
    enabled: bool
    layer: str = Field(description="Where it is enforced: submit, claim, agent or engine.")
    used: float | None = Field(description="Live usage against the limit; null for per-task ceilings.")
    used_label: str
    percent: int
    waiting: int = Field(description="Queued tasks in scope while this concurrency cap is full.")
    waiting_reason: str
    refusals_today: int = Field(description="Refusals counted today (submit refusals and timeouts included).")
    refusals_7d: int
    last_refusal_day: str
    recent_refusals: list[RefusalPublic] = Field(
        description="The last refusals it caused in the projects you can see, newest first: refused submits, "
        "holds in the queue, stopped attempts and refused queries (GET /caps/{name}/refusals pages through more)."
    )


class AppliedCap(BaseModel):
    cap: CapPublic
    tightest: bool = Field(description="The lowest limit of its kind among the caps that apply.")


class RoutingExplanation(BaseModel):
    rule: str = Field(description='The matching rule; "" when none matched (pool "default").')
    pool: str
    required_labels: list[str]
    pool_from_spec: bool
    verdicts: list[RuleVerdictPublic] = Field(description="Each rule up to the match, with why it did not match.")
    executors: list[str] = Field(description="Executors that could claim the task now.")
    caps: list[AppliedCap]
    waits: list[str] = Field(description="What would hold the task in the queue now.")


class CapList(BaseModel):
    items: list[CapPublic]


class CapFields(Strict):
    org: str | None = None
    scope: CapScope
    kind: CapKind
    limit: Int = Field(ge=0)
    project: str = ""
    environment: Literal["", "dev", "staging", "prod"] = ""
    pool: str = ""
    engine: str = ""
    enabled: StrictBool = True


class EffectiveCapsQuery(Strict):
    org: str | None = None
    project: str = Field(min_length=1, description="Project slug.")
    environment: Literal["dev", "staging", "prod"]
    spec: dict[str, Any] | list[dict[str, Any]] = Field(
        description='A run spec ({"tasks": [...]}), a list of tasks, or one task spec ({"engine": ...}).'
    )
    tags: list[str] = Field(default_factory=list, description="Run tags (routing rules may match on them).")


class LimitPublic(BaseModel):
    kind: str
    limit: int
    layer: str
    source: str = Field(description='The cap\'s name, or "spec timeout_s" for a ceiling the spec sets itself.')
    target: str
    tightest: bool = Field(description="The lowest limit of its kind: the one that stops the task first.")
    used_label: str = Field(description="The cap's live usage (empty for a spec's own ceiling).")


class TaskLimitsPublic(BaseModel):
    key: str
    engine: str
    pool: str = Field(description="Where routing sends the task (as at enqueue).")
    rule: str = Field(description='The routing rule that picked the pool; "" when none matched.')
    limits: list[LimitPublic]


class EffectiveCaps(BaseModel):
    tasks: list[TaskLimitsPublic]


class DriftPublic(BaseModel):
    org: str
    has_drift: bool
    deployed_at: datetime | None = Field(description="When the bundle was last deployed; null when never.")
    deployed_by: str
    changes: list[str] = Field(description="Each change made outside the bundle since it was deployed.")
    bundle_only: bool
    bundle_location: str


# Routes -----------------------------------------------------------------------------------------------


def _warning(w: routing.Warning) -> RoutingWarning:
    return RoutingWarning(rule=w.rule, name=w.name, kind=w.kind, message=w.message, field=w.field)


def _rule_public(rule: routing.RuleDraft) -> RoutingRulePublic:
    data = dataclasses.asdict(rule)
    data["id"] = uuid.UUID(rule.id) if rule.id else None
    return RoutingRulePublic(**data)


def _drafts(rules: list[RoutingRuleFields]) -> list[routing.RuleDraft]:
    return [routing.RuleDraft(**{**r.model_dump(), "id": str(r.id) if r.id else ""}) for r in rules]


def _refusal_public(refusal: caps.Refusal) -> RefusalPublic:
    data = dataclasses.asdict(refusal)
    data.pop("key")
    return RefusalPublic(**{**data, "run_id": uuid.UUID(refusal.run_id) if refusal.run_id else None})


def _cap_public(cap: caps.CapView) -> CapPublic:
    data = {**dataclasses.asdict(cap), "id": uuid.UUID(cap.id)}
    data.pop("recent")
    return CapPublic(**data, recent_refusals=[_refusal_public(r) for r in cap.recent])


@router.get("/routing/rules", response_model=RoutingMatrix)
async def get_routing_rules(conn: UserConnection, org: str | None = OrgQuery) -> RoutingMatrix:
    """The org's routing matrix in priority order, with its live warnings."""
    matrix = await routing.load_matrix(conn, org_id=await resolve_org(conn, org))
    return RoutingMatrix(
        org=matrix.org,
        fingerprint=matrix.fingerprint,
        rules=[_rule_public(r) for r in matrix.rules],
        warnings=[_warning(w) for w in routing.warnings(matrix)],
    )


@router.post("/routing/rules/plan", response_model=RoutingPlan)
async def plan_routing_rules(conn: UserConnection, body: RoutingDraft) -> RoutingPlan:
    """What applying a draft would change: the diff, its warnings and the queued tasks it would move."""
    matrix = await routing.load_matrix(conn, org_id=await resolve_org(conn, body.org))
    draft = routing.renumber(_drafts(body.rules))
    queued = await routing.queued_tasks(conn, org_id=matrix.org_id, projects=matrix.projects)
    moves = routing.reroute_preview(queued, draft)
    return RoutingPlan(
        changes=[c.describe() for c in routing.diff(matrix.rules, draft)],
        warnings=[_warning(w) for w in routing.warnings(matrix, draft)],
        reroute=[RerouteMove(from_pool=a, to_pool=b, tasks=n) for (a, b), n in sorted(moves.items())],
    )


@router.put("/routing/rules", response_model=RoutingApplied)
async def apply_routing_rules(user: User, conn: UserConnection, body: RoutingDraft) -> RoutingApplied:
    """Make the org's matrix equal to the draft in one transaction (org admins; every rule's change audited)."""
    matrix = await routing.load_matrix(conn, org_id=await resolve_org(conn, body.org))
    result = await routing.apply(
        conn, matrix=matrix, draft=_drafts(body.rules), fingerprint=body.fingerprint, by=user.email
    )
    return RoutingApplied(**result)


@router.get("/routing/explain", response_model=RoutingExplanation)
async def explain_routing(
    conn: UserConnection,
    project: Annotated[str, Query(description="Project slug.")],
    environment: Annotated[Literal["dev", "staging", "prod"], Query()],
    engine: Annotated[str, Query(min_length=1)],
    labels: Annotated[list[str] | None, Query(description="Task labels (repeat the parameter).")] = None,
    tags: Annotated[list[str] | None, Query(description="Run tags (repeat the parameter).")] = None,
    pool: Annotated[str, Query(description="The pool the spec names (used where the rule allows it).")] = "",
    org: str | None = OrgQuery,
) -> RoutingExplanation:
    """Which rule routes such a task and why the earlier ones did not, the pool, who could claim it now and
    the caps that would apply (the same answer as `lakehouse routing explain` and the page's simulator)."""
    probe = routing.TaskProbe(project, environment, engine, tuple(labels or ()), tuple(tags or ()), pool)
    matrix = await routing.load_matrix(conn, org_id=await resolve_org(conn, org))
    sim = await routing.simulate(conn, matrix=matrix, probe=probe)
    return RoutingExplanation(
        rule=sim.route.rule,
        pool=sim.route.pool,
        required_labels=list(sim.route.required_labels),
        pool_from_spec=sim.route.pool_from_spec,
        verdicts=[
            RuleVerdictPublic(name=v.name, matched=v.matched, reasons=list(v.reasons)) for v in sim.route.verdicts
        ],
        executors=[e.name for e in sim.executors],
        caps=[AppliedCap(cap=_cap_public(c), tightest=t) for c, t in sim.caps],
        waits=sim.waits,
    )


@router.get("/caps", response_model=CapList)
async def list_caps(conn: UserConnection, org: str | None = OrgQuery) -> CapList:
    """Every cap of the org with its live usage, enforcing layer and recent refusals."""
    views = await caps.list_caps(conn, org_id=await resolve_org(conn, org))
    return CapList(items=[_cap_public(v) for v in views])


# Not under /caps/: a path there would be a cap's name (PUT and DELETE /caps/{name}).
@router.post("/effective-caps", response_model=EffectiveCaps)
async def effective_caps(conn: UserConnection, body: EffectiveCapsQuery) -> EffectiveCaps:
    """Which limits apply to each task of a spec run in a project and environment, and which is tightest of
    each kind: the caps of the pool routing picks, project, environment, engine and org, and the spec's own
    ceilings (the same as `lakehouse caps effective` and the caps page's panel). Nothing is submitted."""
    found = await caps.effective_for_spec(
        conn, org_id=await resolve_org(conn, body.org), project=body.project, environment=body.environment,
        spec=body.spec, tags=body.tags,
    )  # fmt: skip
    return EffectiveCaps(tasks=[_task_limits_public(t) for t in found])


def _limit_public(limit: caps.Limit) -> LimitPublic:
    data = dataclasses.asdict(limit)
    data.pop("cap")
    return LimitPublic(**data, used_label=limit.cap.used_label if limit.cap else "")


def _task_limits_public(task: caps.TaskLimits) -> TaskLimitsPublic:
    limits = [_limit_public(x) for x in task.limits]
    return TaskLimitsPublic(key=task.key, engine=task.engine, pool=task.pool, rule=task.rule, limits=limits)


@router.put("/caps/{name}", response_model=CapPublic)
async def put_cap(user: User, conn: UserConnection, name: str, body: CapFields) -> CapPublic:
    """Create or change the cap of this name (org admins; project admins for their project's caps); audited."""
    org_id = await resolve_org(conn, body.org)
    existing = {c.name: c.id for c in await caps.list_caps(conn, org_id=org_id)}
    fields = body.model_dump(exclude={"org"})
    draft = caps.CapDraft(name=name, id=existing.get(name, ""), **fields)
    await caps.save_cap(conn, org_id=org_id, draft=draft, by=user.email)
    views = {c.name: c for c in await caps.list_caps(conn, org_id=org_id)}
    return _cap_public(views[name])


@router.get("/caps/{name}/refusals", response_model=RefusalPage)
async def list_cap_refusals(
    conn: UserConnection,
    name: str,
    org: str | None = OrgQuery,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page.")] = None,
) -> RefusalPage:
    """The refusals this cap caused over 30 days in the projects you can see, newest first, a page at a time."""
    org_id = await resolve_org(conn, org)
    cap_id = await caps.cap_id_by_name(conn, org_id=org_id, name=name)
    items, next_cursor = await caps.refusal_page(conn, org_id=org_id, cap_id=cap_id, limit=limit, cursor=cursor)
    return RefusalPage(items=[_refusal_public(r) for r in items], next_cursor=next_cursor)


@router.delete("/caps/{name}", status_code=204)
async def delete_cap(user: User, conn: UserConnection, name: str, org: str | None = OrgQuery) -> Response:
    """Delete the cap of this name and its usage history (admins); audited."""
    org_id = await resolve_org(conn, org)
    await caps.delete_cap(conn, cap_id=await caps.cap_id_by_name(conn, org_id=org_id, name=name), by=user.email)
    return Response(status_code=204)


async def _org_slug(db: Pool, user: User, org: str | None) -> str:
    """The slug of an org the caller belongs to (RLS hides the others)."""
    async with db.connection() as conn, scoped(conn, user):
        return await governance.org_slug(conn, org_id=await resolve_org(conn, org))


def _read_drift(slug: str) -> governance.Drift:
    with connect(database_url()) as conn:
        return governance.drift(conn, org=slug)


def _read_zip(slug: str) -> bytes:
    with connect(database_url()) as conn:
        return governance.export_zip(conn, org=slug)


@router.get("/governance/drift", response_model=DriftPublic)
async def get_drift(user: User, db: Pool, org: str | None = OrgQuery) -> DriftPublic:
    """The live configuration against the last deployed bundle: what was changed outside it since."""
    drift = await asyncio.to_thread(_read_drift, await _org_slug(db, user, org))
    return DriftPublic(
        org=drift.org,
        has_drift=drift.has_drift,
        deployed_at=drift.deployed_at,
        deployed_by=drift.deployed_by,
        changes=drift.lines(),
        bundle_only=drift.bundle_only,
        bundle_location=drift.bundle_location,
    )


@router.get(
    "/governance/bundle.zip",
    response_class=Response,
    responses={200: {"content": binary_content("application/zip")}},
)
async def export_bundle_zip(user: User, db: Pool, org: str | None = OrgQuery) -> Response:
    """The org's live configuration as a canonical bundle folder in a zip, ready to commit."""
    slug = await _org_slug(db, user, org)
    data = await asyncio.to_thread(_read_zip, slug)
    headers: dict[str, Any] = {"content-disposition": f'attachment; filename="{slug}-bundle.zip"'}
    return Response(content=data, media_type="application/zip", headers=headers)
