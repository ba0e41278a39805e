"""Load a large history into a control-plane database for the UI benchmark (bench/ui_pages.py).

Default: 1,000,000 runs of 3 tasks each (with their attempts) and 10,000,000 events, one run holding
100,000 of them, in the demo project, spread over the last year. Everything is generated inside
Postgres (INSERT ... SELECT over generate_series, a chunk of runs per statement), through the real
schema: every index, constraint, RLS policy and trigger production has stays on (the audit trigger
writes one row per run, too).

    .venv/bin/python bench/seed_history.py                      # embedded Postgres under .lakehouse/bench
    .venv/bin/python bench/seed_history.py --runs 100000 --events 1000000
    .venv/bin/python bench/seed_history.py --database-url postgresql://...

A database that already holds the requested history is left as it is (say --force to add again).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from control_room.db.embedded import start_embedded  # noqa: E402
from control_room.db.migrate import migrate  # noqa: E402
from control_room.services.demo import load_demo_data  # noqa: E402

BENCH_DIR = ROOT / ".lakehouse" / "bench"
BENCH_DATABASE = "lakehouse_bench"
BENCH_ADMIN = "bench-admin@demo.example"
BENCH_PASSWORD = "bench-password-1"  # a throwaway database on this machine only
BIG_RUN_NAME = "bench: chatty pipeline with 100k events"
BIG_RUN_EVENTS = 100_000
DEMO_PROJECT = "00000000-0000-4000-8000-000000000101"
CHUNK_RUNS = 5_000  # larger statements slow down more than in proportion (a 50,000-run chunk took > 30 min)

PIPELINES = """
    ('daily_orders_load', array['shell', 'python', 'shell']),
    ('customer_dim_refresh', array['dbt', 'dbt', 'duckdb']),
    ('clickstream_sessionize', array['spark', 'spark', 'python']),
    ('ml_features_build', array['python', 'python', 'shell']),
    ('finance_close_report', array['dbt', 'duckdb', 'shell']),
    ('inventory_snapshot', array['shell', 'duckdb', 'shell']),
    ('marketing_attribution', array['spark', 'dbt', 'python']),
    ('fraud_scoring', array['python', 'spark', 'shell'])
"""

# One statement per chunk of runs: runs, then their 3 tasks, their attempts and their events, all
# from the rows just inserted (data-modifying CTEs), so nothing is looked up twice.
CHUNK_SQL = f"""
with params as (
    select %(first)s::bigint as first, %(last)s::bigint as last, %(total)s::bigint as total,
           %(events_per_task)s::float8 as events_per_task, now() as at,
           array(select x.id from ops.executors x where x.name like 'bench-agent-%%' order by x.name) as agents
), pipelines(name, engines) as (values {PIPELINES}),
numbered as (
    select g as i, p.name as pipeline, p.engines,
           (select e.id from ops.environments e
            where e.project_id = %(project)s and e.name = (array['dev', 'staging', 'prod'])[1 + g %% 3])
               as environment_id,
           params.at - make_interval(secs => (params.total - g) * 31536000.0 / params.total + (g %% 7)) as created_at,
           case when g > params.total - 20 then 'running'
                when g > params.total - 45 then 'queued'
                when (g * 37) %% 100 < 6 then 'failed'
                when (g * 37) %% 100 < 9 then 'cancelled'
                else 'succeeded' end as status,
           -- durations from seconds to hours, skewed short like real pipelines
           power(((g * 7919) %% 1000) / 1000.0 + 0.05, 3) * 7200 + 5 as seconds
    from params, generate_series(params.first, params.last) g
    join pipelines p on p.name = (array['daily_orders_load', 'customer_dim_refresh', 'clickstream_sessionize',
        'ml_features_build', 'finance_close_report', 'inventory_snapshot', 'marketing_attribution',
        'fraud_scoring'])[1 + (g * 5) %% 8]
), new_runs as (
    insert into ops.runs (org_id, project_id, environment_id, name, spec, params, engines, task_count, status,
                          trigger, requested_by_name, created_at, started_at, finished_at, priority)
    select p.org_id, p.id, n.environment_id, n.pipeline || ' #' || n.i,
           jsonb_build_object('name', n.pipeline, 'tasks', jsonb_build_array(
               jsonb_build_object('key', 'extract', 'engine', n.engines[1]),
               jsonb_build_object('key', 'transform', 'engine', n.engines[2], 'depends_on', array['extract']),
               jsonb_build_object('key', 'publish', 'engine', n.engines[3], 'depends_on', array['transform']))),
           jsonb_build_object('date', to_char(n.created_at, 'YYYY-MM-DD'), 'full_refresh', n.i %% 10 = 0),
           array(select distinct unnest(n.engines) order by 1), 3, n.status,
           (array['schedule', 'schedule', 'schedule', 'manual', 'api', 'retry', 'backfill'])[1 + n.i %% 7],
           case when n.i %% 7 in (3, 4) then 'analyst' || (n.i %% 5) || '@demo.example' else 'scheduler' end,
           n.created_at,
           case when n.status = 'queued' then null else n.created_at + make_interval(secs => 1 + n.i %% 30) end,
           case when n.status in ('succeeded', 'failed', 'cancelled')
                then n.created_at + make_interval(secs => 1 + n.i %% 30 + n.seconds) end,
           0
    from numbered n cross join ops.projects p where p.id = %(project)s
    returning id, org_id, project_id, environment_id, status, engines, created_at, started_at, finished_at,
              spec -> 'tasks' as tasks
), task_rows as (
    select r.id as run_id, r.org_id, r.project_id, r.environment_id, k.n, k.key, r.tasks -> (k.n - 1) as spec,
           (r.tasks -> (k.n - 1) ->> 'engine') as engine, k.depends_on,
           case r.status
               when 'succeeded' then 'succeeded'
               when 'failed' then (array['succeeded', 'failed', 'skipped'])[k.n]
               when 'cancelled' then (array['succeeded', 'cancelled', 'skipped'])[k.n]
               when 'running' then (array['succeeded', 'running', 'pending'])[k.n]
               else (array['queued', 'pending', 'pending'])[k.n] end as status,
           r.status as run_status, r.created_at, r.started_at, r.finished_at,
           coalesce(r.finished_at, r.started_at + interval '90 seconds') as ends_at
    from new_runs r
    cross join (values (1, 'extract', '{{}}'::text[]), (2, 'transform', array['extract']),
                       (3, 'publish', array['transform'])) as k(n, key, depends_on)
), new_tasks as (
    insert into ops.tasks (run_id, org_id, project_id, environment_id, key, engine, spec, depends_on, pending_deps,
                           status, attempt, max_attempts, pool, executor_id, created_at, queued_at, claimed_at,
                           started_at, finished_at, error)
    select t.run_id, t.org_id, t.project_id, t.environment_id, t.key, t.engine, t.spec, t.depends_on,
           case when t.status = 'pending' then 1 else 0 end, t.status,
           case when t.status in ('queued', 'pending', 'skipped') then 0 else 1 end, 3, 'default',
           case when t.status in ('queued', 'pending', 'skipped') then null
                else params.agents[1 + abs(hashtext(t.run_id::text)) %% cardinality(params.agents)] end,
           t.created_at, t.created_at,
           case when t.status in ('queued', 'pending', 'skipped') then null
                else t.started_at + (t.ends_at - t.started_at) * (t.n - 1) / 3 end,
           case when t.status in ('queued', 'pending', 'skipped') then null
                else t.started_at + (t.ends_at - t.started_at) * (t.n - 1) / 3 + interval '200 milliseconds' end,
           case when t.status in ('succeeded', 'failed', 'cancelled', 'skipped')
                then coalesce(t.started_at + (t.ends_at - t.started_at) * t.n / 3, t.finished_at) end,
           case t.status when 'failed' then 'the command exited with code 3'
                         when 'skipped' then 'not run: upstream task "transform" ended ' || t.run_status
                         when 'cancelled' then 'cancelled by operator' end
    from task_rows t, params
    returning id, run_id, status, executor_id, claimed_at, started_at, finished_at
), new_attempts as (
    insert into ops.task_attempts (task_id, attempt, run_id, executor_id, lease_token, claimed_at, started_at,
                                   finished_at, outcome)
    select t.id, 1, t.run_id, t.executor_id, gen_random_uuid(), t.claimed_at, t.started_at, t.finished_at,
           case when t.status = 'running' then null else t.status end
    from new_tasks t where t.claimed_at is not null
    returning task_id
)
insert into ops.events (run_id, task_id, attempt, seq, ts, type, level, message, data)
select t.run_id, t.id, 1, g,
       t.started_at + (coalesce(t.finished_at, t.started_at + interval '90 seconds') - t.started_at) * g / 12,
       case when g = 0 then 'task.started' when g %% 4 = 3 then 'progress' else 'log' end,
       case when (abs(hashtext(t.id::text)) + g) %% 50 = 0 then 'error'
            when (abs(hashtext(t.id::text)) + g) %% 20 = 0 then 'warning'
            when g %% 9 = 5 then 'debug' else 'info' end,
       case when g = 0 then 'attempt 1 started' when g %% 4 = 3 then 'stage ' || g || ' done'
            else 'processed batch ' || g || ': ' || (abs(hashtext(t.id::text || g)) %% 100000) || ' rows' end,
       case when g %% 4 = 3 then jsonb_build_object('stage', g) else '{{}}'::jsonb end
from new_tasks t, params
cross join lateral generate_series(0,
    floor(params.events_per_task + (abs(hashtext(t.id::text)) %% 1000) / 1000.0)::integer - 1) g
where t.started_at is not null
"""

BIG_RUN_SQL = """
with run as (
    select r.id from ops.runs r where r.project_id = %(project)s and r.name = %(name)s
)
insert into ops.events (run_id, task_id, attempt, seq, ts, type, level, message, data)
select t.run_id, t.id, 1, 1000 + g, t.started_at + g * interval '5 milliseconds', 'log',
       case when g %% 97 = 0 then 'error' when g %% 41 = 0 then 'warning' when g %% 7 = 0 then 'debug' else 'info' end,
       'chatty step ' || t.key || ': record ' || g || ' of ' || %(per_task)s || ' checked',
       '{}'::jsonb
from ops.tasks t join run on run.id = t.run_id
cross join generate_series(1, %(per_task)s) g
"""


def database(url: str | None) -> tuple[str, object | None]:
    """The URL to seed: the given one, or the bench's embedded Postgres (started, left running)."""
    if url:
        return url, None
    server = start_embedded(BENCH_DIR / "pgdata")
    return server.ensure_database(BENCH_DATABASE), server


def prepare(url: str) -> None:
    """Schema, demo org/project, the bench admin and eight executors to attribute attempts to."""
    migrate(url)
    load_demo_data(url)
    import asyncio

    from control_room.services import users

    async def admin() -> None:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await users.create_admin(conn, email=BENCH_ADMIN, password=BENCH_PASSWORD, display_name="Bench Admin")

    asyncio.run(admin())
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "insert into ops.executors (org_id, name, pool, engines, max_concurrency, status, last_heartbeat_at, "
            "version) select (select org_id from ops.projects where id = %s), 'bench-agent-' || i, 'default', "
            "'{shell,python,dbt,spark,duckdb}', 8, 'offline', now() - interval '1 day', 'bench' "
            "from generate_series(1, 8) i on conflict (name) do nothing",
            (DEMO_PROJECT,),
        )


def seeded_runs(conn: psycopg.Connection) -> int:
    row = conn.execute("select count(*) from ops.runs where project_id = %s and name like '%% #%%'", (DEMO_PROJECT,))
    found = row.fetchone()
    return int(found[0]) if found else 0


def seed(url: str, *, runs: int, events: int, force: bool) -> None:
    started = time.monotonic()
    prepare(url)
    with psycopg.connect(url, autocommit=True) as conn:
        present = seeded_runs(conn)
        if present >= runs and not force:
            print(f"seed: {present:,} runs already present; nothing to do (--force adds more)")
            return
        first = present + 1 if force else 1
        # Each task that started gets about this many events; three tasks, of which ~2.9 start per run.
        per_task = max(events - BIG_RUN_EVENTS, 0) / max(runs * 2.91, 1)
        total = first + runs - 1
        for low in range(first, total + 1, CHUNK_RUNS):
            high = min(low + CHUNK_RUNS - 1, total)
            t0 = time.monotonic()
            conn.execute(
                CHUNK_SQL,  # type: ignore[arg-type]
                {"first": low, "last": high, "total": total, "events_per_task": per_task, "project": DEMO_PROJECT},
            )
            done = high - first + 1
            rate = (high - low + 1) / (time.monotonic() - t0)
            print(f"seed: {done:>9,} / {runs:,} runs  ({rate:,.0f} runs/s with tasks, attempts, events)", flush=True)
        big = conn.execute(
            "select r.id from ops.runs r where r.project_id = %s and r.name = %s", (DEMO_PROJECT, BIG_RUN_NAME)
        ).fetchone()
        if big is None:
            conn.execute(
                "update ops.runs set name = %s where id = (select id from ops.runs where project_id = %s "
                "and status = 'succeeded' and name like '%% #%%' order by created_at desc limit 1)",
                (BIG_RUN_NAME, DEMO_PROJECT),
            )
            t0 = time.monotonic()
            conn.execute(
                BIG_RUN_SQL, {"project": DEMO_PROJECT, "name": BIG_RUN_NAME, "per_task": BIG_RUN_EVENTS // 3 + 1}
            )
            print(f"seed: {BIG_RUN_EVENTS:,} events of one run in {time.monotonic() - t0:.1f} s", flush=True)
        t0 = time.monotonic()
        conn.execute("vacuum (analyze) ops.runs, ops.tasks, ops.task_attempts, ops.events, ops.audit_log")
        print(f"seed: vacuum analyze {time.monotonic() - t0:.1f} s")
        counts = conn.execute(
            "select (select count(*) from ops.runs), (select count(*) from ops.tasks), "
            "(select count(*) from ops.task_attempts), (select count(*) from ops.events)"
        ).fetchone()
        size = conn.execute("select pg_size_pretty(pg_database_size(current_database()))").fetchone()
    assert counts is not None
    assert size is not None
    elapsed = time.monotonic() - started
    print(
        f"seed: done in {elapsed / 60:.1f} min: {counts[0]:,} runs, {counts[1]:,} tasks, {counts[2]:,} attempts, "
        f"{counts[3]:,} events; database {size[0]}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("LAKEHOUSE_BENCH_DATABASE_URL"))
    parser.add_argument("--runs", type=int, default=int(os.environ.get("LAKEHOUSE_BENCH_RUNS", 1_000_000)))
    parser.add_argument("--events", type=int, default=int(os.environ.get("LAKEHOUSE_BENCH_EVENTS", 10_000_000)))
    parser.add_argument("--force", action="store_true", help="add another batch even when seeded already")
    args = parser.parse_args()
    url, server = database(args.database_url)
    try:
        seed(url, runs=args.runs, events=args.events, force=args.force)
    finally:
        if server is not None:
            server.stop()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
