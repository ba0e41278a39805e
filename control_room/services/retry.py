"""Bounded retries of transactions Postgres aborted to break a lock cycle or a serialization conflict.

Lifecycle functions take their locks in one documented order (supabase/migrations/
20261203000100_tenancy.sql), so deadlocks should not happen; a retry still covers what no order can
rule out (a cap edited mid-claim, SERIALIZABLE callers). Only SQLSTATE 40001 and 40P01 are retried:
the transaction was rolled back whole, so running it again cannot double anything.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import psycopg

log = logging.getLogger(__name__)

T = TypeVar("T")

RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})  # serialization_failure, deadlock_detected
DEFAULT_ATTEMPTS = 4


def is_retryable(exc: BaseException) -> bool:
    """True for a serialization failure or a detected deadlock."""
    return isinstance(exc, psycopg.Error) and exc.sqlstate in RETRYABLE_SQLSTATES


def is_transient_for_reads(exc: BaseException) -> bool:
    """``is_retryable``, or the database could not be reached (a dropped connection, a pool that stayed full):
    safe to retry for a transaction that only reads. A statement that ran out of time (57014) is not retried:
    it would run out of time again."""
    if is_retryable(exc):
        return True
    return isinstance(exc, psycopg.OperationalError) and exc.sqlstate != "57014"


async def retry_transaction(
    work: Callable[[], Awaitable[T]],
    *,
    what: str,
    attempts: int = DEFAULT_ATTEMPTS,
    base_delay_s: float = 0.02,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    retry_if: Callable[[BaseException], bool] = is_retryable,
) -> T:
    """Run ``work`` (one whole transaction) again when Postgres aborts it with 40001/40P01 (or, with
    ``retry_if=is_transient_for_reads``, when a read-only ``work`` could not reach the database).

    ``work`` must open its own transaction (or run one autocommit statement) each call. After
    ``attempts`` tries the last error is raised. Backoff is short and jittered, so two retried
    transactions do not collide again in lockstep.
    """
    for attempt in range(1, attempts + 1):
        try:
            return await work()
        except psycopg.Error as exc:
            if not retry_if(exc) or attempt == attempts:
                raise
            delay = base_delay_s * (2 ** (attempt - 1)) * (1 + random.random())  # noqa: S311 (jitter, not crypto)
            log.warning(
                "%s: %s (SQLSTATE %s); retrying (%d of %d)",
                what,
                type(exc).__name__,
                exc.sqlstate,
                attempt,
                attempts - 1,
            )
            await sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover
