"""Event retention: archive rate, delete-batch durations and what archiving does to appends on other runs.

Seeds BENCH_RETENTION_EVENTS events (default 1,000,000) on runs that finished 40 days ago (2 tasks per run,
BENCH_RETENTION_EVENTS_PER_RUN events each run, default 1,000), then drains them with the retention pass the
control room's loop runs (Parquet into a local artifact store, verified, then deleted in batches) while one
client appends batches of 100 events to a live run of another project. Prints the archive rate, the p50/p95/max
of one delete batch (one transaction: the longest time any row lock is held), the append latency before and
during archiving, and whether any backend was ever seen waiting on a lock.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pyarrow as pa
from _harness import fmt, percentiles

from control_room.db.connection import connect_async
from control_room.db.embedded import start_embedded
from control_room.db.migrate import migrate
from control_room.services import retention
from control_room.storage import LocalArtifactStore
from tests.integration.factories import claim, finalize, make_executor, make_tenant, submit, task

EVENTS = int(os.environ.get("BENCH_RETENTION_EVENTS", "1000000"))
PER_RUN = int(os.environ.get("BENCH_RETENTION_EVENTS_PER_RUN", "1000"))
DELETE_BATCH = int(os.environ.get("BENCH_RETENTION_DELETE_BATCH", "5000"))
RUNS_PER_PASS = 20
APPEND_BATCH = 100


def seed(url: str) -> tuple[int, int]:
    """Old finished runs with their events; returns (runs, events)."""
    runs = max(1, EVENTS // PER_RUN)
    with psycopg.connect(url, autocommit=True) as conn:
        tenant = make_tenant(conn)
        executor = make_executor(conn, tenant, max_concurrency=10_000)
        ids = [submit(conn, tenant, [task("extract"), task("load")], name=f"old-{n}") for n in range(runs)]
        while claimed := claim(conn, executor, max_tasks=200):
            for got in claimed:
                finalize(conn, got["task_id"], got["lease_token"])
        half = PER_RUN // 2
        conn.execute(
            "insert into ops.events (run_id, task_id, attempt, seq, ts, type, level, message, data) "
            "select t.run_id, t.id, 1, s.i, now() - interval '41 days' + s.i * interval '1 ms', 'log', "
            "case when s.i %% 10 = 0 then 'warning' else 'info' end, "
            "'partition ' || s.i || ' of task ' || t.key || ' loaded: 1200 rows, 3 files, watermark ok', "
            "jsonb_build_object('i', s.i, 'stream', 'stdout') "
            "from ops.tasks t cross join generate_series(0, %s - 1) s(i) where t.run_id = any(%s)",
            (half, ids),
        )
        conn.execute("update ops.runs set finished_at = now() - interval '40 days' where id = any(%s)", (ids,))
        conn.execute("vacuum analyze ops.events")
        conn.execute("vacuum analyze ops.runs")
        row = conn.execute("select count(*) from ops.events where run_id = any(%s)", (ids,)).fetchone()
        assert row
        return runs, int(row[0])


class Appender(threading.Thread):
    """One client appending batches of 100 events to a live run of another project, timing each call."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.conn = psycopg.connect(url, autocommit=True)
        tenant = make_tenant(self.conn)
        executor = make_executor(self.conn, tenant)
        submit(self.conn, tenant, [task("live")])
        (got,) = claim(self.conn, executor, lease_seconds=3600)
        self.task_id, self.lease = got["task_id"], got["lease_token"]
        self.seq = 0
        self.samples: list[float] = []
        self.stop = threading.Event()

    def append_once(self) -> None:
        events = [{"seq": self.seq + i, "message": f"live line {self.seq + i}", "data": {"i": i}}
                  for i in range(APPEND_BATCH)]  # fmt: skip
        self.seq += APPEND_BATCH
        started = time.perf_counter()
        self.conn.execute("select ops.append_events(%s, %s, %s::jsonb)", (self.task_id, self.lease, json.dumps(events)))
        self.samples.append((time.perf_counter() - started) * 1000)

    def run(self) -> None:
        while not self.stop.is_set():
            self.append_once()
            time.sleep(0.005)  # a steady stream, not a saturating one: latency is the question


class LockWatcher(threading.Thread):
    """Polls pg_stat_activity every 10 ms: how often any backend waited on a lock, and on what."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.conn = psycopg.connect(url, autocommit=True)
        self.polls = 0
        self.waits: dict[str, int] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            rows = self.conn.execute(
                "select wait_event, left(query, 60) from pg_stat_activity where wait_event_type = 'Lock' "
                "and pid <> pg_backend_pid()"
            ).fetchall()
            self.polls += 1
            for event, query in rows:
                label = f"{event}: {query}"
                self.waits[label] = self.waits.get(label, 0) + 1
            time.sleep(0.01)


async def drain(url: str, store: LocalArtifactStore) -> retention.PassResult:
    """Passes of the retention loop until nothing is due; their results summed."""
    total = retention.PassResult()
    async with await connect_async(url) as conn:
        while True:
            result = await retention.archive_due(
                conn, now=utc_now, worker="bench", max_runs=RUNS_PER_PASS, delete_batch=DELETE_BATCH, store=store
            )
            if not result.runs_claimed:
                return total
            total.runs_claimed += result.runs_claimed
            total.runs_done += result.runs_done
            total.events_archived += result.events_archived
            total.attempts_archived += result.attempts_archived
            total.rows_deleted += result.rows_deleted
            total.claims_lost += result.claims_lost
            total.batch_seconds += result.batch_seconds


def utc_now() -> datetime:
    return datetime.now(UTC)


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="lh-bench-retention-"))
    pg = start_embedded(root / "pgdata")
    try:
        url = pg.ensure_database("bench")
        migrate(url)
        started = time.perf_counter()
        runs, events = seed(url)
        print(f"retention: seeded {events:,} events on {runs:,} runs finished 40 days ago "
              f"in {time.perf_counter() - started:.0f} s (delete batch {DELETE_BATCH:,} rows)")  # fmt: skip
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute("select pg_total_relation_size('ops.events')").fetchone()
            assert row
            table_bytes = int(row[0])
        pa.array(list(range(10)), type=pa.int64())  # pyarrow's one-off lazy imports (seconds), not the archive rate
        appender = Appender(url)
        for _ in range(300):  # the baseline: appends with nothing else going on
            appender.append_once()
        baseline = list(appender.samples)
        appender.samples.clear()
        watcher = LockWatcher(url)
        store = LocalArtifactStore(root / "artifacts")
        appender.start()
        watcher.start()
        started = time.perf_counter()
        done = asyncio.run(drain(url, store))
        elapsed = time.perf_counter() - started
        appender.stop.set()
        watcher.stop.set()
        appender.join()
        watcher.join()
        parquet_bytes = sum(p.stat().st_size for p in (root / "artifacts").rglob("*.parquet"))
        with psycopg.connect(url, autocommit=True) as conn:
            left = conn.execute("select count(*) from ops.events where task_id <> %s", (appender.task_id,)).fetchone()
        if done.events_archived != events or left != (0,):
            raise SystemExit(f"retention lost or left events: archived {done.events_archived} of {events}, left {left}")
        batches = [s * 1000 for s in done.batch_seconds]
        print(f"  archived {done.events_archived:,} events and {done.attempts_archived:,} attempts of "
              f"{done.runs_done:,} runs in {elapsed:.1f} s: {done.events_archived / elapsed:,.0f} events/s "
              f"(Parquet write + verify + batched delete, one loop)")  # fmt: skip
        print(f"  Parquet {parquet_bytes / 1e6:.1f} MB for a {table_bytes / 1e6:.0f} MB events table "
              f"({table_bytes / max(parquet_bytes, 1):.0f}x smaller)")  # fmt: skip
        print(f"  delete batch (one transaction, the longest any row lock is held): {len(batches):,} batches")
        print(f"    {fmt(percentiles(batches))}")
        print(f"  append of {APPEND_BATCH} events to a live run of another project, before archiving "
              f"({len(baseline)} calls):")  # fmt: skip
        print(f"    {fmt(percentiles(baseline))}")
        print(f"  ... during archiving ({len(appender.samples)} calls):")
        print(f"    {fmt(percentiles(appender.samples))}")
        if watcher.waits:
            print(f"  lock waits seen in {watcher.polls:,} polls of pg_stat_activity (10 ms apart):")
            for label, count in sorted(watcher.waits.items(), key=lambda kv: -kv[1]):
                print(f"    {count:5}  {label}")
        else:
            print(f"  no backend waited on a lock in {watcher.polls:,} polls of pg_stat_activity (10 ms apart): "
                  "appends to other runs were never blocked")  # fmt: skip
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
