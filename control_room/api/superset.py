"""Superset over HTTP: push a project's dashboard to it (operators), and guest tokens to embed it (members)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel

from control_room.api.deps import User, UserConnection
from control_room.services import superset

router = APIRouter(tags=["superset"])
ProjectQuery = Annotated[uuid.UUID, Query(description="Project id.")]
Slug = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]


class PushResult(BaseModel):
    superset_id: int
    uuid: uuid.UUID
    slug: str
    embedded_uuid: str
    url: str
    charts: list[str]
    skipped: dict[str, str]
    version: int


class RlsClause(BaseModel):
    dataset: int
    clause: str


class GuestToken(BaseModel):
    token: str
    embedded_uuid: str
    superset_url: str
    dashboard: str
    rls: list[RlsClause]


@router.post("/dashboards/{slug}/superset", response_model=PushResult)
async def push_to_superset(project: ProjectQuery, slug: Slug, conn: UserConnection) -> dict[str, Any]:
    """Create or update the dashboard in Superset (operators); pushing again updates the same dashboard."""
    return await superset.push_dashboard(conn, project_id=project, slug=slug)


@router.post("/dashboards/{slug}/superset/guest-token", response_model=GuestToken)
async def superset_guest_token(project: ProjectQuery, slug: Slug, user: User, conn: UserConnection) -> dict[str, Any]:
    """A short-lived Superset guest token to embed the pushed dashboard, for the caller (a member of the
    project), with row-level-security clauses from the access policies the caller is subject to."""
    return await superset.guest_token(conn, project_id=project, slug=slug, email=user.email)
