"""Scheduler: 5,000 enabled schedules all due at the same minute, fired by 2 scheduler replicas (two
processes, each with its own connection); prints due -> fire visible p50/p95/p99, duplicates and
misses, then the CPU the replicas (and Postgres) use at idle with the 5,000 schedules planned.

The replicas run the real loop (control_room.loops.scheduler.run_scheduler) on a clock shifted so
the shared due minute comes a few seconds after start-up: nobody waits for a wall-clock minute.
Fire visibility is observed from a third connection polling every 20 ms (the latency includes the
commit of the replica's batch, so it is what a user or an API call could see).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
from _harness import ROOT, fmt, percentiles

SCHEDULES = 5_000
REPLICAS = 2
STARTUP_S = 45.0  # at most this long for the replica processes to import and connect (under load)
LEAD_S = 75.0  # real seconds from starting the replicas to the due minute: start-up, idle window, margin
IDLE_S = 20.0
DUE = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)  # the virtual due minute
LOG_DIR = Path(tempfile.gettempdir())  # the replicas' logs: scheduler-replica-N.log


def replica(url: str, offset_s: float) -> None:
    """A scheduler process whose clock reads real time + offset."""
    import logging

    from control_room.loops.scheduler import run_scheduler

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    offset = timedelta(seconds=offset_s)
    asyncio.run(run_scheduler(url, clock=lambda: datetime.now(UTC) + offset))


def seed(url: str) -> None:
    import psycopg

    from tests.integration.factories import make_tenant

    with psycopg.connect(url, autocommit=True) as conn:
        tenant = make_tenant(conn, "bench")
        template = conn.execute(
            "insert into ops.job_templates (org_id, project_id, name) values (%s, %s, 'tick') returning id",
            (tenant.org_id, tenant.project_id),
        ).fetchone()
        assert template
        conn.execute(
            "insert into ops.job_template_versions (template_id, version, tasks, content_sha256) "
            "values (%s, 1, %s, %s)",
            (template[0], json.dumps([{"key": "t", "engine": "shell", "config": {"command": "true"}}]), "0" * 64),
        )
        conn.execute(
            "insert into ops.schedules (org_id, project_id, name, template_id, environment_id, cron) "
            "select %s, %s, 's-' || g, %s, %s, '* * * * *' from generate_series(1, %s) g",
            (tenant.org_id, tenant.project_id, template[0], tenant.environments["dev"], SCHEDULES),
        )
        # Planned as a running scheduler would have planned them a minute earlier (planning 5,000
        # new schedules is a start-up cost, not part of firing them).
        conn.execute("update ops.schedules set next_fire_at = %s, next_due_at = %s", (DUE, DUE))


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def main() -> None:
    import shutil

    import psycopg

    from control_room.db.embedded import start_embedded
    from control_room.db.migrate import migrate

    root = Path(tempfile.mkdtemp(prefix="lh-bench-scheduler-"))
    pg = start_embedded(root / "pgdata")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        url = pg.ensure_database("bench")
        migrate(url)
        seed(url)
        due_real = time.time() + LEAD_S
        offset_s = DUE.timestamp() - due_real
        procs = [
            subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "replica", url, repr(offset_s)],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=(LOG_DIR / f"scheduler-replica-{n}.log").open("wb"),
            )
            for n in range(REPLICAS)
        ]
        # Idle first: 5,000 schedules planned for the due minute, nothing due yet, replicas ticking.
        with psycopg.connect(url, autocommit=True) as watcher:
            ready_by = time.time() + STARTUP_S
            while time.time() < ready_by:
                row = watcher.execute(
                    "select count(*) from pg_stat_activity where datname = current_database() "
                    "and pid <> pg_backend_pid() and backend_type = 'client backend'"
                ).fetchone()
                if row and row[0] >= REPLICAS:
                    break
                time.sleep(0.2)
        time.sleep(3.0)  # their first ticks (start-up work is not idle overhead)
        replicas = [psutil.Process(p.pid) for p in procs]
        postmaster = psutil.Process(int((root / "pgdata" / "postmaster.pid").read_text().split()[0]))
        postgres = [postmaster, *postmaster.children(recursive=True)]
        before_s, before_pg, started = cpu_seconds(replicas), cpu_seconds(postgres), time.time()
        time.sleep(IDLE_S)  # the measurement window itself
        postgres = [postmaster, *postmaster.children(recursive=True)]
        elapsed = time.time() - started
        sched_pct = 100 * (cpu_seconds(replicas) - before_s) / elapsed
        pg_pct = 100 * (cpu_seconds(postgres) - before_pg) / elapsed
        idle_line = (
            f"  idle CPU over {IDLE_S:.0f} s with {SCHEDULES} schedules planned: schedulers {sched_pct:.2f} % of a "
            f"core ({sched_pct / REPLICAS:.2f} % each), postgres {pg_pct:.2f} %, total {sched_pct + pg_pct:.2f} %"
        )
        recorded_at: list[float] = []  # when each fire became visible (any status)
        submitted_at: list[float] = []  # when each fire's run decision became visible (not pending)
        with psycopg.connect(url, autocommit=True) as conn:
            deadline = due_real + 120
            recorded = submitted = 0
            while submitted < SCHEDULES and time.time() < deadline:
                row = conn.execute(
                    "select count(*), count(*) filter (where status <> 'pending') from ops.schedule_fires "
                    "where fire_time = %s",
                    (DUE,),
                ).fetchone()
                now = time.time()
                assert row is not None
                recorded_at.extend([now] * (int(row[0]) - recorded))
                submitted_at.extend([now] * (int(row[1]) - submitted))
                recorded, submitted = int(row[0]), int(row[1])
                time.sleep(0.02)
            fires, distinct, schedules_fired, runs, fired = conn.execute(
                "select count(*), count(distinct (schedule_id, fire_time)), count(distinct schedule_id), "
                "(select count(*) from ops.runs), count(*) filter (where status = 'fired') from ops.schedule_fires "
                "where fire_time = %s",
                (DUE,),
            ).fetchone()  # type: ignore[misc]
            print(
                f"scheduler: {SCHEDULES} schedules due at one minute, {REPLICAS} replicas (processes), "
                f"{psutil.cpu_count()} cores"
            )
            for label, seen in (("due -> fire recorded ", recorded_at), ("due -> run submitted ", submitted_at)):
                if len(seen) > 1:
                    print(f"  {label} {fmt(percentiles([(t - due_real) * 1000 for t in seen]))}")
            print(
                f"  fires {fires} (fired {fired}), runs {runs}, duplicates {fires - distinct}, "
                f"missed {SCHEDULES - schedules_fired}"
            )
            print(idle_line)

    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "replica":
        replica(sys.argv[2], float(sys.argv[3]))
    else:
        main()
