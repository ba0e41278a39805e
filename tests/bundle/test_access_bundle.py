"""Access policies in the GitOps bundle: service principals, groups and policies validate, plan, deploy
(through the audited SQL functions) and export back to the same bundle; a dataset policy names its dataset
by full name, and an unknown dataset is an error naming the file and line."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from control_room.bundle.deploy import deploy_bundle, plan_bundle
from control_room.bundle.export import export_bundle, live_bundle
from control_room.bundle.loader import load_bundle
from control_room.bundle.models import sorted_bundle
from control_room.bundle.source import InvalidInput
from tests.bundle.conftest import DemoLikeOrg, edit, line_of

DATASET_POLICY = """  - name: analysts-read-orders
    kind: grant
    target: warehouse.main.orders
    principal_kind: group
    principal: analysts
    privilege: read
"""


def add_orders_dataset(db: psycopg.Connection, org: DemoLikeOrg) -> None:
    run = db.execute(
        "select s.run_id from ops.projects p, ops.submit_run(p.id, 'dev', %s::jsonb, '{}'::jsonb, 'api', null, "
        "'tests', null) s where p.org_id = %s and p.slug = 'lakehouse'",
        (json.dumps({"name": "orders", "tasks": [{"key": "q", "engine": "duckdb", "sql": "select 1"}]}), org.org_id),
    ).fetchone()
    assert run
    db.execute(
        "insert into ops.datasets (project_id, namespace, name, kind, first_run_id, last_run_id, last_task_id) "
        "select r.project_id, 'duckdb://w', 'warehouse.main.orders', 'table', r.id, r.id, t.id "
        "from ops.runs r join ops.tasks t on t.run_id = r.id where r.id = %s",
        (run[0],),
    )


def test_groups_service_principals_and_policies_deploy_and_export_round_trip(
    db: psycopg.Connection, org: DemoLikeOrg, bundle_dir: Path, tmp_path: Path
) -> None:
    add_orders_dataset(db, org)
    access = bundle_dir / "access.yaml"
    edit(access, "access_policies:\n", "access_policies:\n" + DATASET_POLICY)
    loaded = load_bundle(bundle_dir)
    plan = plan_bundle(db, loaded)
    access_sections = ("service_principals", "groups", "access_policies")
    assert {(c.section, c.key, c.action) for c in plan.changes if c.section in access_sections} == {
        ("service_principals", "nightly-etl", "create"), ("groups", "analysts", "create"),
        ("access_policies", "mask-customer-email", "create"), ("access_policies", "analysts-read-orders", "create"),
    }  # fmt: skip
    deploy_bundle(db, loaded, actor="tests")
    assert plan_bundle(db, load_bundle(bundle_dir)).is_empty
    target = db.execute(
        "select x.target, d.name from ops.access_policies x join ops.datasets d on d.id::text = x.target "
        "where x.org_id = %s and x.name = 'analysts-read-orders'",
        (org.org_id,),
    ).fetchone()
    assert target and target[1] == "warehouse.main.orders"  # stored by id, named by name in the bundle
    audited = db.execute(
        "select count(*) from ops.access_audit(%s, 50) where actor = 'tests'", (org.org_id,)
    ).fetchone()
    assert audited == (4,)

    # Changes: a policy's mask, a group's members; a removed service principal is deleted.
    edit(access, "    mask_kind: partial\n", "    mask_kind: hash\n")
    edit(access, "        name: analyst@demo.example\n", "        name: analyst@demo.example\n"
         "      - kind: user\n        name: bi@demo.example\n")  # fmt: skip
    edit(access, "service_principals:\n  - name: nightly-etl\n    description: Runs the nightly ingest when its "
         "template sets run_as.\n", "")  # fmt: skip
    plan = plan_bundle(db, load_bundle(bundle_dir))
    assert {(c.section, c.key, c.action) for c in plan.changes} == {
        ("access_policies", "mask-customer-email", "update"), ("groups", "analysts", "update"),
        ("service_principals", "nightly-etl", "delete"),
    }  # fmt: skip
    deploy_bundle(db, load_bundle(bundle_dir), actor="tests")
    live = live_bundle(db, org.slug)
    assert sorted_bundle(live) == sorted_bundle(load_bundle(bundle_dir).bundle)
    assert [m.name for m in live.groups[0].members] == ["analyst@demo.example", "bi@demo.example"]

    exported = tmp_path / "exported"
    export_bundle(db, org.slug, exported)
    assert (exported / "access.yaml").exists()
    assert sorted_bundle(load_bundle(exported).bundle) == sorted_bundle(live)
    assert plan_bundle(db, load_bundle(exported)).is_empty


def test_a_dataset_policy_naming_an_unknown_dataset_is_refused(db: psycopg.Connection, bundle_dir: Path) -> None:
    access = bundle_dir / "access.yaml"
    edit(access, "access_policies:\n", "access_policies:\n" + DATASET_POLICY.replace("orders", "nowhere"))
    with pytest.raises(InvalidInput) as caught:
        plan_bundle(db, load_bundle(bundle_dir))
    [problem] = caught.value.problems
    assert str(problem).startswith(
        f"{access}:{line_of(access, 'target: warehouse.main.nowhere')}: access_policies[0].target"
    )
    assert 'no dataset "warehouse.main.nowhere"' in str(problem)
