"""Access policies over HTTP: groups, service principals and policies (org admins and dataset owners edit),
the simulator, the Trino rules export, and the executor operation handing an SQL task its policies."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, Field

from control_room.api.deps import Executor, Pool, User, UserConnection
from control_room.api.executors import leased_task_route
from control_room.api.models import LeaseRef, Strict
from control_room.bundle.models import PolicyRule
from control_room.services import access_policies, policy_previews, trino_rules
from control_room.services.auth import scoped
from control_room.services.governance import resolve_org
from control_room.services.retry import retry_transaction
from control_room.services.runs import resolve_project

router = APIRouter(tags=["access"])
OrgQuery = Query(description="The org's slug or id (optional when you belong to one org only).")


async def _queried_org(conn: UserConnection, org: str | None = OrgQuery) -> uuid.UUID:
    """The org the ``org`` query parameter names (the caller's only org when it is left out)."""
    return await resolve_org(conn, org)


# Only for operations whose other parameters cannot fail validation: the org is looked up before they are checked.
QueriedOrg = Annotated[uuid.UUID, Depends(_queried_org)]


class RowFilter(BaseModel):
    policy: str
    predicate: str = Field(description="A SQL predicate; current_principal() and current_principal_groups() allowed.")


class ColumnMask(BaseModel):
    policy: str
    column: str
    kind: Literal["null", "hash", "redact", "partial", "expression"]
    expression: str | None = None


class DatasetDecision(BaseModel):
    """What the task's principal may do with one dataset, and why."""

    dataset_id: uuid.UUID
    name: str = Field(description="The dataset's name, e.g. warehouse.main.customers.")
    namespace: str
    columns: list[str]
    read: bool
    write: bool
    admin: bool
    reasons: dict[str, str] = Field(description="Why, per privilege (read, write, admin).")
    row_filters: list[RowFilter]
    masks: list[ColumnMask]


class PolicyPrincipal(BaseModel):
    kind: Literal["user", "service_principal"]
    name: str


class TaskPolicies(BaseModel):
    """The policies an SQL task is held to: datasets not listed are open to it."""

    principal: PolicyPrincipal
    groups: list[str]
    datasets: list[DatasetDecision]
    read_only: bool = Field(
        default=False,
        description="A policy preview (a run acting as another principal for an editor of policies): only "
        "SELECT queries may run.",
    )


@leased_task_route(router, "/tasks/{task_id}/policies", operation_id="getTaskPolicies", response_model=TaskPolicies)
async def task_policies(task_id: uuid.UUID, body: LeaseRef, executor: Executor, db: Pool) -> dict[str, Any]:
    """Who the task acts as (its template's service principal, else its requester), its groups, and every
    dataset of its project the policies restrict for it; only while holding the task's lease."""
    async with db.connection() as conn:
        return await access_policies.task_policies(conn, task_id=task_id, lease_token=body.lease_token)


# People's side -------------------------------------------------------------------------------------------


class OrgBody(Strict):
    """A request body of an org's access settings: ``org`` names it by slug or id; omitted, your only org."""

    org: str | None = None


class PolicyBody(PolicyRule, OrgBody):
    """One policy; ``target`` is a dataset id, a schema (name prefix such as ``warehouse.main``) or a tag."""

    name: str = Field(min_length=1, max_length=100)


class GroupMember(Strict):
    kind: Literal["user", "service_principal"]
    name: str = Field(min_length=1, max_length=320)


class GroupBody(OrgBody):
    description: str = Field(default="", max_length=1000)
    members: list[GroupMember] = Field(default_factory=list, max_length=10000)


class ServicePrincipalBody(OrgBody):
    description: str = Field(default="", max_length=1000)


class SimulationPublic(BaseModel):
    allowed: bool
    reason: str
    dataset: str
    mask: str | None = None
    row_filters: list[str]


def _list_route(path: str, list_all: Callable[..., Awaitable[list[dict[str, Any]]]], description: str = "") -> None:
    """GET ``path``: ``list_all(conn, org_id=...)`` of the queried org; the route is named as ``list_all``."""

    async def list_route(conn: UserConnection, org_id: QueriedOrg) -> list[dict[str, Any]]:
        return await list_all(conn, org_id=org_id)

    router.get(path, name=list_all.__name__, description=description)(list_route)


def _delete_route(path: str, delete: Callable[..., Awaitable[None]]) -> None:
    """DELETE ``path`` (``.../{name}``, 204): ``delete(conn, org_id=..., name=...)`` in the queried org; the
    route is named as ``delete``."""

    async def delete_route(name: str, conn: UserConnection, org_id: QueriedOrg) -> Response:
        await delete(conn, org_id=org_id, name=name)
        return Response(status_code=204)

    router.delete(path, status_code=204, name=delete.__name__)(delete_route)


_list_route("/access/policies", access_policies.list_policies, "The org's access policies by name.")


@router.put("/access/policies")
async def save_policy(conn: UserConnection, body: PolicyBody) -> dict[str, Any]:
    """Create or update (by name) a policy; org admins, or a dataset's owners for its own policies. Audited."""
    fields = body.model_dump(exclude={"org"}, exclude_none=True)
    org_id = await resolve_org(conn, body.org)
    live = {p["name"]: p["id"] for p in await access_policies.list_policies(conn, org_id=org_id)}
    policy_id = await access_policies.save_policy(conn, org_id=org_id, body=fields, policy_id=live.get(body.name))
    return {"id": policy_id, "name": body.name}


_delete_route("/access/policies/{name}", access_policies.delete_policy)


_list_route("/access/groups", access_policies.list_groups)


@router.put("/access/groups/{name}")
async def save_group(name: str, conn: UserConnection, body: GroupBody) -> dict[str, Any]:
    """Create or replace a group with exactly these members (org admins; audited)."""
    group_id = await access_policies.save_group(
        conn,
        org_id=await resolve_org(conn, body.org),
        name=name,
        description=body.description,
        members=[m.model_dump() for m in body.members],
    )
    return {"id": group_id, "name": name}


_delete_route("/access/groups/{name}", access_policies.delete_group)


_list_route("/access/service-principals", access_policies.list_service_principals)


@router.put("/access/service-principals/{name}")
async def save_service_principal(name: str, conn: UserConnection, body: ServicePrincipalBody) -> dict[str, Any]:
    sp_id = await access_policies.save_service_principal(
        conn, org_id=await resolve_org(conn, body.org), name=name, description=body.description
    )
    return {"id": sp_id, "name": name}


_delete_route("/access/service-principals/{name}", access_policies.delete_service_principal)


@router.get("/access/simulate", response_model=SimulationPublic)
async def simulate(
    conn: UserConnection,
    project: Annotated[str, Query(description="Project slug or id.")],
    principal_kind: Annotated[Literal["user", "service_principal", "group"], Query()],
    principal: Annotated[str, Query(min_length=1)],
    dataset: Annotated[str, Query(min_length=1, description="Dataset id or name (e.g. main.orders).")],
    privilege: Annotated[Literal["read", "write", "admin"], Query()] = "read",
    column: Annotated[str | None, Query()] = None,
) -> dict[str, Any]:
    """Can this principal use the privilege on the dataset (and read the column unmasked)? With the reason."""
    verdict = await access_policies.simulate(
        conn,
        project_id=await resolve_project(conn, project),
        principal_kind=principal_kind,
        principal=principal,
        dataset=dataset,
        privilege=privilege,
        column=column,
    )
    return {**verdict.__dict__, "row_filters": list(verdict.row_filters)}


@router.get("/access/export")
async def export_rules(
    conn: UserConnection,
    format: Annotated[Literal["trino"], Query(description="trino: file-based access control rules.json")] = "trino",
    catalog: Annotated[str, Query(description="The Trino catalog the datasets live in.")] = "lakehouse",
    org: str | None = OrgQuery,
) -> dict[str, Any]:
    """The org's policies as Trino file-based access control rules (rules.json)."""
    return await trino_rules.export(conn, org_id=await resolve_org(conn, org), catalog=catalog)


@router.get("/access/audit")
async def audit(conn: UserConnection, org_id: QueriedOrg) -> list[dict[str, Any]]:
    """The latest changes to the org's groups, service principals and policies."""
    return await access_policies.audit(conn, org_id=org_id)


@router.get("/access/refusals")
async def refusals(
    conn: UserConnection, org: str | None = OrgQuery, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> list[dict[str, Any]]:
    """Statements the agents' access guards refused for a missing privilege: who (the task's principal),
    which dataset and privilege, which policy (or "no grant"), when, which run and task. Org admins see
    every refusal of the org, other members their own."""
    return await access_policies.refusals(conn, org_id=await resolve_org(conn, org), limit=limit)


# The editor's live preview ------------------------------------------------------------------------------


class PreviewBody(Strict):
    """Run a query as a principal (DuckDB on the warehouse), to see what their policies let through."""

    org: str | None = None
    dataset: str = Field(min_length=1, max_length=1000, description="The dataset whose policies you edit.")
    principal_kind: Literal["user", "service_principal", "group"] = Field(
        description="group: as a member of the group holding no other group."
    )
    principal: str = Field(min_length=1, max_length=320, description="An e-mail, a service principal or a group.")
    sql: str | None = Field(
        default=None, max_length=20000, description="One SELECT query (default: select * from the dataset limit 20)."
    )
    environment: str = Field(default="dev", min_length=1, max_length=100)


class PreviewStartedPublic(BaseModel):
    run_id: uuid.UUID
    dataset: str
    principal_kind: str
    principal: str
    sql: str


class PreviewColumn(BaseModel):
    name: str
    type: str


class PreviewPublic(BaseModel):
    """Where a preview is; once it succeeded, the rows the principal gets (their filters and masks applied)."""

    run_id: uuid.UUID
    status: str
    done: bool
    principal_kind: str
    principal: str
    dataset: str
    sql: str
    error: str | None = Field(default=None, description="Why it failed, e.g. a refusal naming dataset and privilege.")
    columns: list[PreviewColumn]
    rows: list[list[Any]]
    total_rows: int | None = None


@router.post("/access/previews", status_code=201, response_model=PreviewStartedPublic)
async def start_preview(user: User, db: Pool, body: PreviewBody) -> dict[str, Any]:
    """Start a preview: a one-task DuckDB run acting as the principal (only reads), through the agent's access
    guard, caps and audit like any run. Org admins, and a dataset's owners for their dataset; others get 403."""

    async def start() -> dict[str, Any]:
        async with db.connection() as conn, scoped(conn, user):
            started = await policy_previews.start_preview(
                conn, org_id=await resolve_org(conn, body.org), dataset=body.dataset,
                principal_kind=body.principal_kind, principal=body.principal, sql=body.sql,
                environment=body.environment, requested_by=user.user_id, requested_by_name=user.email,
            )  # fmt: skip
        return dict(started.__dict__)

    return await retry_transaction(start, what=f"policy preview by {user.email}")


@router.get("/access/previews/{run_id}", response_model=PreviewPublic)
async def get_preview(run_id: uuid.UUID, conn: UserConnection) -> dict[str, Any]:
    """A preview's status and, once it succeeded, up to 100 rows as the principal gets them (poll until done)."""
    return dict((await policy_previews.preview_result(conn, run_id=run_id)).__dict__)
