"""The executor registry for people: liveness, load and capacity, drain/undrain and token revoke.

Every function runs inside the caller's ``scoped`` transaction; the SQL functions check the role
themselves (org admins manage executors), so a viewer's forged call is refused with LH403.
"""

from __future__ import annotations

import uuid
from typing import Any

from psycopg import AsyncConnection

from control_room.config import get_settings
from control_room.db.rows import dict_rows, scalar

EXECUTOR_STATES = ("online", "draining", "offline", "pending", "revoked")


async def list_executors(conn: AsyncConnection, *, offline_after_seconds: int | None = None) -> list[dict[str, Any]]:
    """Every executor with its state (from heartbeat age), running tasks, capacity and version."""
    after = offline_after_seconds or get_settings().executor_offline_after_seconds
    return await dict_rows(conn, "select * from ops.executor_registry(%s)", (after,))


async def set_drain(conn: AsyncConnection, *, executor_id: uuid.UUID, drain: bool) -> str:
    """Drain (claims stop, running tasks finish) or undrain an executor; returns its status."""
    return str(await scalar(conn, "select ops.set_executor_drain(%s, %s)", (executor_id, drain)))


async def revoke(conn: AsyncConnection, *, executor_id: uuid.UUID) -> str:
    """Revoke an executor's token: its next request gets 401 and its leases expire."""
    return str(await scalar(conn, "select ops.revoke_executor(%s)", (executor_id,)))


async def pool_load(conn: AsyncConnection, *, minutes: int = 60, step_seconds: int = 60) -> list[dict[str, Any]]:
    """Running tasks per pool at each step of the last ``minutes`` (rows: pool, at, running)."""
    return await dict_rows(conn, "select * from ops.pool_running_series(%s, %s)", (minutes, step_seconds))
