"""The retention loop: moves the events and attempts of runs past their project's retention into Parquet.

Every replica runs it; none is special. Exactly-once comes from the database (one ops.event_archives row per
run, claimed by insert or by taking over an expired lease, every step fenced by the claim token), so replicas
share a backlog instead of racing for it. The clock is a parameter so tests choose "now".
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from datetime import UTC, datetime

import psycopg

from control_room.config import get_settings
from control_room.loops.passes import repeat_passes
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

    async def archive(conn: psycopg.AsyncConnection) -> bool:
        result = await retention.archive_due(
            conn,
            now=clock,
            worker=name,
            max_runs=settings.retention_runs_per_pass,
            delete_batch=settings.retention_delete_batch,
        )
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
        return bool(result.runs_claimed)

    def record_failure() -> None:
        if results is not None:
            results.append(PassResult())

    await repeat_passes(
        database_url, archive, what="retention pass", log=log, interval=pause, passes=passes,
        on_failure=record_failure,
    )  # fmt: skip
