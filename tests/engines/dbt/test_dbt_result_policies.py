"""Results of a dbt task carry the policies of the datasets it read: the session's build of the example project
reported its lineage to the live control plane (real Postgres), which kept the task's inputs; a viewer whose
group may not read a seed the build read sees none of the task's results, a row filter on one withholds them
too (dbt applies no policies), and a mask on raw_customers.country masks every column the build's column
lineage leads it to (stg_customers.country_code, fct_orders.country_code)."""

from __future__ import annotations

import json
import uuid

import psycopg

from control_room.services import result_policies
from control_room.services.auth import UserPrincipal, scoped
from tests.access.world import run_async
from tests.engines.dbt.conftest import Built
from tests.live import Provisioner


def test_a_dbt_tasks_results_carry_its_inputs_policies(built: Built, provision: Provisioner) -> None:
    assert built.result.outcome == "succeeded", built.result.error
    task_id = uuid.UUID(built.claimed.task_id)
    url = provision.database_url
    with psycopg.connect(url, autocommit=True) as db:
        inputs = {
            str(r[0]).rsplit(".", 1)[-1]: r[1]
            for r in db.execute(
                "select d.name, d.id from ops.task_datasets t join ops.datasets d on d.id = t.dataset_id "
                "where t.task_id = %s and t.direction = 'input'",
                (task_id,),
            ).fetchall()
        }
        assert {"raw_customers", "raw_orders", "stg_customers", "stg_orders"} <= set(inputs)
        outputs = {
            str(r[0]).rsplit(".", 1)[-1]
            for r in db.execute(
                "select d.name from ops.task_datasets t join ops.datasets d on d.id = t.dataset_id "
                "where t.task_id = %s and t.direction = 'output'",
                (task_id,),
            ).fetchall()
        }
        assert {"dim_customers", "fct_orders", "stg_customers"} <= outputs
        org = db.execute("select org_id from ops.projects where id = %s", (built.claimed.project_id,)).fetchone()
        assert org
        email = f"bi-{uuid.uuid4().hex[:6]}@shop.example"
        user = db.execute("insert into ops.users (email) values (%s) returning id, email", (email,)).fetchone()
        assert user
        db.execute("insert into ops.project_members (project_id, user_id, role) values (%s, %s, 'viewer')",
                   (built.claimed.project_id, user[0]))  # fmt: skip
        analyst = UserPrincipal(user_id=user[0], email=str(user[1]))
        db.execute("select ops.save_principal_group(%s, 'bi', '', %s::jsonb, 'tests')",
                   (org[0], json.dumps([{"kind": "user", "name": analyst.email}])))  # fmt: skip

        def policy(body: dict[str, str]) -> None:
            db.execute("select ops.save_access_policy(%s, null, %s::jsonb, 'tests')", (org[0], json.dumps(
                {"target_kind": "dataset", "principal_kind": "group", "principal": "bi", **body})))  # fmt: skip

        def verdict() -> result_policies.RowsPolicy:
            async def go(conn: psycopg.AsyncConnection) -> result_policies.RowsPolicy:
                async with scoped(conn, analyst):
                    return await result_policies.rows_policy(conn, artifact={"task_id": task_id})

            return run_async(url, go)

        try:
            assert verdict() == result_policies.RowsPolicy()  # an org without policies is not checked
            policy({"name": "bi-mask-country", "kind": "column_mask", "target": str(inputs["raw_customers"]),
                    "mask_column": "country", "mask_kind": "hash"})  # fmt: skip
            masked = verdict()
            assert masked.withheld is None
            assert masked.masks == {"country": "hash", "country_code": "hash"}
            assert masked.reason_for_bytes is not None and "country, country_code" in masked.reason_for_bytes

            policy({"name": "bi-eu-orders", "kind": "row_filter", "target": str(inputs["raw_orders"]),
                    "row_filter": "status = 'placed'"})  # fmt: skip
            filtered = verdict().withheld
            assert filtered is not None and "filter the rows of dataset" in filtered and "raw_orders" in filtered
            assert "the dbt engine does not apply row filters" in filtered
            db.execute("delete from ops.access_policies where org_id = %s and name = 'bi-eu-orders'", (org[0],))

            policy({"name": "bi-no-orders", "kind": "deny", "target": str(inputs["stg_orders"]), "privilege": "read"})
            denied = verdict().withheld
            assert denied is not None and "you may not read dataset" in denied and "stg_orders" in denied
            assert 'denied by policy "bi-no-orders"' in denied
        finally:  # the build is shared by the session: leave its org ungoverned
            db.execute("delete from ops.access_policies where org_id = %s and name like 'bi-%%'", (org[0],))
            db.execute("delete from ops.principal_groups where org_id = %s and name = 'bi'", (org[0],))
