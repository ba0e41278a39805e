"""Caps configured from the pages, API and CLI on real Postgres: saved and deleted by admins only (refused
in SQL otherwise, direct writes included), audited, shown with live usage, the enforcing layer and the reason
queued work waits; and the caps that apply to a task with the tightest of each kind."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.types.json import Jsonb

from control_room.services import caps
from control_room.services.errors import Forbidden, Invalid
from tests.governance.conftest import GovWorld, add_executor
from tests.integration.factories import Tenant, submit, task

pytestmark = pytest.mark.migrations

POOL_CAP = caps.CapDraft(
    name="default-pool-concurrency", scope="pool", pool="default", kind="concurrent_tasks", limit=1
)


def _caps(gov: GovWorld, role: str = "viewer") -> dict[str, caps.CapView]:
    return {c.name: c for c in gov.call(role, lambda c: caps.list_caps(c, org_id=gov.org.org_id))}


def _tenant(gov: GovWorld, db: psycopg.Connection) -> Tenant:
    project = db.execute(
        "select id from ops.projects where org_id = %s and slug = 'lakehouse'", (gov.org.org_id,)
    ).fetchone()
    assert project
    envs = dict(db.execute("select name, id from ops.environments where project_id = %s", (project[0],)).fetchall())
    return Tenant(org_id=gov.org.org_id, project_id=project[0], environments=envs)


def test_a_cap_of_one_concurrent_task_shows_usage_and_makes_the_second_task_wait(
    gov: GovWorld, db: psycopg.Connection
) -> None:
    listed = _caps(gov)
    assert listed["lakehouse-concurrency"].layer == "claim" and listed["org-runs-per-day"].layer == "submit"
    assert listed["spark-memory"].layer == "agent" and listed["sql-scan-limit"].layer == "engine"
    assert listed["prod-max-runtime"].target == "lakehouse/prod"
    gov.call("org_admin", lambda c: caps.save_cap(c, org_id=gov.org.org_id, draft=POOL_CAP, by="admin@test"))
    name = add_executor(db, gov.org, pool="default", engines=["shell"])
    executor = db.execute("select id from ops.executors where name = %s", (name,)).fetchone()
    assert executor
    submit(db, _tenant(gov, db), [task("a"), task("b")])
    first = db.execute("select task_id from ops.claim_tasks(%s, null, null, 2, 60)", (executor[0],)).fetchall()
    assert len(first) == 1, "the pool cap lets one task run"
    view = _caps(gov)["default-pool-concurrency"]
    assert (view.used, view.limit, view.percent, view.waiting) == (1.0, 1, 100, 1)
    assert view.waiting_reason == "pool at its concurrency cap"
    assert db.execute("select task_id from ops.claim_tasks(%s, null, null, 2, 60)", (executor[0],)).fetchall() == []
    audit = db.execute(
        "select actor, action, detail -> 'after' ->> 'limit_value' from ops.audit_log "
        "where entity = 'caps' and detail ->> 'name' = %s and detail ->> 'org_id' = %s",
        (POOL_CAP.name, str(gov.org.org_id)),
    ).fetchall()
    assert audit == [("admin@test", "create", "1")]


def test_only_admins_edit_caps_and_forged_writes_are_refused(gov: GovWorld, db: psycopg.Connection) -> None:
    for role in ("viewer", "operator", "project_admin", "stranger"):
        with pytest.raises(Forbidden):
            gov.call(role, lambda c: caps.save_cap(c, org_id=gov.org.org_id, draft=POOL_CAP, by=None))
    project_cap = caps.CapDraft(name="lh-runs", scope="project", project="lakehouse", kind="runs_per_day", limit=50)
    gov.call("project_admin", lambda c: caps.save_cap(c, org_id=gov.org.org_id, draft=project_cap, by=None))
    ml_cap = caps.CapDraft(name="ml-runs", scope="project", project="ml", kind="runs_per_day", limit=50)
    with pytest.raises(Invalid, match="not a project of this org that you can see"):
        gov.call("project_admin", lambda c: caps.save_cap(c, org_id=gov.org.org_id, draft=ml_cap, by=None))
    ml = db.execute("select id from ops.projects where org_id = %s and slug = 'ml'", (gov.org.org_id,)).fetchone()
    assert ml
    with pytest.raises(Forbidden):  # the same cap forged straight at the SQL function
        gov.call("project_admin", lambda c: c.execute(
            "select ops.save_cap(%s, null, 'ml-runs', 'project', %s, null, null, null, 'runs_per_day', 50, true)",
            (gov.org.org_id, ml[0]),
        ))  # fmt: skip
    with pytest.raises(Forbidden):
        gov.call(
            "org_admin", lambda c: c.execute("update ops.caps set limit_value = 0 where org_id = %s", (gov.org.org_id,))
        )
    assert db.execute(
        "select count(*) from ops.caps where org_id = %s and limit_value = 0", (gov.org.org_id,)
    ).fetchone() == (0,)
    cap_id = gov.call("viewer", lambda c: caps.cap_id_by_name(c, org_id=gov.org.org_id, name="lh-runs"))
    with pytest.raises(Forbidden):
        gov.call("operator", lambda c: caps.delete_cap(c, cap_id=cap_id, by=None))
    gov.call("org_admin", lambda c: caps.delete_cap(c, cap_id=cap_id, by="admin@test"))
    assert "lh-runs" not in _caps(gov)
    with pytest.raises(Invalid) as bad:
        gov.call("org_admin", lambda c: caps.save_cap(
            c, org_id=gov.org.org_id, draft=caps.CapDraft(name="x", scope="pool", kind="max_cores", limit=2), by=None
        ))  # fmt: skip
    assert bad.value.field == "pool"


def test_effective_caps_name_the_tightest_of_each_kind(gov: GovWorld) -> None:
    gov.call("org_admin", lambda c: caps.save_cap(c, org_id=gov.org.org_id, draft=POOL_CAP, by=None))
    spec = caps.TaskScope(project="lakehouse", environment="prod", pool="default", engine="spark")
    found = [(c.name, tightest) for c, tightest in caps.effective(list(_caps(gov).values()), spec)]
    assert found == [
        ("default-pool-concurrency", True),
        ("lakehouse-concurrency", False),
        ("prod-max-runtime", True),
        ("org-runs-per-day", True),
        ("spark-memory", True),
    ]


def _claim(db: psycopg.Connection, executor: str) -> list[tuple[object, ...]]:
    return db.execute(
        "select task_id, lease_token from ops.claim_tasks((select id from ops.executors where name = %s), "
        "null, null, 1, 60)",
        (executor,),
    ).fetchall()


def test_each_cap_lists_the_last_refusals_it_caused_with_their_runs(gov: GovWorld, db: psycopg.Connection) -> None:
    gov.call("org_admin", lambda c: caps.save_cap(c, org_id=gov.org.org_id, draft=POOL_CAP, by=None))
    for draft in (
        caps.CapDraft(name="org-output", scope="org", kind="max_output_bytes", limit=1_000_000),
        caps.CapDraft(name="lh-output", scope="project", project="lakehouse", kind="max_output_bytes", limit=5_000),
    ):
        gov.call("org_admin", lambda c, d=draft: caps.save_cap(c, org_id=gov.org.org_id, draft=d, by=None))
    # Room for two: the second task waits for the cap, not for the executor.
    executor = add_executor(db, gov.org, pool="default", engines=["shell", "duckdb"], max_concurrency=2)
    tenant = _tenant(gov, db)
    query_run = submit(db, tenant, [task("q", "duckdb", sql="select 1")], name="scan-heavy")
    ((task_id, lease),) = _claim(db, executor)
    held_run = submit(db, tenant, [task("w")], name="waits-for-a-slot")
    assert _claim(db, executor) == [], "the pool cap of one task holds the second run"
    events = [
        {"seq": 0, "type": "start", "message": "attempt 1 started"},
        {"seq": 1, "type": "sql.statement.refused", "level": "error",
         "message": "statement 1 refused: the estimated scan exceeds the scanned-bytes cap"},
        {"seq": 2, "type": "limits.output_exceeded", "level": "error", "message": "output is over max_output_bytes"},
    ]  # fmt: skip
    db.execute("select ops.append_events(%s, %s, %s)", (task_id, lease, Jsonb(events)))

    listed = _caps(gov, "viewer")
    (scan,) = listed["sql-scan-limit"].recent
    assert (scan.layer, scan.run_id, scan.run_name, scan.task_key, scan.attempt) == (
        "engine", str(query_run), "scan-heavy", "q", 1
    )  # fmt: skip
    assert "scanned-bytes cap" in scan.message
    # The output refusal belongs to the tightest output cap that applies (the one the agent was handed).
    (output,) = listed["lh-output"].recent
    assert (output.layer, output.task_key) == ("agent", "q") and listed["org-output"].recent == ()
    (held,) = listed["default-pool-concurrency"].recent
    assert (held.layer, held.run_id, held.task_key) == ("claim", str(held_run), "w")
    assert held.message == 'held in the queue: pool at its concurrency cap "default-pool-concurrency" (1 running of 1)'
    assert listed["lakehouse-concurrency"].recent == (), "16 slots: nothing held"
    # Another org's admin sees none of them (events and tasks are read as the caller).
    assert gov.call("stranger", lambda c: caps.refusals(c, org_id=gov.org.org_id)) == {}


def test_effective_caps_for_a_spec_route_each_task_and_weigh_the_specs_own_ceilings(gov: GovWorld) -> None:
    gov.call("org_admin", lambda c: caps.save_cap(c, org_id=gov.org.org_id, draft=POOL_CAP, by=None))
    spec = {
        "name": "nightly",
        "tasks": [
            {"key": "train", "engine": "spark", "application": "job.py", "timeout_s": 600},
            {"key": "report", "engine": "duckdb", "sql": "select 1", "max_scan_bytes": 20_000_000_000},
        ],
    }
    found = gov.call(
        "viewer",
        lambda c: caps.effective_for_spec(c, org_id=gov.org.org_id, project="lakehouse", environment="prod", spec=spec),
    )
    train, report = found
    assert (train.key, train.pool, train.rule) == ("train", "default", "prod-spark")
    assert [(x.source, x.tightest) for x in train.limits] == [
        ("default-pool-concurrency", True),
        ("lakehouse-concurrency", False),
        ("spec timeout_s", True),  # 600 s beats the environment's 3600 s
        ("prod-max-runtime", False),
        ("org-runs-per-day", True),
        ("spark-memory", True),
    ]
    assert (report.rule, [x.source for x in report.tightest]) == (
        "sql-warehouse", ["default-pool-concurrency", "prod-max-runtime", "org-runs-per-day", "sql-scan-limit"]
    )  # fmt: skip
    # One task spec answers too (for a project the caller can see); a task without an engine names the field.
    (one,) = gov.call(
        "org_admin",
        lambda c: caps.effective_for_spec(
            c, org_id=gov.org.org_id, project="ml", environment="dev", spec={"engine": "python", "script": "x.py"}
        ),
    )
    assert one.key == "task-1" and [x.source for x in one.limits] == [
        "default-pool-concurrency", "org-runs-per-day", "ml-compute-per-day"
    ]  # fmt: skip
    with pytest.raises(Invalid) as bad:
        gov.call(
            "viewer",
            lambda c: caps.effective_for_spec(
                c, org_id=gov.org.org_id, project="lakehouse", environment="dev", spec={"tasks": [{"key": "x"}]}
            ),
        )
    assert bad.value.field == "spec.tasks[0].engine"
    with pytest.raises(Invalid, match=r'project "ml" is not a project of org .* \(projects: lakehouse\)'):
        gov.call(
            "viewer",
            lambda c: caps.effective_for_spec(c, org_id=gov.org.org_id, project="ml", environment="dev", spec=spec),
        )
