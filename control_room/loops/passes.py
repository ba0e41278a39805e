"""The pass loop the background loops share: passes on one connection, a new connection after a failure."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import psycopg

from control_room.db.connection import connect_async


async def repeat_passes(
    database_url: str,
    one_pass: Callable[[psycopg.AsyncConnection], Awaitable[bool]],
    *,
    what: str,
    log: logging.Logger,
    interval: float,
    passes: int | None,
    prepare: Callable[[psycopg.AsyncConnection], Awaitable[None]] | None = None,
    on_failure: Callable[[], None] | None = None,
) -> None:
    """Run ``one_pass`` every ``interval`` seconds (forever, or ``passes`` times), at once again when it says
    more work is waiting. A failed pass counts, is logged on ``log`` as "``what`` failed" and the loop carries on with a
    new connection (``prepare`` runs on each new one): one broken row or a restarted database never stops it."""
    done = 0
    while passes is None or done < passes:
        try:
            async with await connect_async(database_url) as conn:
                if prepare is not None:
                    await prepare(conn)
                while passes is None or done < passes:
                    more_waiting = await one_pass(conn)
                    done += 1
                    if not more_waiting:
                        await asyncio.sleep(interval)
        except asyncio.CancelledError:
            raise
        except Exception:
            done += 1
            if on_failure is not None:
                on_failure()
            log.exception("%s failed; retrying in %.1fs", what, interval)
            await asyncio.sleep(interval)
