"""The lease reaper: requeues tasks whose lease expired and marks silent executors offline.

Every replica runs the loop; a session advisory lock lets exactly one of them reap at a time.
"""

from __future__ import annotations

import asyncio
import logging

import psycopg

from control_room.config import get_settings
from control_room.services import metrics

log = logging.getLogger(__name__)
REAPER_LOCK_KEY = 7_245_118_900_302


async def reap_once(conn: psycopg.AsyncConnection) -> int:
    """One pass: requeue expired leases and mark executors offline; returns the leases reaped."""
    settings = get_settings()
    cur = await conn.execute("select ops.requeue_expired()")
    row = await cur.fetchone()
    reaped = int(row[0]) if row else 0
    if reaped:
        metrics.LEASE_EXPIRIES.inc(reaped)
        log.info("reaper: %d expired lease(s) requeued or ended", reaped)
    await conn.execute("select ops.mark_offline_executors(%s)", (settings.executor_offline_after_seconds,))
    return reaped


async def run_reaper(database_url: str) -> None:
    """Forever: hold the reaper lock (or wait for it), then reap every interval. Errors are logged."""
    interval = get_settings().reaper_interval_seconds
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
                while True:
                    cur = await conn.execute("select pg_try_advisory_lock(%s)", (REAPER_LOCK_KEY,))
                    got = await cur.fetchone()
                    if got and got[0]:
                        break
                    await asyncio.sleep(interval)  # another replica reaps; check again later
                while True:
                    await reap_once(conn)
                    await asyncio.sleep(interval)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("reaper failed; retrying in %.1fs", interval)
            await asyncio.sleep(interval)
