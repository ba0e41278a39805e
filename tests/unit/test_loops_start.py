"""A replica's loops start once it answered healthy (control_room/loops/start.py), or at the latest after a delay."""

from __future__ import annotations

import asyncio

from control_room.loops import start


def test_loops_wait_for_the_first_healthy_answer() -> None:
    async def scenario() -> tuple[bool, bool]:
        started = asyncio.Event()

        async def start_loops() -> None:
            started.set()

        task = start.start_when_serving(start_loops, at_the_latest=3600)
        await asyncio.sleep(0)  # the starter runs up to its wait
        before = started.is_set()
        start.mark_serving()
        await asyncio.wait_for(started.wait(), 5)
        await task
        return before, started.is_set()

    assert asyncio.run(scenario()) == (False, True)


def test_loops_start_at_the_latest_without_a_probe() -> None:
    async def scenario() -> bool:
        started = asyncio.Event()

        async def start_loops() -> None:
            started.set()

        await asyncio.wait_for(start.start_when_serving(start_loops, at_the_latest=0.01), 5)
        return started.is_set()

    assert asyncio.run(scenario()) is True


def test_a_new_lifetime_forgets_the_previous_signal() -> None:
    """A process may enter the lifespan again (tests do): a health answer of the old one starts nothing new."""

    async def scenario() -> bool:
        start.mark_serving()  # the previous lifetime's answer
        started = asyncio.Event()

        async def start_loops() -> None:
            started.set()

        task = start.start_when_serving(start_loops, at_the_latest=3600)
        for _ in range(20):  # event-loop turns: a signal already set would have started the loops by now
            await asyncio.sleep(0)
        task.cancel()
        return started.is_set()

    assert asyncio.run(scenario()) is False
