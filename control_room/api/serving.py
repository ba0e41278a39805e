"""Model serving over HTTP: endpoints (create, canary, promote, roll back, stop, start, scale, delete), their tokens
and stats, the agent's replica report, and the invocations proxy."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, Field

from control_room.api.deps import Executor, Pool, User, bearer
from control_room.api.executors import leased_task_route
from control_room.api.models import Strict
from control_room.services import serving
from control_room.services.auth import scoped
from control_room.services.errors import Unauthorized
from control_room.services.serving_proxy import proxy_for

router = APIRouter(tags=["serving"])
# The invocations proxy alone: the app tries it before every other route (control_room/api/__init__.py).
proxy_router = APIRouter(tags=["serving"])
PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
CHANGES: dict[int | str, dict[str, Any]] = {
    409: {"description": "The name is taken, or the endpoint moved past expected_revision."},
    429: {"description": "A serving replica cap of the org would be exceeded."},
}
PROXY: dict[int | str, dict[str, Any]] = {
    502: {"description": "The replica failed while answering."},
    503: {"description": "No healthy replica (starting, restarting, or the endpoint is stopped).", "content": PROBLEM},
}
ProjectQuery = Annotated[uuid.UUID | None, Query(description="Project id (needed when the endpoint is named).")]
EndpointPath = Annotated[str, Path(min_length=1, max_length=63, description="Endpoint id, or name with ?project=.")]
VersionField = Annotated[str, Field(pattern=r"^[1-9][0-9]{0,9}$", description="A registered model version.")]


class RoutePublic(BaseModel):
    model: str
    version: str
    percent: int


class ReplicaPublic(BaseModel):
    id: uuid.UUID
    model_name: str
    model_version: str
    replica_index: int
    run_id: uuid.UUID
    task_id: uuid.UUID
    restarts: int
    address: str | None
    pid: int | None
    healthy: bool
    task_status: str
    attempt: int
    reported_at: datetime | None
    last_error: str | None


class RevisionPublic(BaseModel):
    revision: int
    routes: list[RoutePublic]
    action: str
    created_by: str
    created_at: datetime


class EndpointPublic(BaseModel):
    id: uuid.UUID
    project_id: uuid.UUID
    project: str
    environment: str
    name: str
    status: str = Field(description="running or stopped (what was asked for).")
    health: str = Field(description="healthy, degraded (some replicas down), starting, down or stopped.")
    replicas: int = Field(description="Replicas per served version.")
    replicas_healthy: int
    replicas_total: int
    pool: str | None
    max_memory_mb: int | None
    revision: int
    routes: list[RoutePublic]
    created_by: str
    created_at: datetime
    updated_at: datetime
    stopped_at: datetime | None


class EndpointDetail(EndpointPublic):
    replica_list: list[ReplicaPublic]
    revisions: list[RevisionPublic]


MAX_MEMORY_MB = 16 * 1024 * 1024  # 16 TiB per replica
MAX_REVISION = 2**31 - 1  # ops.serving_endpoints.revision is an integer


class EndpointCreate(Strict):
    project: uuid.UUID
    environment: str = Field("dev", min_length=1, max_length=63)
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    model: str = Field(min_length=1, max_length=256, description="A registered model of the project.")
    version: VersionField
    replicas: int = Field(1, ge=1, le=16, description="Replicas per served version.")
    pool: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$", description="Executor pool to run in.")
    # Bounded like the integer columns they are stored in: a larger number is a 422 naming the field, not a
    # database error.
    max_memory_mb: int | None = Field(None, ge=64, le=MAX_MEMORY_MB, description="Address-space limit of each replica.")


class CanaryRequest(Strict):
    version: VersionField
    percent: int = Field(ge=1, le=99, description="Share of the traffic the canary gets.")
    model: str | None = Field(None, min_length=1, max_length=256, description="Default: the primary's model.")
    expected_revision: int | None = Field(
        None, ge=1, le=MAX_REVISION, description="Refuse (409) when the endpoint moved past it."
    )


class ChangeRequest(Strict):
    expected_revision: int | None = Field(
        None, ge=1, le=MAX_REVISION, description="Refuse (409) when the endpoint moved past it."
    )


class ScaleRequest(Strict):
    replicas: int = Field(ge=1, le=16)


class ChangeReply(BaseModel):
    revision: int
    endpoint: EndpointDetail


class TokenCreate(Strict):
    name: str = Field(min_length=1, max_length=100)


class TokenCreated(BaseModel):
    name: str
    token: str = Field(description="Shown once: send it as `Authorization: Bearer …` to the invocations URL.")


class TokenPublic(BaseModel):
    name: str
    token_prefix: str
    created_by: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class StatsPoint(BaseModel):
    minute: datetime
    requests: int
    requests_per_s: float
    errors: int
    error_rate: float
    latency_p50_ms: float | None
    latency_p95_ms: float | None


class EndpointStats(BaseModel):
    since: datetime
    until: datetime
    points: list[StatsPoint]
    requests: int
    errors: int
    error_rate: float
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    requests_by_version: dict[str, int]


class ReplicaReport(Strict):
    lease_token: uuid.UUID
    address: str = Field(min_length=3, max_length=210, description="host:port the replica listens on.")
    pid: int | None = Field(None, ge=1, le=2_147_483_647, description="The server's process id (shown on its page).")


class ReplicaReportReply(BaseModel):
    endpoint: str
    model: str
    version: str


# Endpoints -------------------------------------------------------------------------------------------


async def _detail(conn: Any, endpoint_id: uuid.UUID) -> dict[str, Any]:
    return await serving.get_endpoint(conn, endpoint_id=endpoint_id)


@asynccontextmanager
async def _endpoint(
    db: Any, user: Any, endpoint: str, project: uuid.UUID | None
) -> AsyncIterator[tuple[Any, uuid.UUID]]:
    """A connection scoped to the caller and the id of the endpoint ``endpoint`` names (an id, or a name in
    ``project``): the first two steps of every request about one endpoint."""
    async with db.connection() as conn, scoped(conn, user):
        yield conn, await serving.resolve_endpoint(conn, endpoint=endpoint, project_id=project)


async def _change(
    db: Any, user: Any, endpoint: str, project: Any, apply: Callable[..., Awaitable[int]], **arguments: Any
) -> dict[str, Any]:
    """One change of an endpoint as the caller: resolve it, ``apply(conn, endpoint_id=..., **arguments)`` (the
    new revision), and answer with the revision and the endpoint as it is now."""
    async with _endpoint(db, user, endpoint, project) as (conn, endpoint_id):
        revision = await apply(conn, endpoint_id=endpoint_id, **arguments)
        reply = {"revision": revision, "endpoint": await _detail(conn, endpoint_id)}
    proxy_for(db).forget_table(endpoint_id)  # committed: this process's next invocation routes by it
    return reply


def _change_route(action: str, operation_id: str, **route: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The POST route of one change of an endpoint (``/serving/endpoints/{endpoint}/<action>``)."""
    return router.post(
        f"/serving/endpoints/{{endpoint}}/{action}",
        operation_id=operation_id,
        response_model=ChangeReply,
        responses=CHANGES,
        **route,
    )


def _revision_change_route(
    action: str, operation_id: str, apply: Callable[..., Awaitable[int]], description: str
) -> None:
    """Register the change route ``action`` whose only input is an optional expected revision (promote,
    rollback): ``apply(conn, endpoint_id=..., expected_revision=...)``."""

    async def change(
        endpoint: EndpointPath, user: User, db: Pool, body: ChangeRequest | None = None, project: ProjectQuery = None
    ) -> dict[str, Any]:
        expected = body.expected_revision if body else None
        return await _change(db, user, endpoint, project, apply, expected_revision=expected)

    _change_route(action, operation_id, name=action, description=description)(change)


@router.get("/serving/endpoints", operation_id="listServingEndpoints", response_model=list[EndpointPublic])
async def list_endpoints(project: Annotated[uuid.UUID, Query()], user: User, db: Pool) -> list[dict[str, Any]]:
    """The project's endpoints with their traffic split and health."""
    async with db.connection() as conn, scoped(conn, user):
        return await serving.list_endpoints(conn, project_id=project)


@router.post(
    "/serving/endpoints",
    operation_id="createServingEndpoint",
    response_model=EndpointDetail,
    status_code=201,
    responses=CHANGES,
)
async def create_endpoint(body: EndpointCreate, user: User, db: Pool) -> dict[str, Any]:
    """Serve a registered model version at 100 % of the traffic; its replicas start as service tasks (operators)."""
    async with db.connection() as conn, scoped(conn, user):
        endpoint_id = await serving.create_endpoint(
            conn, project_id=body.project, environment=body.environment, name=body.name, model=body.model,
            version=body.version, replicas=body.replicas, pool=body.pool, max_memory_mb=body.max_memory_mb,
        )  # fmt: skip
        return await _detail(conn, endpoint_id)


@router.get("/serving/endpoints/{endpoint}", operation_id="getServingEndpoint", response_model=EndpointDetail)
async def get_endpoint(endpoint: EndpointPath, user: User, db: Pool, project: ProjectQuery = None) -> dict[str, Any]:
    """One endpoint: traffic split, replicas with health and addresses, revisions."""
    async with _endpoint(db, user, endpoint, project) as (conn, endpoint_id):
        return await _detail(conn, endpoint_id)


@router.delete(
    "/serving/endpoints/{endpoint}",
    operation_id="deleteServingEndpoint",
    status_code=204,
    response_class=Response,
    responses={404: {"description": "No such endpoint (or you cannot see it).", "content": PROBLEM}},
)
async def delete_endpoint(endpoint: EndpointPath, user: User, db: Pool, project: ProjectQuery = None) -> Response:
    """Delete an endpoint: its replicas stop, its tokens stop working, and the audit log records it (operators)."""
    async with _endpoint(db, user, endpoint, project) as (conn, endpoint_id):
        await serving.delete_endpoint(conn, endpoint_id=endpoint_id)
    return Response(status_code=204)


@_change_route("canary", "canaryServingEndpoint")
async def canary(
    endpoint: EndpointPath, body: CanaryRequest, user: User, db: Pool, project: ProjectQuery = None
) -> dict[str, Any]:
    """Send a share of the traffic to a new version (operators)."""
    return await _change(
        db, user, endpoint, project, serving.canary, version=body.version, percent=body.percent, model=body.model,
        expected_revision=body.expected_revision,
    )  # fmt: skip


_revision_change_route(
    "promote", "promoteServingEndpoint", serving.promote,
    "Give the canary all the traffic; the old version's replicas stop (operators).",
)  # fmt: skip
_revision_change_route(
    "rollback", "rollbackServingEndpoint", serving.rollback,
    "Back to the version served before (ends a canary, or undoes a promote) (operators).",
)  # fmt: skip


@_change_route("stop", "stopServingEndpoint")
async def stop(endpoint: EndpointPath, user: User, db: Pool, project: ProjectQuery = None) -> dict[str, Any]:
    """Stop serving: every replica's task is cancelled (operators)."""
    return await _change(db, user, endpoint, project, serving.set_running, running=False)


@_change_route("start", "startServingEndpoint")
async def start(endpoint: EndpointPath, user: User, db: Pool, project: ProjectQuery = None) -> dict[str, Any]:
    """Serve again on the current traffic split (operators)."""
    return await _change(db, user, endpoint, project, serving.set_running, running=True)


@_change_route("scale", "scaleServingEndpoint")
async def scale(
    endpoint: EndpointPath, body: ScaleRequest, user: User, db: Pool, project: ProjectQuery = None
) -> dict[str, Any]:
    """Replicas per served version (operators; a serving concurrent_tasks cap bounds the org's total)."""
    return await _change(db, user, endpoint, project, serving.scale, replicas=body.replicas)


@router.get("/serving/endpoints/{endpoint}/stats", operation_id="getServingEndpointStats", response_model=EndpointStats)
async def stats(
    endpoint: EndpointPath,
    user: User,
    db: Pool,
    project: ProjectQuery = None,
    minutes: Annotated[int, Query(ge=1, le=1440)] = 30,
) -> dict[str, Any]:
    """Requests per minute, error rate and latency p50/p95 the proxy measured."""
    async with _endpoint(db, user, endpoint, project) as (conn, endpoint_id):
        return await serving.request_stats(conn, endpoint_id=endpoint_id, minutes=minutes)


@router.get("/serving/endpoints/{endpoint}/tokens", operation_id="listServingTokens", response_model=list[TokenPublic])
async def list_tokens(
    endpoint: EndpointPath, user: User, db: Pool, project: ProjectQuery = None
) -> list[dict[str, Any]]:
    """The endpoint's tokens, never their secret (operators)."""
    async with _endpoint(db, user, endpoint, project) as (conn, endpoint_id):
        return await serving.list_tokens(conn, endpoint_id=endpoint_id)


@router.post(
    "/serving/endpoints/{endpoint}/tokens",
    operation_id="createServingToken",
    response_model=TokenCreated,
    responses=CHANGES,
    status_code=201,
)
async def create_token(
    endpoint: EndpointPath, body: TokenCreate, user: User, db: Pool, project: ProjectQuery = None
) -> dict[str, Any]:
    """A bearer token for this endpoint's invocations only, shown once (operators)."""
    async with _endpoint(db, user, endpoint, project) as (conn, endpoint_id):
        token = await serving.create_token(conn, endpoint_id=endpoint_id, name=body.name)
    return {"name": body.name, "token": token}


@router.delete(
    "/serving/endpoints/{endpoint}/tokens/{name}",
    operation_id="revokeServingToken",
    status_code=204,
    response_class=Response,
)
async def revoke_token(
    endpoint: EndpointPath,
    name: Annotated[str, Path(min_length=1, max_length=100)],
    user: User,
    db: Pool,
    project: ProjectQuery = None,
) -> Response:
    """Revoke a token: the proxy refuses it within seconds (operators)."""
    async with _endpoint(db, user, endpoint, project) as (conn, endpoint_id):
        await serving.revoke_token(conn, endpoint_id=endpoint_id, name=name)
    return Response(status_code=204)


# Executors --------------------------------------------------------------------------------------------


@leased_task_route(
    router, "/tasks/{task_id}/serving", operation_id="reportServingReplica", response_model=ReplicaReportReply
)
async def report_replica(task_id: uuid.UUID, body: ReplicaReport, executor: Executor, db: Pool) -> dict[str, Any]:
    """A serving task's server answers: record where, so the proxy routes to it (lease-fenced)."""
    async with db.connection() as conn:
        return await serving.report_replica(conn, task_id=task_id, **body.model_dump())


# The proxy --------------------------------------------------------------------------------------------


@proxy_router.post(
    "/serving/{endpoint}/invocations",
    operation_id="invokeServingEndpoint",
    response_class=Response,
    responses=PROXY,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object", "additionalProperties": True}}},
        },
        "responses": {
            "200": {
                "description": "The model server's answer (MLflow's scoring protocol: `{\"predictions\": …}`).",
                "content": {"application/json": {"schema": {"type": "object", "additionalProperties": True}}},
            }
        },
    },
)
async def invoke(
    endpoint: Annotated[str, Path(min_length=1, max_length=63)],
    request: Request,
    db: Pool,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Response:
    """Score with the endpoint's model: MLflow's `/invocations` body (`dataframe_split`, `dataframe_records`,
    `inputs`, `instances`), forwarded to a healthy replica chosen by the traffic split. Authenticated by a
    token of this endpoint (`lhe_…`). `X-Served-Version` says which model version answered."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("send `Authorization: Bearer lhe_…`, a token of this endpoint")
    proxy = proxy_for(db)
    grant = await proxy.authorize(credentials.credentials, endpoint)
    body = await request.body()
    reply = await proxy.invoke(
        grant.endpoint_id, body, content_type=request.headers.get("content-type", "application/json")
    )
    return Response(
        content=reply.body,
        status_code=reply.status,
        media_type=reply.content_type,
        headers={"X-Served-Version": f"{reply.model}/{reply.version}"},
    )
