"""The scheduler loop: fires due schedules, releases queued fires and advances backfills.

Every control-room replica runs it; no lock makes one of them special. Exactly-once comes from the
database (a unique key per schedule and fire time, due schedules claimed with FOR UPDATE SKIP
LOCKED), so replicas share a burst of due schedules instead of racing for it. The clock is a
parameter: tests drive ``tick`` (control_room.services.schedules) with the time they choose.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable
from datetime import UTC, datetime

import psycopg

from control_room.loops.passes import repeat_passes
from control_room.services import jobs, schedules

log = logging.getLogger(__name__)
TICK_SECONDS = 1.0  # due fires wait at most this long (plus the time to fire the ones before them)
SUBMIT_BUDGET_SECONDS = 2.0  # runs submitted per tick at most this long, then newly due fires first


def utc_now() -> datetime:
    """The real clock (the default of ``run_scheduler``)."""
    return datetime.now(UTC)


async def run_scheduler(
    database_url: str,
    *,
    clock: Callable[[], datetime] = utc_now,
    interval: float = TICK_SECONDS,
    ticks: int | None = None,
) -> None:
    """Tick every ``interval`` seconds with the time ``clock`` gives (forever, or ``ticks`` times).

    A failed tick is logged and the loop carries on with a new connection: one broken schedule or
    a restarted database never stops the scheduler.
    """
    await asyncio.to_thread(jobs.preload_validator)  # a one-off start-up cost, not the first fires' latency
    # Like the app's modules at start-up (control_room/api/__init__.py), jsonschema's (with its format extras,
    # 125,000 objects of URI grammars) stay for the process's life: out of the full collections' walk.
    gc.freeze()

    async def tick(conn: psycopg.AsyncConnection) -> bool:
        result = await schedules.tick(conn, clock(), submit_budget_s=SUBMIT_BUDGET_SECONDS)
        if result.claimed or result.released or result.backfill_runs:
            log.info(
                "scheduler: %d schedule(s) due, fires %s, %d queued fire(s) released, %d backfill run(s) submitted",
                result.claimed,
                result.fires,
                result.released,
                result.backfill_runs,
            )
        return False

    await repeat_passes(
        database_url, tick, what="scheduler tick", log=log, interval=interval, passes=ticks,
        prepare=schedules.act_as_scheduler,
    )  # fmt: skip
