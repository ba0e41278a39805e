"""Dashboards over HTTP: the shipped templates, a project's saved dashboards (clone, save a version, read),
and a dashboard's datasets read with the caller's rights."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from control_room.api.deps import User, UserConnection
from control_room.api.models import Strict
from control_room.dashboards.loader import parse_dashboard, shipped_templates
from control_room.db.tables import Dashboard
from control_room.services import dashboards

router = APIRouter(tags=["dashboards"])
ProjectQuery = Annotated[uuid.UUID, Query(description="Project id.")]
Slug = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]


class TemplatePublic(BaseModel):
    name: str
    title: str
    description: str
    source_yaml: str


class DashboardPublic(BaseModel):
    id: uuid.UUID
    slug: str
    title: str
    template: str | None
    latest_version: int
    created_by: str
    updated_at: datetime


class VersionPublic(BaseModel):
    version: int
    message: str
    saved_by: str
    saved_at: datetime


class DashboardDetail(BaseModel):
    id: uuid.UUID
    slug: str
    title: str
    template: str | None
    latest_version: int
    version: int
    source_yaml: str
    message: str
    saved_by: str
    saved_at: datetime
    versions: list[VersionPublic]


class DashboardClone(Strict):
    template: str = Field(
        min_length=1, max_length=100, description="A shipped template's name (GET /dashboard-templates)."
    )
    slug: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")


class DashboardSave(Strict):
    source_yaml: str = Field(
        min_length=1, max_length=100_000, description="The dashboard (spec/dashboard.schema.json)."
    )
    message: str = Field("", max_length=500)
    expected_version: int | None = Field(None, ge=0, description="Refuse (409) when the dashboard moved past it.")


class SaveResult(BaseModel):
    id: uuid.UUID
    slug: str
    version: int
    new_version: bool
    created: bool


class DatasetData(BaseModel):
    name: str
    columns: list[str]
    rows: list[list[Any]]
    error: str
    note: str
    pending: bool = Field(
        False, description="A warehouse dataset still computing on an agent (its run is queued or running): ask again."
    )


@router.get("/dashboard-templates", response_model=list[TemplatePublic])
async def list_templates(_user: User) -> list[dict[str, Any]]:
    """Templates shipped with the product: run health, caps and cost, data freshness, ML."""
    return [{"name": name, "title": t.dashboard.title, "description": t.dashboard.description,
             "source_yaml": t.source_yaml} for name, t in shipped_templates().items()]  # fmt: skip


@router.get("/dashboards", response_model=list[DashboardPublic])
async def list_dashboards(project: ProjectQuery, conn: UserConnection) -> list[Dashboard]:
    """The project's saved dashboards."""
    return await dashboards.list_dashboards(conn, project_id=project)


@router.post("/dashboards", response_model=SaveResult, status_code=201)
async def clone_dashboard(project: ProjectQuery, body: DashboardClone, conn: UserConnection) -> dict[str, Any]:
    """Clone a shipped template into the project as a dashboard of its own (operators)."""
    return await dashboards.clone_template(conn, project_id=project, template=body.template, slug=body.slug)


@router.put("/dashboards/{slug}", response_model=SaveResult)
async def save_dashboard(
    project: ProjectQuery, slug: Slug, body: DashboardSave, conn: UserConnection
) -> dict[str, Any]:
    """Save a dashboard's YAML: created, or a new version when it changed (operators)."""
    return await dashboards.save_dashboard(
        conn, project_id=project, slug=slug, source_yaml=body.source_yaml, message=body.message,
        expected_version=body.expected_version,
    )  # fmt: skip


@router.get("/dashboards/{slug}", response_model=DashboardDetail)
async def get_dashboard(
    project: ProjectQuery, slug: Slug, conn: UserConnection, version: Annotated[int | None, Query(ge=1)] = None
) -> dict[str, Any]:
    """One dashboard at a version (default: the latest), with its version history."""
    return await dashboards.get_dashboard(conn, project_id=project, slug=slug, version=version)


@router.get("/dashboards/{slug}/data", response_model=list[DatasetData])
async def dashboard_data(
    project: ProjectQuery,
    slug: Slug,
    conn: UserConnection,
    time_range: Annotated[str, Query(pattern=r"^(24h|7d|14d|30d|90d)$")] = "7d",
) -> list[dict[str, Any]]:
    """Every dataset of the dashboard's latest version, read with the caller's rights (filters: all)."""
    saved = await dashboards.get_dashboard(conn, project_id=project, slug=slug)
    spec = parse_dashboard(saved["source_yaml"])
    since, until = dashboards.window(time_range)
    scope = dashboards.DatasetScope(project, since, until, {f.name: None for f in spec.filters})
    results = await dashboards.run_datasets(conn, spec, scope)
    return [{"name": name, **dataclasses.asdict(result)} for name, result in results.items()]
