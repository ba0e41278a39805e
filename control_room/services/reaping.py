"""The lease reaper's statements: the reaper lock, requeue expired leases, mark silent executors offline."""

from __future__ import annotations

from psycopg import AsyncConnection

REAPER_LOCK_KEY = 7_245_118_900_302


async def try_reaper_lock(conn: AsyncConnection) -> bool:
    """Take the reaper's session lock if no other replica holds it; True when this session reaps."""
    cur = await conn.execute("select pg_try_advisory_lock(%s)", (REAPER_LOCK_KEY,))
    row = await cur.fetchone()
    return bool(row and row[0])


async def requeue_expired(conn: AsyncConnection) -> int:
    """Requeue (or end, after the last attempt) every task whose lease expired; returns how many."""
    cur = await conn.execute("select ops.requeue_expired()")
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def mark_offline_executors(conn: AsyncConnection, *, after_seconds: int) -> None:
    """Mark executors offline whose last heartbeat is older than ``after_seconds``."""
    await conn.execute("select ops.mark_offline_executors(%s)", (after_seconds,))
