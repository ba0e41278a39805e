"""The promotion loop: re-evaluates pending promotion requests as their evidence changes (runs succeed,
alerts open or resolve, CI reports) and promotes those whose checks pass and approvals are in; then plans
the messages of request events (opened, decided) into the alert deliveries outbox.

Every control-room replica runs it. Exactly-once comes from the database: each request is evaluated
under its row lock (FOR UPDATE SKIP LOCKED), and the deployment is written in the same transaction as the
request's one transition out of pending; each event's messages are queued in the transaction that records
its notice (unique per request and event). The clock is a parameter, as for the scheduler.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

import psycopg

from control_room.config import get_settings
from control_room.loops.passes import repeat_passes
from control_room.loops.scheduler import utc_now
from control_room.services import auth, promotion_notices, promotions

log = logging.getLogger(__name__)
INTERVAL_SECONDS = 2.0  # a succeeded run turns a check green within this long


async def run_promotion_evaluator(
    database_url: str,
    *,
    clock: Callable[[], datetime] = utc_now,
    interval: float = INTERVAL_SECONDS,
    passes: int | None = None,
) -> None:
    """Evaluate pending requests every ``interval`` seconds (forever, or ``passes`` times); errors are logged
    and the loop carries on with a new connection."""
    base_url = get_settings().alerts_public_url

    async def evaluate(conn: psycopg.AsyncConnection) -> bool:
        promoted = await promotions.evaluate_pending(conn, now=clock())
        queued = await promotion_notices.plan_due(conn, now=clock(), base_url=base_url)
        if promoted or queued:
            log.info("promotions: %d request(s) promoted, %d message(s) queued", promoted, queued)
        return False

    await repeat_passes(
        database_url, evaluate, what="promotion evaluator", log=log, interval=interval, passes=passes,
        prepare=lambda conn: auth.act_as(conn, "promotion gates"),
    )  # fmt: skip
