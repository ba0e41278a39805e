"""The alert deliveries outbox: claim due rows (SKIP LOCKED), record outcomes, resolve channel secrets."""

from __future__ import annotations

import uuid
from datetime import datetime

from psycopg import AsyncConnection

from control_room.db.rows import first_model, model_list
from control_room.db.tables import AlertChannel, AlertDelivery


async def claim_due(
    conn: AsyncConnection, *, now: datetime, limit: int, lease_seconds: int = 60
) -> list[AlertDelivery]:
    """Take up to ``limit`` due pending deliveries for this sender (their attempt counted, held for the lease)."""
    return await model_list(
        conn, AlertDelivery, "select * from ops.claim_deliveries(%s, %s, %s)", (now, limit, lease_seconds)
    )


async def finish(
    conn: AsyncConnection, *, delivery_id: uuid.UUID, ok: bool, error: str | None, now: datetime, retry_at: datetime
) -> str | None:
    """Record one send: 'sent', 'pending' (retry at ``retry_at``) or 'dead' after the last attempt."""
    cur = await conn.execute("select ops.finish_delivery(%s, %s, %s, %s, %s)", (delivery_id, ok, error, now, retry_at))
    row = await cur.fetchone()
    return row[0] if row else None


async def channel(conn: AsyncConnection, *, org_id: uuid.UUID, name: str) -> AlertChannel | None:
    """A named channel of the org (its secrets are environment-variable names)."""
    return await first_model(
        conn, AlertChannel, "select * from ops.alert_channels where org_id = %s and name = %s", (org_id, name)
    )


async def deliveries_of(conn: AsyncConnection, *, incident_id: uuid.UUID) -> list[AlertDelivery]:
    """The deliveries log of one incident."""
    return await model_list(
        conn,
        AlertDelivery,
        "select * from ops.alert_deliveries where incident_id = %s order by created_at, channel, target",
        (incident_id,),
    )
