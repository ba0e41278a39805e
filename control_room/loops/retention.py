"""The retention loop: moves the events and attempts of runs past their project's retention into Parquet.

Every replica runs it; none is special. Exactly-once comes from the database (one ops.event_archives row per
run, claimed by insert or by taking over an expired lease, every step fenced by the claim token), so replicas
share a backlog instead of racing for it. The clock is a parameter so tests choose "now".
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from datetime import UTC, datetime

from control_room.config import get_settings
from control_room.db.connection import connect_async
from control_room.services import retention
from control_room.services.retention import PassResult

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    """The real clock (the default of ``run_retention``)."""
    return datetime.now(UTC)


def worker_name() -> str:
    """Who holds a claim, for people reading ops.event_archives."""
    return f"{socket.gethostname()}:{os.getpid()}"


async def run_retention(
    database_url: str,
    *,
    clock: Callable[[], datetime] = utc_now,
    interval: float | None = None,
    passes: int | None = None,
    worker: str | None = None,
    results: list[PassResult] | None = None,
) -> None:
    """Archive due runs every ``interval`` seconds (forever, or ``passes`` times); what each pass did goes to
    ``results`` when given.

    A pass that found work is followed at once by another, so a backlog drains at full speed; a failed
    pass is logged and the loop carries on with a new connection.
    """
    settings = get_settings()
    pause = settings.retention_interval_seconds if interval is None else interval
    name = worker or worker_name()
    done = 0
    while passes is None or done < passes:
        try:
            async with await connect_async(database_url) as conn:
                while passes is None or done < passes:
                    result = await retention.archive_due(
                        conn,
                        now=clock,
                        worker=name,
                        max_runs=settings.retention_runs_per_pass,
                        delete_batch=settings.retention_delete_batch,
                    )
                    done += 1
                    if results is not None:
                        results.append(result)
                    if result.runs_claimed:
                        log.info(
                            "retention: %d run(s) archived (%d events, %d attempts), %d row(s) deleted",
                            result.runs_done,
                            result.events_archived,
                            result.attempts_archived,
                            result.rows_deleted,
                        )
                    else:
                        await asyncio.sleep(pause)
        except asyncio.CancelledError:
            raise
        except Exception:
            done += 1
            if results is not None:
                results.append(PassResult())
            log.exception("retention pass failed; retrying in %.1fs", pause)
            await asyncio.sleep(pause)
