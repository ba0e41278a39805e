"""Orgs as the local runtime needs them: which org the embedded local agent belongs to."""

from __future__ import annotations

import uuid

from psycopg import AsyncConnection

from control_room.db.rows import scalar


async def org_for_local_agent(conn: AsyncConnection, *, preferred_slug: str) -> uuid.UUID | None:
    """The org with ``preferred_slug`` (the demo org), else the oldest org; None when there is no org."""
    found = await scalar(conn, "select id from ops.orgs order by slug <> %s, created_at, id limit 1", (preferred_slug,))
    return None if found is None else uuid.UUID(str(found))
