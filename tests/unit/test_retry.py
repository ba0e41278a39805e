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


def test_reads_are_retried_when_the_database_cannot_be_reached_but_not_when_a_statement_times_out() -> None:
    """A page's read-only transaction (the run page's load) is asked again after a dropped connection or a
    pool that stayed full; writes keep the default (no retry of an OperationalError: it may have committed)."""
    from psycopg_pool import PoolTimeout

    from control_room.services.retry import is_transient_for_reads

    failures: list[Exception] = [psycopg.OperationalError("server closed the connection unexpectedly"),
                                 PoolTimeout("couldn't get a connection after 30.00 sec")]  # fmt: skip
    calls: list[int] = []

    async def read() -> str:
        calls.append(1)
        if failures:
            raise failures.pop(0)
        return "the run"

    assert asyncio.run(retry_transaction(read, what="test", sleep=_no_sleep, retry_if=is_transient_for_reads)) == (
        "the run"
    )
    assert len(calls) == 3

    async def dropped() -> None:
        calls.append(1)
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    calls.clear()
    with pytest.raises(psycopg.OperationalError):  # the default: only 40001 and 40P01
        asyncio.run(retry_transaction(dropped, what="test", sleep=_no_sleep))
    assert len(calls) == 1

    async def too_slow() -> None:
        calls.append(1)
        raise psycopg.errors.QueryCanceled("canceling statement due to statement timeout")

    calls.clear()
    with pytest.raises(psycopg.errors.QueryCanceled):
        asyncio.run(retry_transaction(too_slow, what="test", sleep=_no_sleep, retry_if=is_transient_for_reads))
    assert len(calls) == 1
