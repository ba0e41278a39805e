"""A gate's custom checks as a task on real Postgres: the check tasks run as a real run in the target
environment (submitted through ops.submit_run, so caps apply), recorded on the request; the check passes
iff that run succeeded, and new evidence cancels the stale run and submits another. Runs finish here
through ops.refresh_run_status (tests/agent/test_promotion_check_agent.py runs one on a real agent)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from control_room.bundle.loader import load_bundle
from control_room.bundle.source import InvalidInput
from tests.jobs.conftest import JobWorld, end_run
from tests.jobs.test_promotions import check, decide, deployed, evaluate, get, request, succeed

SMOKE = [
    {"key": "smoke", "engine": "shell", "timeout_s": 60, "config": {"command": "echo smoke $LAKEHOUSE_PARAM_VERSION"}},
    {"key": "quality", "engine": "shell", "depends_on": ["smoke"], "config": {"command": "echo rows ok"}},
]


def gate_with_checks(world: JobWorld, to: str = "staging", **columns: Any) -> uuid.UUID:
    source = {"staging": "dev", "prod": "staging"}[to]
    row = world.conn.execute(
        "insert into ops.promotion_gates (org_id, project_id, name, from_environment, to_environment, "
        "min_successful_runs, required_approvals, approvers, check_tasks) "
        "values (%s, %s, %s, %s, %s, %s, %s, %s, %s) returning id",
        (
            world.tenant.org_id, world.tenant.project_id, f"{source}-to-{to}", source, to,
            columns.get("min_successful_runs", 1), columns.get("required_approvals", 0),
            columns.get("approvers", []), json.dumps(columns.get("check_tasks", SMOKE)),
        ),
    ).fetchone()  # fmt: skip
    assert row
    return uuid.UUID(str(row[0]))


def run_row(world: JobWorld, run_id: Any) -> dict[str, Any]:
    row = world.conn.execute(
        "select r.status, e.name, r.trigger, r.tags, r.params, r.requested_by, r.spec -> 'tasks', r.template_id "
        "from ops.runs r join ops.environments e on e.id = r.environment_id where r.id = %s",
        (run_id,),
    ).fetchone()
    assert row
    keys = ("status", "environment", "trigger", "tags", "params", "requested_by", "tasks", "template_id")
    return dict(zip(keys, row, strict=True))


def test_the_check_tasks_run_in_the_target_environment_and_their_run_decides_the_check(
    world: JobWorld, jobs_db: str
) -> None:
    gate_with_checks(world)
    operator = world.user("operator")
    v2 = world.add_version()
    req = request(world, jobs_db, v2, "staging", user=operator)
    first = req["check_run_id"]
    assert first is not None and req["status"] == "pending"
    ran = run_row(world, first)
    assert ran | {"tasks": None, "params": None} == {
        "status": "queued", "environment": "staging", "trigger": "promotion", "tags": ["promotion-check"],
        "params": None, "requested_by": operator, "tasks": None, "template_id": None,
    }  # fmt: skip
    assert ran["params"] == {
        "job": ran["params"]["job"], "version": v2, "from_environment": "dev", "to_environment": "staging",
        "promotion_request": str(req["id"]),
    }  # fmt: skip
    assert [(t["key"], t["command"], t.get("depends_on")) for t in ran["tasks"]] == [
        ("smoke", "echo smoke $LAKEHOUSE_PARAM_VERSION", None), ("quality", "echo rows ok", ["smoke"]),
    ]  # fmt: skip
    custom = check(req, "check_run")
    assert custom | {"evidence": []} == {
        "name": "check_run", "label": "check tasks (smoke, quality) succeed in a run in staging", "passed": False,
        "summary": "run queued", "evidence": [],
    }  # fmt: skip
    assert custom["evidence"] == [{"kind": "run", "id": str(first), "label": "check run · queued"}]

    # Re-evaluating with the same evidence submits nothing new.
    assert evaluate(jobs_db) == 0
    assert get(jobs_db, req["id"])["check_run_id"] == first

    # New evidence (a dev run of v2 succeeds): the stale check run is cancelled and the checks run again.
    succeed(world, jobs_db, "dev")
    assert evaluate(jobs_db) == 0
    req = get(jobs_db, req["id"])
    second = req["check_run_id"]
    assert second not in (None, first)
    assert run_row(world, first)["status"] == "cancelled"
    assert check(req, "successful_runs")["passed"] and not check(req, "check_run")["passed"]
    assert req["status"] == "pending" and deployed(world, "staging") is None

    # The check run fails: the check says which task, and nothing is promoted.
    world.conn.execute(
        "update ops.tasks set status = case key when 'smoke' then 'succeeded' else 'failed' end, attempt = 1, "
        "started_at = now(), finished_at = now() where run_id = %s",
        (second,),
    )
    world.conn.execute("select ops.refresh_run_status(%s)", (second,))
    evaluate(jobs_db)
    req = get(jobs_db, req["id"])
    assert check(req, "check_run") | {"evidence": []} == {
        "name": "check_run", "label": "check tasks (smoke, quality) succeed in a run in staging", "passed": False,
        "summary": "run failed: quality failed", "evidence": [],
    }  # fmt: skip
    assert req["status"] == "pending" and deployed(world, "staging") is None
    audit = world.conn.execute(
        "select detail ->> 'run_id' from ops.audit_log where entity = 'promotion_requests' and entity_id = %s "
        "and action = 'check_run' order by id",
        (req["id"],),
    ).fetchall()
    assert [a[0] for a in audit] == [str(first), str(second)]


def test_a_succeeded_check_run_lets_the_promotion_through_and_its_approvals_follow_the_evidence(
    world: JobWorld, jobs_db: str
) -> None:
    approver = world.user("admin")
    gate_with_checks(world, required_approvals=1, approvers=["role:admin"])
    v2 = world.add_version()
    succeed(world, jobs_db, "dev")
    req = request(world, jobs_db, v2, "staging", user=world.user("operator"))
    assert check(req, "successful_runs")["passed"] and not req["checks_passed"]
    assert decide(jobs_db, req["id"], "approve", approver) == "pending"  # the check run is still queued
    end_run(world.conn, req["check_run_id"])
    assert evaluate(jobs_db) == 0  # the evidence changed (the check passed): that approval expired
    req = get(jobs_db, req["id"])
    assert req["checks_passed"] and req["approvals"] == 0 and req["evidence_epoch"] == 1
    assert check(req, "check_run")["summary"] == "run succeeded"
    assert decide(jobs_db, req["id"], "approve", approver) == "promoted"
    assert deployed(world, "staging") == v2


def test_a_refused_check_run_fails_the_check_with_the_reason(world: JobWorld, jobs_db: str) -> None:
    gate_with_checks(world)
    world.conn.execute(
        "insert into ops.caps (org_id, name, scope, environment_id, kind, limit_value) "
        "values (%s, 'no-staging-runs', 'environment', %s, 'runs_per_day', 0)",
        (world.tenant.org_id, world.tenant.environments["staging"]),
    )
    v2 = world.add_version()
    req = request(world, jobs_db, v2, "staging")
    assert req["check_run_id"] is None
    assert "no-staging-runs" in req["check_run_refusal"]
    custom = check(req, "check_run")
    assert not custom["passed"] and custom["summary"].startswith('not submitted: cap "no-staging-runs"')
    before = world.conn.execute("select count(*) from ops.runs where trigger = 'promotion'").fetchone()
    evaluate(jobs_db)  # same evidence: not tried again on every pass
    assert world.conn.execute("select count(*) from ops.runs where trigger = 'promotion'").fetchone() == before


def test_a_rejected_or_superseded_request_cancels_its_check_run(world: JobWorld, jobs_db: str) -> None:
    approver = world.user("admin")
    gate_with_checks(world, required_approvals=1, approvers=["role:admin"])
    v2, v3 = world.add_version(), world.add_version()
    first = request(world, jobs_db, v2, "staging", user=world.user("operator"))
    second = request(world, jobs_db, v3, "staging", user=world.user("operator"))  # supersedes the first
    assert get(jobs_db, first["id"])["status"] == "superseded"
    assert run_row(world, first["check_run_id"])["status"] == "cancelled"
    assert run_row(world, second["check_run_id"])["status"] == "queued"
    assert decide(jobs_db, second["id"], "reject", approver, comment="not this week") == "rejected"
    assert run_row(world, second["check_run_id"])["status"] == "cancelled"


def test_the_bundle_checks_a_gates_check_tasks_as_run_spec_tasks(tmp_path: Any) -> None:
    (tmp_path / "bundle.yaml").write_text("org: demo\n")
    (tmp_path / "gates.yaml").write_text(
        "promotion_gates:\n"
        "  - project: lakehouse\n    name: to-prod\n    from_environment: staging\n    to_environment: prod\n"
        "    check_tasks:\n"
        "      - {key: smoke, engine: shell, config: {}}\n"
        "      - {key: smoke, engine: shell, depends_on: [nope], config: {command: echo}}\n"
    )
    try:
        load_bundle(tmp_path)
    except InvalidInput as exc:
        problems = [str(p) for p in exc.problems]
    else:
        raise AssertionError("the bundle should not validate")
    assert [p.split(": ", 1)[1] for p in problems] == [
        "promotion_gates[0].check_tasks[0].config: give exactly one of command, argv (a string for the shell, "
        "or a list run as is); got none",
        'promotion_gates[0].check_tasks[1].depends_on[0]: unknown task key "nope"',
        'promotion_gates[0].check_tasks[1].key: duplicate task key "smoke"',
    ]
