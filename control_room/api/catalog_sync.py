"""Catalog sync with OpenMetadata for project admins: ``POST /catalog/openmetadata/sync`` (dry run by choice)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from control_room.api.deps import Pool, User
from control_room.config import get_settings
from control_room.services import openmetadata
from control_room.services.errors import Invalid
from control_room.services.openmetadata_client import OpenMetadataClient, OpenMetadataError

router = APIRouter()


class SyncChange(BaseModel):
    direction: str = Field(description="push (to OpenMetadata) or pull (onto our datasets).")
    action: str = Field(
        description="What changes: a table created or updated ('create table', 'update table'), "
        "'add lineage' or 'pull'."
    )
    target: str = Field(description="The table's fully qualified name, or 'upstream -> downstream'.")
    fields: list[str]


class SyncReply(BaseModel):
    dry_run: bool
    service: str
    tables: int
    pushed: int
    pulled: int
    changes: list[SyncChange]
    warnings: list[str]


@router.post("/catalog/openmetadata/sync", operation_id="syncOpenMetadata", tags=["lineage"], response_model=SyncReply)
async def sync_openmetadata(
    user: User,
    db: Pool,
    project: Annotated[str, Query(min_length=1, max_length=200, description="Project slug or id.")],
    dry_run: Annotated[bool, Query(description="List the differences; write nothing anywhere.")] = True,
) -> dict[str, Any]:
    """Push the project's datasets, columns, owners and lineage to the configured OpenMetadata and pull its
    owners, tags, glossary terms and descriptions back (project admins). ``dry_run`` (the default) only
    lists the differences; a second real run changes nothing."""
    settings = get_settings()
    if not settings.openmetadata_url or settings.openmetadata_token is None:
        raise Invalid(
            "no OpenMetadata is configured: set LAKEHOUSE_OPENMETADATA_URL and LAKEHOUSE_OPENMETADATA_TOKEN",
            field="openmetadata_url",
        )
    token = settings.openmetadata_token.get_secret_value()
    try:
        async with db.connection() as conn, OpenMetadataClient(settings.openmetadata_url, token) as client:
            report = await openmetadata.sync_openmetadata(
                conn, user, client, project=project, service=settings.openmetadata_service, dry_run=dry_run
            )
    except OpenMetadataError as exc:
        raise openmetadata.OpenMetadataUnavailable(str(exc), field="openmetadata_url") from exc
    return report.as_dict()
