"""Executor-facing task lifecycle: register, heartbeats, claim (long-poll), events, finalize."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from control_room.config import get_settings
from control_room.db.notify import TASKS_CHANNEL, Notifier, Turn
from control_room.db.rows import dict_rows, first_dict_row, scalar
from control_room.services import metrics
from control_room.services.auth import ExecutorPrincipal
from control_room.services.retry import retry_transaction
from control_room.services.wire_json import dumps_json

# A waiting claim re-checks at least this often, so retries whose backoff ends while nobody
# notifies are still picked up.
CLAIM_RECHECK_SECONDS = 5.0


def heartbeat_interval(lease_seconds: int) -> float:
    """Agents heartbeat at a third of the lease, so two can be missed before it expires."""
    return max(lease_seconds / 3, 1.0)


async def register(
    conn: AsyncConnection,
    executor: ExecutorPrincipal,
    *,
    labels: list[str],
    engines: list[str],
    max_concurrency: int,
    version: str,
    hostname: str,
    metadata: dict[str, Any],
) -> dict[str, Any]:
    """Record what the agent runs and how much; returns its identity and the timing it must use."""
    row = await first_dict_row(
        conn,
        "select id, name, pool, labels, engines, max_concurrency, status "
        "from ops.register_executor(%s, %s, %s, %s, %s, %s, %s::jsonb)",
        (executor.executor_id, labels, engines, max_concurrency, version, hostname, json.dumps(metadata)),
    )
    assert row is not None
    settings = get_settings()
    return {
        **row,
        "lease_seconds": settings.lease_seconds,
        "heartbeat_interval_s": heartbeat_interval(settings.lease_seconds),
        "claim_wait_max_s": settings.claim_wait_max_seconds,
    }


async def executor_heartbeat(
    conn: AsyncConnection, executor: ExecutorPrincipal, *, running_task_ids: list[uuid.UUID]
) -> dict[str, Any]:
    """Liveness and capacity; answers with drain and which running tasks to cancel or drop."""
    row = await first_dict_row(
        conn,
        "select drain, cancel_task_ids, lost_task_ids, released_task_ids from ops.executor_heartbeat(%s, %s)",
        (executor.executor_id, running_task_ids),
    )
    assert row is not None
    return {**row, "server_time": datetime.now().astimezone()}


@dataclass(frozen=True)
class ClaimOptions:
    max_tasks: int
    engines: list[str] | None
    labels: list[str] | None
    wait_s: float
    claim_id: uuid.UUID | None = None  # a retried claim with the same id gets the same leases


# A claim's commit does not wait for its WAL flush (synchronous_commit off for the claim's own transaction; every
# other write of the lifecycle waits). A claim that a database crash forgets is a lease nobody else was told of:
# the task is still queued, its next claim is a first attempt again, and the agent holding the forgotten lease
# hears 409 (lease lost) at its first heartbeat, event batch or finalize, exactly as after a reaped lease. That
# first contact is durable and flushes the claim's WAL with it (the log is one sequence), as does the WAL writer
# within a fraction of a second: only a crash in between forgets a claim. What it buys: a flush off dispatch's
# path (0.6-1.5 ms of the submit -> claimed p95 on this project's machines; bench/dispatch_latency.py).
CLAIM_SQL = (
    "select c.* from ops.claim_tasks(%s, %s, %s, %s, %s, %s) c, set_config('synchronous_commit', 'off', true) _"
)


async def _claim_once(conn: AsyncConnection, executor: ExecutorPrincipal, opts: ClaimOptions) -> list[dict[str, Any]]:
    settings = get_settings()
    rows = await dict_rows(
        conn,
        CLAIM_SQL,
        (executor.executor_id, opts.engines, opts.labels, opts.max_tasks, settings.lease_seconds, opts.claim_id),
    )
    interval = heartbeat_interval(settings.lease_seconds)
    for row in rows:
        row["project"] = row.pop("project_slug")
        row["heartbeat_interval_s"] = interval
    return rows


async def claim(
    pool: AsyncConnectionPool, notifier: Notifier | None, executor: ExecutorPrincipal, opts: ClaimOptions
) -> list[dict[str, Any]]:
    """Claim up to max_tasks; with none available, wait (woken by NOTIFY) up to wait_s.

    The connection goes back to the pool while waiting, so idle agents hold no connections.
    """
    deadline = time.monotonic() + max(0.0, min(opts.wait_s, get_settings().claim_wait_max_seconds))

    async def claim_once() -> list[dict[str, Any]]:
        async with pool.connection() as conn:
            return await _claim_once(conn, executor, opts)

    turn: Turn | None = None  # this claim's place in line, taken before each check of the database
    woken: Turn | None = None  # the turn whose wake-up the next check answers, handed on once it is done
    try:
        while True:
            turn = notifier.turn(TASKS_CHANNEL, executor.pool) if notifier else None
            try:
                rows = await retry_transaction(claim_once, what=f"claim by executor {executor.name}")
            finally:
                if notifier and woken:
                    notifier.hand_on(woken)
                    woken = None
            metrics.CLAIMS.labels(pool=executor.pool).inc()
            remaining = deadline - time.monotonic()
            if rows or remaining <= 0:
                if rows:
                    metrics.TASKS_CLAIMED.labels(pool=executor.pool).inc(len(rows))
                return rows
            timeout = min(remaining, CLAIM_RECHECK_SECONDS)
            if notifier and turn:
                await notifier.wait(turn.event, timeout)
                notifier.leave(turn)
                woken, turn = (turn if turn.event.is_set() else None), None
            else:
                await asyncio.sleep(min(timeout, 0.5))
    finally:
        if notifier and turn:  # a wake-up that came during the last check is handed on, not lost
            notifier.leave(turn)
            notifier.hand_on(turn)


async def task_heartbeat(conn: AsyncConnection, *, task_id: uuid.UUID, lease_token: uuid.UUID) -> dict[str, Any]:
    """Extend the lease; LeaseLost when the lease is no longer held."""
    row = await first_dict_row(
        conn,
        "select lease_expires_at, cancel_requested from ops.extend_lease(%s, %s, %s)",
        (task_id, lease_token, get_settings().lease_seconds),
    )
    assert row is not None
    return row


async def task_heartbeats(conn: AsyncConnection, *, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Extend many leases in one round trip; each item reports ok or its error."""
    payload = dumps_json([{"task_id": str(i["task_id"]), "lease_token": str(i["lease_token"])} for i in items])
    return await dict_rows(
        conn, "select * from ops.extend_leases(%s::jsonb, %s)", (payload, get_settings().lease_seconds)
    )


async def append_events(
    conn: AsyncConnection, *, task_id: uuid.UUID, lease_token: uuid.UUID, events_json: str, count: int
) -> dict[str, int]:
    """Store a batch of ``count`` events (a JSON array); re-sent sequence numbers are counted as duplicates,
    not stored twice."""
    started = time.perf_counter()
    accepted = int(
        await scalar(conn, "select ops.append_events(%s, %s, %s::jsonb)", (task_id, lease_token, events_json))
    )
    metrics.EVENT_APPEND_SECONDS.observe(time.perf_counter() - started)
    return {"accepted": accepted, "duplicates": count - accepted}


async def finalize(
    conn: AsyncConnection,
    *,
    task_id: uuid.UUID,
    lease_token: uuid.UUID,
    outcome: str,
    result: dict[str, Any] | None,
    error: str | None,
) -> dict[str, Any]:
    """Record the attempt's outcome (idempotent for the same lease and outcome)."""
    row = await first_dict_row(
        conn,
        "select task_status, run_status, replayed from ops.finalize_task(%s, %s, %s, %s::jsonb, %s)",
        (task_id, lease_token, outcome, dumps_json(result) if result is not None else None, error),
    )
    assert row is not None
    if not row["replayed"]:
        metrics.TASK_OUTCOMES.labels(outcome=outcome).inc()
    return row


async def finalize_many(conn: AsyncConnection, *, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Finalize many tasks in one round trip; each item reports its own result or error."""
    payload = dumps_json(items)
    rows = await dict_rows(conn, "select * from ops.finalize_tasks(%s::jsonb)", (payload,))
    by_id = {str(i["task_id"]): i for i in items}
    out = []
    for row in rows:
        ok = row["error_code"] is None
        if ok and not row["replayed"]:
            metrics.TASK_OUTCOMES.labels(outcome=by_id[str(row["task_id"])]["outcome"]).inc()
        out.append(
            {
                "task_id": row["task_id"],
                "ok": ok,
                "task_status": row["task_status"],
                "run_status": row["run_status"],
                "replayed": row["replayed"],
                "error": row["error"],
                "status": 200 if ok else {"LH409": 409, "LH404": 404}.get(row["error_code"], 422),
            }
        )
    return out


async def release(conn: AsyncConnection, *, task_id: uuid.UUID, lease_token: uuid.UUID, reason: str | None) -> str:
    """Hand a lease back (agent shutdown): the task is queued again and the attempt does not count."""
    return str(await scalar(conn, "select ops.release_task(%s, %s, %s)", (task_id, lease_token, reason)))
