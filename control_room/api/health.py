"""``GET /api/v1/health``: liveness of the control plane and the schema version it runs."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from control_room.loops.start import mark_serving
from control_room.services.health import check_database
from control_room.services.ml_tracking import check_tracking

router = APIRouter(tags=["health"])


class HealthPublic(BaseModel):
    """The control plane is up and its database is reachable and migrated."""

    status: Literal["ok"] = "ok"
    database: Literal["ok"] = "ok"
    schema_version: str = Field(description="Newest applied migration, e.g. 20261126000300_rls.")
    mlflow: Literal["ok", "unreachable", "not_configured"] = Field(
        default="not_configured", description="The MLflow tracking server (does not make the control plane unhealthy)."
    )
    mlflow_detail: str | None = Field(default=None, description="Why MLflow is not ok, when it is not.")


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
        mark_serving()  # the process serves and reaches its database: its background loops may start
        mlflow, mlflow_detail = await check_tracking()
        return HealthPublic(schema_version=health.schema_version, mlflow=mlflow, mlflow_detail=mlflow_detail)
    problem = HealthProblem(
        database="unmigrated" if health.database == "unmigrated" else "unreachable",
        detail=health.detail or "unknown database problem",
    )
    return JSONResponse(status_code=503, content=problem.model_dump())
