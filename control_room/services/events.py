"""Run events for clients: pages in either direction and the live stream behind SSE."""

from __future__ import annotations

import uuid
from typing import Any

from psycopg import AsyncConnection, sql

from control_room.db.rows import scalar
from control_room.services.errors import Invalid
from control_room.services.pagination import ListQuery, fetch_rows

LEVELS = ("debug", "info", "warning", "error")
EVENT_COLUMNS = (
    "ev.id, ev.run_id, ev.task_id, t.key as task_key, ev.attempt, ev.seq, ev.ts, ev.type, ev.level, ev.message, ev.data"
)
TERMINAL_RUN = ("succeeded", "failed", "cancelled")


async def list_events(
    conn: AsyncConnection,
    *,
    run_id: uuid.UUID,
    after_id: int | None = None,
    before_id: int | None = None,
    task_id: uuid.UUID | None = None,
    attempt: int | None = None,
    min_level: str | None = None,
    text: str | None = None,
    limit: int = 200,
) -> list[dict[str, Any]]:
    """Events of a run in id order. With before_id (or neither bound) the newest page is returned,
    still in ascending order, so a timeline opens at the latest events and loads older ones on demand."""
    if after_id is not None and before_id is not None:
        raise Invalid("pass after_id or before_id, not both", field="before_id")
    query = ListQuery()
    query.add("ev.run_id = %s", run_id)
    if after_id is not None:
        query.add("ev.id > %s", after_id)
    if before_id is not None:
        query.add("ev.id < %s", before_id)
    query.equal("ev.task_id", task_id)
    query.equal("ev.attempt", attempt)
    if min_level is not None:
        if min_level not in LEVELS:
            raise Invalid(f"must be one of {', '.join(LEVELS)}", field="level")
        query.add("ev.level = any(%s)", list(LEVELS[LEVELS.index(min_level) :]))
    query.matches("ev.message", text)
    newest_first = after_id is None
    statement = sql.SQL(
        "select {cols} from ops.events ev left join ops.tasks t on t.id = ev.task_id "
        "{where} order by ev.id {direction} limit %s"
    ).format(cols=sql.SQL(EVENT_COLUMNS), where=query.where(), direction=sql.SQL("desc" if newest_first else "asc"))
    rows = await fetch_rows(conn, statement, [*query.args, limit])
    if newest_first:
        rows.reverse()
    return rows


async def run_is_finished(conn: AsyncConnection, *, run_id: uuid.UUID) -> bool:
    status = await scalar(conn, "select status from ops.runs where id = %s", (run_id,))
    return status is None or status in TERMINAL_RUN
