"""The serving loop: the restart policy of serving endpoints' replicas.

A replica's task retries itself when its process dies (attempts with a short backoff); when it ends for
good (attempts used up, lease lost, cancelled by someone else) while its endpoint still wants it, this
loop starts a new run for it. Every control-room replica runs it; exactly-once comes from the database
(replicas locked with SKIP LOCKED, the new run's idempotency key names the restart).
"""

from __future__ import annotations

import logging

import psycopg

from control_room.loops.passes import repeat_passes
from control_room.services import auth, serving

log = logging.getLogger(__name__)
INTERVAL_SECONDS = 2.0


async def run_serving_restarter(
    database_url: str, *, interval: float = INTERVAL_SECONDS, passes: int | None = None
) -> None:
    """Restart ended replicas every ``interval`` seconds (forever, or ``passes`` times); errors are logged and
    the loop carries on with a new connection."""

    async def restart(conn: psycopg.AsyncConnection) -> bool:
        started = await serving.restart_replicas(conn)
        if started:
            log.info("serving: %d replica(s) restarted", started)
        return False

    await repeat_passes(
        database_url, restart, what="serving restarter", log=log, interval=interval, passes=passes,
        prepare=lambda conn: auth.act_as(conn, "serving restarts"),
    )  # fmt: skip
