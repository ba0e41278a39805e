"""Catalog sync with OpenMetadata: ``POST /catalog/openmetadata/sync`` for project admins (dry run by
choice), and ``POST /tasks/{id}/catalog-sync`` for the agent running a ``catalog_sync`` task."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from control_room.api.deps import Executor, Pool, User
from control_room.api.executors import leased_task_route
from control_room.api.models import Strict
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
    async with _openmetadata() as client, db.connection() as conn:
        report = await openmetadata.sync_openmetadata(
            conn, user, client, project=project, service=settings.openmetadata_service, dry_run=dry_run
        )
    return report.as_dict()


class TaskSyncRequest(Strict):
    lease_token: uuid.UUID
    catalog: Literal["openmetadata"] = Field(default="openmetadata", description="The catalog to sync with.")
    dry_run: bool = Field(default=False, description="List the differences; write nothing anywhere.")


@leased_task_route(router, "/tasks/{task_id}/catalog-sync", operation_id="syncTaskCatalog", response_model=SyncReply)
async def sync_task_catalog(task_id: uuid.UUID, body: TaskSyncRequest, executor: Executor, db: Pool) -> dict[str, Any]:
    """The sync a ``catalog_sync`` task stands for, done by the control room (it holds the catalog's
    credentials) on the task's project, only while the agent holds the task's lease; a project admin must
    stand behind the run (its job, or an admin who submitted it). The reply lists the differences."""
    async with _openmetadata() as client, db.connection() as conn:
        report = await openmetadata.sync_openmetadata_for_task(
            conn, executor, client, task_id=task_id, lease_token=body.lease_token,
            service=get_settings().openmetadata_service, dry_run=body.dry_run,
        )  # fmt: skip
    return report.as_dict()


@asynccontextmanager
async def _openmetadata() -> AsyncIterator[OpenMetadataClient]:
    """The configured OpenMetadata client; its refusals and outages become OpenMetadataUnavailable."""
    settings = get_settings()
    if not settings.openmetadata_url or settings.openmetadata_token is None:
        raise Invalid(
            "no OpenMetadata is configured: set LAKEHOUSE_OPENMETADATA_URL and LAKEHOUSE_OPENMETADATA_TOKEN",
            field="openmetadata_url",
        )
    try:
        async with OpenMetadataClient(settings.openmetadata_url, settings.openmetadata_token.get_secret_value()) as c:
            yield c
    except OpenMetadataError as exc:
        raise openmetadata.OpenMetadataUnavailable(str(exc), field="openmetadata_url") from exc
