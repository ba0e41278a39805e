"""Submits, claims and batch finalizes hammer the same caps at once: with one lock order (caps by id, then
cap_usage by cap_id; see 20261203000100_tenancy.sql) Postgres never has to break a deadlock (40P01).

Runs for a minute, the issue's soak (LAKEHOUSE_LOCK_ORDER_SECONDS shortens it while iterating locally)."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid

import psycopg
import pytest

from tests.integration.factories import make_executor, make_tenant

pytestmark = [pytest.mark.migrations, pytest.mark.slow]

SECONDS = float(os.environ.get("LAKEHOUSE_LOCK_ORDER_SECONDS", "60"))


def test_submit_claim_and_finalize_never_deadlock_on_shared_caps(db: psycopg.Connection, database_url: str) -> None:
    tenant = make_tenant(db)
    pool = f"locks-{uuid.uuid4().hex[:8]}"
    # Caps of every scope and kind the three paths lock, created in an order unlike their ids.
    for name, scope, column, value, kind in [
        ("org-runs", "org", None, None, "runs_per_day"),
        ("project-slots", "project", "project_id", tenant.project_id, "concurrent_tasks"),
        ("engine-compute", "engine", "engine", "shell", "compute_seconds_per_day"),
        ("env-runs", "environment", "environment_id", tenant.environments["dev"], "runs_per_day"),
        ("pool-slots", "pool", "pool", pool, "concurrent_tasks"),
        ("org-runtime", "org", None, None, "max_runtime_s"),
    ]:
        columns = "org_id, name, scope, kind, limit_value" + (f", {column}" if column else "")
        values = [tenant.org_id, name, scope, kind, 10_000_000] + ([value] if column else [])
        db.execute(
            f"insert into ops.caps ({columns}) values ({', '.join(['%s'] * len(values))})",
            values,
        )
    executors = [make_executor(db, tenant, pool=pool, max_concurrency=10_000) for _ in range(3)]
    spec = json.dumps({"tasks": [{"key": f"t{i}", "engine": "shell", "pool": pool} for i in range(20)]})
    deadline = time.monotonic() + SECONDS
    failures: list[str] = []
    counts = {"submits": 0, "claimed": 0, "finalized": 0}
    lock = threading.Lock()

    def record(exc: psycopg.Error) -> None:
        with lock:
            failures.append(f"{exc.sqlstate}: {exc}")

    def submitter() -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            while time.monotonic() < deadline:
                try:
                    conn.execute("select * from ops.submit_run(%s, 'dev', %s::jsonb)", (tenant.project_id, spec))
                    with lock:
                        counts["submits"] += 1
                except psycopg.Error as exc:
                    record(exc)

    def worker(executor: uuid.UUID) -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            while time.monotonic() < deadline:
                try:
                    rows = conn.execute(
                        "select task_id, lease_token from ops.claim_tasks(%s, null, null, 15, 60)", (executor,)
                    ).fetchall()
                    if not rows:
                        continue
                    items = [
                        {"task_id": str(t), "lease_token": str(lease), "outcome": "succeeded"} for t, lease in rows
                    ]
                    done = conn.execute("select error_code from ops.finalize_tasks(%s::jsonb)", (json.dumps(items),))
                    errors = [r[0] for r in done.fetchall() if r[0]]
                    with lock:
                        counts["claimed"] += len(rows)
                        counts["finalized"] += len(rows) - len(errors)
                        failures.extend(f"finalize item: {e}" for e in errors)
                except psycopg.Error as exc:
                    record(exc)

    threads = [threading.Thread(target=submitter) for _ in range(3)]
    threads += [threading.Thread(target=worker, args=(e,)) for e in executors]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=SECONDS + 60)
    assert failures == [], f"{len(failures)} failures, e.g. {failures[:3]}"
    assert counts["submits"] > 10 and counts["finalized"] > 100, counts
    usage = db.execute(
        "select c.name, u.runs from ops.cap_usage u join ops.caps c on c.id = u.cap_id "
        "where c.org_id = %s and c.name = 'org-runs'",
        (tenant.org_id,),
    ).fetchone()
    assert usage == ("org-runs", counts["submits"]), "every submit counted exactly once"
