"""The ``--project`` option of the command groups about one project (ml, serving, dashboards) and its lookup."""

from __future__ import annotations

import uuid
from typing import Annotated

import psycopg
import typer

from control_room.services import runs
from control_room.services.errors import Invalid, ServiceError

ProjectOption = Annotated[str, typer.Option("--project", help="Project slug or id.")]


async def project_id_of(conn: psycopg.AsyncConnection, project: str) -> uuid.UUID:
    """The id of the project ``--project`` names (a slug or an id); Invalid on ``--project`` when none matches."""
    try:
        return await runs.resolve_project(conn, project)
    except ServiceError as exc:
        raise Invalid(exc.message, field="--project") from exc
