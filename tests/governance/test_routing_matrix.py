"""The routing matrix editor's services on real Postgres: live warnings, the diff, applying a draft in one
audited transaction (org admins only, refused in SQL for everybody else and for direct writes), positions
kept across a reorder, re-routing of queued work, the bundle-only lock, and the editor <-> bundle round trip."""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

import psycopg
import pytest

from control_room.bundle.deploy import deploy_bundle, plan_bundle
from control_room.bundle.export import export_bundle
from control_room.bundle.loader import load_bundle
from control_room.services import governance, routing
from control_room.services.errors import Conflict, Forbidden, Invalid
from tests.governance.conftest import GovWorld, add_executor
from tests.integration.factories import Tenant, submit, task

pytestmark = pytest.mark.migrations

DEMO_ORDER = ["prod-spark", "dbt-models", "sql-warehouse", "ml-training", "catch-all"]


def _matrix(gov: GovWorld, role: str = "org_admin") -> routing.Matrix:
    return gov.call(role, lambda c: routing.load_matrix(c, org_id=gov.org.org_id))


def _apply(gov: GovWorld, draft: list[routing.RuleDraft], role: str = "org_admin", fingerprint: str | None = None):
    matrix = _matrix(gov)
    return gov.call(
        role,
        lambda c: routing.apply(
            c, matrix=matrix, draft=draft, fingerprint=fingerprint or matrix.fingerprint, by=f"{role}@test"
        ),
    )


def _rule(matrix: routing.Matrix, name: str) -> routing.RuleDraft:
    return next(r for r in matrix.rules if r.name == name)


def test_live_warnings_name_pools_without_executors_shadowed_rules_owners_and_no_catch_all(
    gov: GovWorld, db: psycopg.Connection
) -> None:
    matrix = _matrix(gov, "viewer")
    assert [r.name for r in matrix.rules] == DEMO_ORDER
    assert next((w.name, w.message) for w in routing.warnings(matrix) if w.kind == "no_executor") == (
        "prod-spark",
        "pool default has no executor",
    )
    add_executor(db, gov.org, pool="default", engines=["shell", "python", "dbt", "duckdb"])
    matrix = _matrix(gov, "viewer")
    found = routing.warnings(matrix)
    assert [(w.name, w.kind, w.message) for w in found] == [
        ("prod-spark", "no_executor", "no executor in pool default offers engine spark")
    ]
    catch_all = _rule(matrix, "catch-all")
    dbt = dataclasses.replace(_rule(matrix, "dbt-models"), owner="data-team", pool="gpu")
    draft = [catch_all, dbt, *[r for r in matrix.rules if r.name not in ("catch-all", "dbt-models")]]
    kinds = {(w.name, w.kind) for w in routing.warnings(matrix, draft)}
    assert {("dbt-models", "shadowed"), ("prod-spark", "shadowed"), ("ml-training", "shadowed")} <= kinds
    assert ("dbt-models", "owner") in kinds and ("dbt-models", "no_executor") in kinds
    no_catch_all = [dataclasses.replace(r, enabled=r.name != "catch-all") for r in matrix.rules]
    assert [w.message for w in routing.warnings(matrix, no_catch_all) if w.kind == "no_catch_all"] == [
        'no catch-all rule: tasks no rule matches go to pool "default"'
    ]


def test_apply_reorders_in_one_audited_transaction_and_keeps_bundle_positions(
    gov: GovWorld, db: psycopg.Connection
) -> None:
    matrix = _matrix(gov)
    rules = list(matrix.rules)
    rules[0], rules[1] = rules[1], dataclasses.replace(rules[0], pool="default", owner="spark-team@test.example")
    new = routing.RuleDraft(name="gpu-training", project="ml", tags=["gpu"], pool="gpu", owner="ml@test.example")
    rules.insert(3, new)
    rules = [r for r in rules if r.name != "sql-warehouse"]
    changes = [c.describe() for c in routing.diff(matrix.rules, routing.renumber(rules))]
    assert changes == [
        "- sql-warehouse",
        "~ prod-spark: position 10 -> 30, owner data-platform@demo.example -> spark-team@test.example",
        "+ gpu-training",
    ]
    result = _apply(gov, rules)
    assert (result["created"], result["updated"], result["deleted"]) == (1, 1, 1)
    live = db.execute(
        "select name, position from ops.routing_rules where org_id = %s order by position", (gov.org.org_id,)
    ).fetchall()
    assert live == [
        ("dbt-models", 20),
        ("prod-spark", 30),
        ("gpu-training", 35),
        ("ml-training", 40),
        ("catch-all", 1000),
    ]
    audit = db.execute(
        "select action, detail ->> 'name', detail -> 'before' ->> 'owner', detail -> 'after' ->> 'owner' "
        "from ops.audit_log where entity = 'routing_rules' and detail ->> 'org_id' = %s and actor = 'org_admin@test' "
        "order by id",
        (str(gov.org.org_id),),
    ).fetchall()
    assert audit == [
        ("delete", "sql-warehouse", "analytics-engineering@demo.example", None),
        ("update", "prod-spark", "data-platform@demo.example", "spark-team@test.example"),
        ("create", "gpu-training", None, "ml@test.example"),
    ]


def test_only_org_admins_apply_and_forged_writes_are_refused_in_sql(gov: GovWorld, db: psycopg.Connection) -> None:
    matrix = _matrix(gov)
    draft = [dataclasses.replace(r, enabled=False) if r.name == "dbt-models" else r for r in matrix.rules]
    for role in ("viewer", "operator", "project_admin", "stranger"):
        with pytest.raises(Forbidden):
            _apply(gov, draft, role=role)
    forged = "update ops.routing_rules set pool = 'evil' where org_id = %s"
    for role in ("org_admin", "project_admin"):
        with pytest.raises(Forbidden):
            gov.call(role, lambda c: c.execute(forged, (gov.org.org_id,)))
    with pytest.raises(Forbidden):
        gov.call(
            "org_admin",
            lambda c: c.execute(
                "insert into ops.routing_rules (org_id, name, position, pool) values (%s, 'x', 1, 'evil')",
                (gov.org.org_id,),
            ),
        )
    assert db.execute(
        "select count(*) from ops.routing_rules where org_id = %s and (pool = 'evil' or not enabled)", (gov.org.org_id,)
    ).fetchone() == (0,)


def test_a_stale_draft_invalid_rules_and_a_locked_org_are_refused(gov: GovWorld, db: psycopg.Connection) -> None:
    matrix = _matrix(gov)
    _apply(gov, [dataclasses.replace(r, owner="x@test.example") if r.name == "catch-all" else r for r in matrix.rules])
    with pytest.raises(Conflict, match="changed since you loaded it"):
        _apply(gov, matrix.rules, fingerprint=matrix.fingerprint)
    fresh = _matrix(gov)
    with pytest.raises(Invalid) as bad_pool:
        _apply(gov, [*fresh.rules, routing.RuleDraft(name="bad", pool="Not A Pool")])
    assert bad_pool.value.field == "rules[5].pool"
    with pytest.raises(Invalid) as twice:
        _apply(gov, [*fresh.rules, routing.RuleDraft(name="catch-all", pool="default")])
    assert "another rule is named" in twice.value.message
    gov.call("org_admin", lambda c: c.execute(
        "select ops.set_governance_lock(%s, true, 'https://git.test/org/bundle', null)", (gov.org.org_id,)
    ))  # fmt: skip
    with pytest.raises(Conflict, match=r"managed by its bundle only \(https://git.test/org/bundle\)"):
        _apply(gov, fresh.rules)


def test_queued_tasks_are_previewed_and_rerouted_on_apply(gov: GovWorld, db: psycopg.Connection) -> None:
    project = db.execute(
        "select id from ops.projects where org_id = %s and slug = 'lakehouse'", (gov.org.org_id,)
    ).fetchone()
    assert project
    envs = dict(db.execute("select name, id from ops.environments where project_id = %s", (project[0],)).fetchall())
    tenant = Tenant(org_id=gov.org.org_id, project_id=project[0], environments=envs)
    submit(db, tenant, [task("a"), task("b")], environment="dev")
    matrix = _matrix(gov)
    draft = [dataclasses.replace(r, pool="etl") if r.name == "catch-all" else r for r in matrix.rules]
    queued = gov.call("org_admin", lambda c: routing.queued_tasks(c, org_id=gov.org.org_id, projects=matrix.projects))
    assert routing.reroute_preview(queued, draft) == {("default", "etl"): 2}
    _apply(gov, draft)
    pools = db.execute(
        "select pool, count(*) from ops.tasks where org_id = %s and status = 'queued' group by pool", (gov.org.org_id,)
    ).fetchall()
    assert pools == [("etl", 2)]


def test_editor_bundle_round_trip(gov: GovWorld, db: psycopg.Connection, tmp_path: Path) -> None:
    matrix = _matrix(gov)
    assert governance.drift(db, org=gov.org.slug).has_drift is False
    rules = list(matrix.rules)
    rules[1], rules[2] = rules[2], rules[1]
    _apply(gov, rules)
    drift = governance.drift(db, org=gov.org.slug)
    assert drift.has_drift
    assert drift.lines() == ["~ routing_rules dbt-models: position 20 -> 35"]
    # `lakehouse bundle plan` of the repository's bundle shows the UI's edit as drift ...
    assert [c.key for c in plan_bundle(db, load_bundle(gov.bundle_dir)).changes] == ["dbt-models"]
    # ... export it, deploy the export, and there is nothing left to change or drift.
    exported = tmp_path / "exported"
    export_bundle(db, gov.org.slug, exported)
    loaded = load_bundle(exported)
    assert plan_bundle(db, loaded).is_empty
    deploy_bundle(db, loaded, actor="tests")
    assert governance.drift(db, org=gov.org.slug).has_drift is False
    assert db.execute(
        "select count(*) from ops.bundle_deployments where org_id = %s", (gov.org.org_id,)
    ).fetchone() == (2,)
    deploy_bundle(db, loaded, actor="tests")  # unchanged: nothing recorded again
    assert db.execute(
        "select count(*) from ops.bundle_deployments where org_id = %s", (gov.org.org_id,)
    ).fetchone() == (2,)
    archive = governance.export_zip(db, org=gov.org.slug)
    assert archive[:2] == b"PK" and f"{gov.org.slug}-bundle/routing.yaml".encode() in archive


def test_renumber_keeps_positions_the_order_allows() -> None:
    def rules(*positions: int) -> list[routing.RuleDraft]:
        return [routing.RuleDraft(id=str(uuid.uuid4()), name=f"r{p}", position=p) for p in positions]

    assert [r.position for r in routing.renumber(rules(10, 20, 30))] == [10, 20, 30]
    assert [r.position for r in routing.renumber(rules(20, 10, 30))] == [20, 25, 30]
    assert [r.position for r in routing.renumber(rules(10, 11, 11, 12))] == [10, 11, 21, 31]
    new = routing.RuleDraft(name="new")
    assert [r.position for r in routing.renumber([new, *rules(10, 20)])] == [5, 10, 20]


def test_a_reader_outside_a_rules_project_sees_it_as_hidden_and_it_matches_only_that_project(gov: GovWorld) -> None:
    ml_training = _rule(_matrix(gov, "viewer"), "ml-training")  # the viewer is a member of lakehouse only
    ml_id = _matrix(gov).projects["ml"]
    assert ml_training.project == f"{routing.HIDDEN}{ml_id}"
    lakehouse_training = routing.TaskProbe("lakehouse", "dev", "shell", (), ("training",))
    assert routing.explain(_matrix(gov, "viewer").rules, lakehouse_training).rule == "catch-all"
    assert routing.validation_problems([ml_training], ["lakehouse"]) == []
    forged = dataclasses.replace(ml_training, project="#not-an-id")
    (problem,) = routing.validation_problems([forged], ["lakehouse"])
    assert (problem.kind, problem.field) == ("invalid", "project")
