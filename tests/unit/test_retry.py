"""services/retry.py: deadlocks and serialization failures are retried a bounded number of times, nothing else."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from control_room.services.retry import retry_transaction


async def _no_sleep(_: float) -> None:
    return None


def test_a_deadlock_is_retried_until_the_transaction_goes_through() -> None:
    calls: list[int] = []

    async def work() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise psycopg.errors.DeadlockDetected("deadlock detected")
        return "done"

    assert asyncio.run(retry_transaction(work, what="test", sleep=_no_sleep)) == "done"
    assert len(calls) == 3


def test_retries_are_bounded_and_other_errors_are_not_retried() -> None:
    calls: list[int] = []

    async def always_conflicts() -> None:
        calls.append(1)
        raise psycopg.errors.SerializationFailure("could not serialize access")

    with pytest.raises(psycopg.errors.SerializationFailure):
        asyncio.run(retry_transaction(always_conflicts, what="test", attempts=3, sleep=_no_sleep))
    assert len(calls) == 3

    async def refused() -> None:
        calls.append(1)
        raise psycopg.errors.InsufficientPrivilege("permission denied")

    calls.clear()
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        asyncio.run(retry_transaction(refused, what="test", sleep=_no_sleep))
    assert len(calls) == 1
