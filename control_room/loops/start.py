"""When a control-room process starts its background loops: once it serves, so they never delay its health.

A restarted replica is useful as soon as it answers API requests; its loops (reaper, scheduler, alerts, ...)
are exactly-once across replicas (DESIGN decision 8), so the others cover for it meanwhile. Started with
the process, the loops' first passes (connections, the scheduler's jsonschema preload, catch-up work) compete
with the first health check for the CPU, which on 2 loaded cores made a restart take 41 s to look healthy
(bench/results/soak-2026-12-04.md). So they start when the health endpoint first answers healthy (a load
balancer's probe, `lakehouse run`'s, a test's), or at the latest ``at_the_latest`` seconds after start-up when
nothing probes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

# Without a probe (an in-process app, a setup that never asks /health), the loops start after this long.
LOOPS_START_AT_THE_LATEST_SECONDS = 10.0

_serving: asyncio.Event | None = None


def mark_serving() -> None:
    """The process answered healthy (it serves API requests and reaches its database): its loops may start."""
    if _serving is not None:
        _serving.set()


def start_when_serving(
    start: Callable[[], Awaitable[None]], *, at_the_latest: float = LOOPS_START_AT_THE_LATEST_SECONDS
) -> asyncio.Task[None]:
    """A task that awaits ``start()`` once ``mark_serving`` was called, or after ``at_the_latest`` seconds.

    One per process lifetime (the lifespan's): a new call forgets the previous one's signal."""
    global _serving
    serving = _serving = asyncio.Event()

    async def wait_then_start() -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(serving.wait(), at_the_latest)
        await start()

    return asyncio.create_task(wait_then_start(), name="loops-start")
