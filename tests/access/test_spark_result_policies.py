"""Results of a Spark task carry the policies of its inputs: the lineage report the Spark engine builds for its
job (executor_agent's own payload builder, on real Parquet inputs) reaches the control plane's report on real
Postgres, which keeps the task's inputs; then a viewer denied an input sees no rows, and a mask on an input's
column masks the result column of the same name (Spark reports no column lineage)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq

from control_room.services import lineage, result_policies
from control_room.services.auth import scoped
from executor_agent.engines.spark_support.lineage import describe_location, lineage_payload
from tests.access.world import make_user, run_async
from tests.integration.factories import claim, make_executor, make_tenant, task


def test_a_spark_tasks_results_carry_its_inputs_policies(
    db: psycopg.Connection, database_url: str, tmp_path: Path
) -> None:
    customers, orders = tmp_path / "customers.parquet", tmp_path / "orders.parquet"
    pq.write_table(pa.table({"id": [1], "email": ["ann@shop.example"], "region": ["EU"]}), customers)
    pq.write_table(pa.table({"id": [10], "customer_id": [1]}), orders)
    inputs = [describe_location(customers), describe_location(orders)]
    payload = lineage_payload(outputs=[describe_location(tmp_path / "daily")], inputs=inputs, job_name="daily_sales")
    tenant = make_tenant(db)
    analyst = make_user(db, tenant, "analyst")
    pool = f"spark-{uuid.uuid4().hex[:8]}"
    executor = make_executor(db, tenant, pool=pool, engines=("spark",))
    db.execute(
        "select ops.submit_run(%s, 'dev', %s::jsonb, '{}'::jsonb, 'api', %s, %s)",
        (tenant.project_id, json.dumps({"name": "daily", "tasks": [task("job", "spark", pool=pool)]}),
         analyst.user_id, analyst.email),
    )  # fmt: skip
    (claimed,) = claim(db, executor, engines=["spark"])

    async def report(conn: psycopg.AsyncConnection) -> None:
        await lineage.report_lineage(
            conn, task_id=claimed["task_id"], lease_token=claimed["lease_token"], datasets=payload["datasets"],
            edges=payload["edges"], openlineage_events=[],
        )  # fmt: skip

    run_async(database_url, report)
    ids = {
        Path(r[0]).name: r[1]
        for r in db.execute(
            "select d.name, d.id from ops.task_datasets t join ops.datasets d on d.id = t.dataset_id "
            "where t.task_id = %s and t.direction = 'input'",
            (claimed["task_id"],),
        ).fetchall()
    }
    assert set(ids) == {"customers.parquet", "orders.parquet"}

    def policy(body: dict[str, str]) -> None:
        db.execute("select ops.save_access_policy(%s, null, %s::jsonb, 'tests')", (tenant.org_id, json.dumps(
            {"target_kind": "dataset", "principal_kind": "user", "principal": analyst.email, **body})))  # fmt: skip

    def verdict() -> result_policies.RowsPolicy:
        async def go(conn: psycopg.AsyncConnection) -> result_policies.RowsPolicy:
            async with scoped(conn, analyst):
                return await result_policies.rows_policy(conn, artifact={"task_id": claimed["task_id"]})

        return run_async(database_url, go)

    policy({"name": "mask-email", "kind": "column_mask", "target": str(ids["customers.parquet"]),
            "mask_column": "email", "mask_kind": "redact"})  # fmt: skip
    assert verdict() == result_policies.RowsPolicy(masks={"email": "redact"})
    policy({"name": "no-orders", "kind": "deny", "target": str(ids["orders.parquet"]), "privilege": "read"})
    denied = verdict().withheld
    assert denied is not None and "orders.parquet, a source of this result" in denied
