"""RefreshAhead.forget (services/serving_proxy.py): after a change this process committed, the next get reads
anew, and a read that started before the change is neither kept nor handed to that get. The clock is injected;
reads are coroutines the test releases by hand."""

from __future__ import annotations

import asyncio

from control_room.services.serving_proxy import RefreshAhead


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_forget_makes_the_next_get_read_again_within_the_ttl() -> None:
    async def run() -> None:
        clock = Clock()
        memory: RefreshAhead[str, str] = RefreshAhead("table", refresh_s=0.5, ttl_s=1.0, clock=clock)
        source = {"value": "v1"}
        reads = 0

        async def read() -> str:
            nonlocal reads
            reads += 1
            return source["value"]

        assert await memory.get("e", read) == "v1"
        source["value"] = "v2"
        clock.now += 0.1
        assert await memory.get("e", read) == "v1"  # within the refresh age: from memory
        memory.forget("e")
        assert await memory.get("e", read) == "v2"
        assert reads == 2

    asyncio.run(run())


def test_a_read_that_began_before_forget_is_not_kept_or_served() -> None:
    async def run() -> None:
        clock = Clock()
        memory: RefreshAhead[str, str] = RefreshAhead("table", refresh_s=0.5, ttl_s=1.0, clock=clock)
        began = {"old": asyncio.Event(), "new": asyncio.Event()}
        release = {"old": asyncio.Event(), "new": asyncio.Event()}
        values = iter(["old", "new"])

        async def slow_read() -> str:
            value = next(values)  # what the database held when the read began
            began[value].set()
            await release[value].wait()
            return value

        early = asyncio.create_task(memory.get("e", slow_read))
        await began["old"].wait()
        clock.now += 0.01
        memory.forget("e")  # the change commits while that read is under way
        late = asyncio.create_task(memory.get("e", slow_read))
        await began["new"].wait()
        release["new"].set()
        # The get after the change has the new table, not the read in flight.
        assert await asyncio.wait_for(late, timeout=5) == "new"
        release["old"].set()
        assert await early == "old"  # the request that began first keeps its answer, which ends last
        assert await memory.get("e", slow_read) == "new"  # and memory holds the new one

    asyncio.run(run())
