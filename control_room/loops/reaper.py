"""The lease reaper: requeues tasks whose lease expired and marks silent executors offline.

Every replica runs the loop; a session advisory lock lets exactly one of them reap at a time.
"""

from __future__ import annotations

import asyncio
import logging

import psycopg

from control_room.config import get_settings
from control_room.db.connection import connect_async
from control_room.services import metrics, reaping

log = logging.getLogger(__name__)


async def reap_once(conn: psycopg.AsyncConnection) -> int:
    """One pass: requeue expired leases and mark executors offline; returns the leases reaped."""
    settings = get_settings()
    reaped = await reaping.requeue_expired(conn)
    if reaped:
        metrics.LEASE_EXPIRIES.inc(reaped)
        log.info("reaper: %d expired lease(s) requeued or ended", reaped)
    await reaping.mark_offline_executors(conn, after_seconds=settings.executor_offline_after_seconds)
    return reaped


async def run_reaper(database_url: str) -> None:
    """Forever: hold the reaper lock (or wait for it), then reap every interval. Errors are logged."""
    interval = get_settings().reaper_interval_seconds
    while True:
        try:
            async with await connect_async(database_url) as conn:
                while True:
                    if await reaping.try_reaper_lock(conn):
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
