"""Orgs as the local runtime needs them: which org the embedded local agent belongs to."""

from __future__ import annotations

import uuid

from psycopg import AsyncConnection


async def org_for_local_agent(conn: AsyncConnection, *, preferred_slug: str) -> uuid.UUID | None:
    """The org with ``preferred_slug`` (the demo org), else the oldest org; None when there is no org."""
    cur = await conn.execute("select id from ops.orgs order by slug <> %s, created_at, id limit 1", (preferred_slug,))
    row = await cur.fetchone()
    return None if row is None else uuid.UUID(str(row[0]))
