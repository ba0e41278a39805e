"""The lease reaper's statements: the reaper lock, requeue expired leases, mark silent executors offline."""

from __future__ import annotations

from psycopg import AsyncConnection

from control_room.db.rows import scalar

REAPER_LOCK_KEY = 7_245_118_900_302


async def try_reaper_lock(conn: AsyncConnection) -> bool:
    """Take the reaper's session lock if no other replica holds it; True when this session reaps."""
    return bool(await scalar(conn, "select pg_try_advisory_lock(%s)", (REAPER_LOCK_KEY,)))


async def requeue_expired(conn: AsyncConnection) -> int:
    """Requeue (or end, after the last attempt) every task whose lease expired; returns how many."""
    return int(await scalar(conn, "select ops.requeue_expired()"))


async def mark_offline_executors(conn: AsyncConnection, *, after_seconds: int) -> None:
    """Mark executors offline whose last heartbeat is older than ``after_seconds``."""
    await conn.execute("select ops.mark_offline_executors(%s)", (after_seconds,))
