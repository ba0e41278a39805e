"""Prometheus metrics of the control plane (one registry per process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from psycopg import AsyncConnection

REGISTRY = CollectorRegistry()

CLAIMS = Counter("lakehouse_claims_total", "Claim requests answered.", ["pool"], registry=REGISTRY)
TASKS_CLAIMED = Counter("lakehouse_tasks_claimed_total", "Tasks handed out by claims.", ["pool"], registry=REGISTRY)
LEASE_EXPIRIES = Counter("lakehouse_lease_expiries_total", "Leases that expired and were reaped.", registry=REGISTRY)
TASK_OUTCOMES = Counter(
    "lakehouse_task_outcomes_total", "Finalized task attempts by outcome.", ["outcome"], registry=REGISTRY
)
EVENT_APPEND_SECONDS = Histogram(
    "lakehouse_event_append_seconds",
    "Latency of appending one batch of events.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge("lakehouse_queue_depth", "Queued tasks per pool.", ["pool"], registry=REGISTRY)
RUNNING_TASKS = Gauge("lakehouse_running_tasks", "Claimed or running tasks per pool.", ["pool"], registry=REGISTRY)


async def render(conn: AsyncConnection) -> bytes:
    """Refresh the gauges read from the database and render the exposition text."""
    cur = await conn.execute(
        "select coalesce(pool, 'default'), count(*) filter (where status = 'queued'), "
        "count(*) filter (where status in ('claimed', 'running')) "
        "from ops.tasks where status in ('queued', 'claimed', 'running') group by 1"
    )
    rows = await cur.fetchall()
    QUEUE_DEPTH.clear()
    RUNNING_TASKS.clear()
    for pool, queued, running in rows:
        QUEUE_DEPTH.labels(pool=pool).set(queued)
        RUNNING_TASKS.labels(pool=pool).set(running)
    return generate_latest(REGISTRY)
