"""``GET /api/v1/health``: liveness of the control plane and the schema version it runs."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from control_room.services.health import check_database

router = APIRouter(tags=["health"])


class HealthPublic(BaseModel):
    """The control plane is up and its database is reachable and migrated."""

    status: Literal["ok"] = "ok"
    database: Literal["ok"] = "ok"
    schema_version: str = Field(description="Newest applied migration, e.g. 20261126000300_rls.")


class HealthProblem(BaseModel):
    """The control plane cannot serve: what is wrong with its database."""

    status: Literal["error"] = "error"
    database: Literal["unreachable", "unmigrated"]
    detail: str = Field(description="Why, in words an operator can act on; never contains secrets.")


@router.get(
    "/health",
    response_model=HealthPublic,
    responses={503: {"model": HealthProblem, "description": "Database unreachable or not migrated."}},
    summary="Control plane health",
)
async def get_health() -> HealthPublic | JSONResponse:
    """200 with the schema version, or 503 within about two seconds when the database is not usable."""
    health = await check_database()
    if health.ok and health.schema_version is not None:
        return HealthPublic(schema_version=health.schema_version)
    problem = HealthProblem(
        database="unmigrated" if health.database == "unmigrated" else "unreachable",
        detail=health.detail or "unknown database problem",
    )
    return JSONResponse(status_code=503, content=problem.model_dump())
