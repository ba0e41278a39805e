"""Promotion gates on real Postgres: checks with evidence (successful runs in a window, dbt tests, critical
alerts, external checks), four-eyes approvals that expire with the evidence, enforcement in gated
environments (runs, scheduled fires), rollback, and one outcome for concurrent decisions."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from control_room.cli import app
from control_room.config import get_settings
from control_room.services import jobs, promotions
from control_room.services.auth import UserPrincipal, scoped
from control_room.services.errors import Conflict, Forbidden, Invalid, ServiceError, from_db_error
from tests.jobs.conftest import JobWorld, end_run, make_world, run_async, tick
from tests.jobs.test_template_runs import api_token, call_api


def gate(world: JobWorld, to: str, **columns: Any) -> uuid.UUID:
    """A project-wide gate into ``to`` (from the environment before it)."""
    source = {"staging": "dev", "prod": "staging"}[to]
    values = {"min_successful_runs": 1, "required_approvals": 0, "approvers": [], "required_checks": []} | columns
    row = world.conn.execute(
        "insert into ops.promotion_gates (org_id, project_id, name, from_environment, to_environment, "
        "min_successful_runs, required_approvals, approvers, required_checks) "
        "values (%s, %s, %s, %s, %s, %s, %s, %s, %s) returning id",
        (
            world.tenant.org_id, world.tenant.project_id, f"{source}-to-{to}", source, to,
            values["min_successful_runs"], values["required_approvals"], values["approvers"],
            values["required_checks"],
        ),
    ).fetchone()  # fmt: skip
    assert row
    return uuid.UUID(str(row[0]))


def run_version(world: JobWorld, database_url: str, env: str, version: int | None = None) -> dict[str, Any]:
    run, _ = run_async(
        database_url,
        lambda c: jobs.run_template(
            c, template_id=world.template_id, environment=env, params={"source": "orders"}, version=version
        ),
    )
    return run


def succeed(world: JobWorld, database_url: str, env: str, version: int | None = None) -> uuid.UUID:
    run = run_version(world, database_url, env, version)
    end_run(world.conn, run["id"])
    return uuid.UUID(str(run["id"]))


def request(world: JobWorld, database_url: str, version: int, to: str, user: uuid.UUID | None = None) -> dict[str, Any]:
    return run_async(
        database_url,
        lambda c: promotions.request_promotion(
            c, template_id=world.template_id, version=version, to_environment=to, user_id=user, comment="ship it"
        ),
    )


def evaluate(database_url: str, now: datetime | None = None) -> int:
    return run_async(database_url, lambda c: promotions.evaluate_pending(c, now=now or datetime.now(UTC)))


def get(database_url: str, request_id: uuid.UUID) -> dict[str, Any]:
    return run_async(database_url, lambda c: promotions.get_request(c, request_id=request_id))


def decide(database_url: str, request_id: uuid.UUID, decision: str, user: uuid.UUID, comment: str = "") -> str:
    async def work(c: psycopg.AsyncConnection) -> str:
        try:
            return await promotions.decide(c, request_id=request_id, decision=decision, user_id=user, comment=comment)
        except psycopg.Error as exc:
            mapped = from_db_error(exc)
            if mapped is None:
                raise
            raise mapped from exc

    return run_async(database_url, work)


def deployed(world: JobWorld, env: str) -> int | None:
    row = world.conn.execute(
        "select version from ops.deployments where template_id = %s and environment = %s order by id desc limit 1",
        (world.template_id, env),
    ).fetchone()
    return None if row is None else int(row[0])


def check(req: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in req["checks"] if c["name"] == name)


def test_a_version_without_enough_successful_runs_in_the_window_is_not_promoted(world: JobWorld, jobs_db: str) -> None:
    gate(world, "staging", min_successful_runs=2)
    v2 = world.add_version()
    assert deployed(world, "staging") is None  # nothing runs in a gated environment before a promotion
    req = request(world, jobs_db, v2, "staging")
    assert req["status"] == "pending"
    assert check(req, "successful_runs") | {"evidence": []} == {
        "name": "successful_runs", "label": "2 successful runs of v2 in dev (last 30 days)", "passed": False,
        "summary": "0 of 2", "evidence": [],
    }  # fmt: skip
    first = succeed(world, jobs_db, "dev")  # dev runs the latest version: v2
    run_version(world, jobs_db, "dev", version=1)  # another version's runs are no evidence
    end_run(world.conn, run_version(world, jobs_db, "dev")["id"], status="failed")  # nor are failures
    assert evaluate(jobs_db) == 0
    req = get(jobs_db, req["id"])
    assert req["status"] == "pending" and check(req, "successful_runs")["summary"] == "1 of 2"
    assert [e["id"] for e in check(req, "successful_runs")["evidence"]] == [str(first)]
    second = succeed(world, jobs_db, "dev")
    # 31 days later both runs are outside the gate's 30-day window: still not enough
    assert evaluate(jobs_db, datetime.now(UTC) + timedelta(days=31)) == 0
    assert check(get(jobs_db, req["id"]), "successful_runs")["summary"] == "0 of 2"
    assert evaluate(jobs_db) == 1
    req = get(jobs_db, req["id"])
    assert req["status"] == "promoted"
    assert req["outcome"] == "v2 deployed to staging (its first deployment there): checks passed, 0 approvals"
    assert {e["id"] for e in check(req, "successful_runs")["evidence"]} == {str(first), str(second)}
    assert deployed(world, "staging") == v2
    assert run_version(world, jobs_db, "staging")["template_version"] == v2
    audit = world.conn.execute(
        "select action from ops.audit_log where entity = 'promotion_requests' and entity_id = %s order by id",
        (req["id"],),
    ).fetchall()
    actions = [a[0] for a in audit]
    assert actions[0] == "request" and actions[-1] == "promote"


def test_failed_dbt_tests_critical_alerts_and_missing_ci_checks_block(world: JobWorld, jobs_db: str) -> None:
    gate(world, "staging", required_checks=["pr-gate"])
    v2 = world.add_version()
    run_id = succeed(world, jobs_db, "dev")
    task_id = world.conn.execute("select id from ops.tasks where run_id = %s limit 1", (run_id,)).fetchone()
    assert task_id
    world.conn.execute(
        "insert into ops.events (run_id, task_id, type, data) values (%s, %s, 'dbt.node_finished', %s), "
        "(%s, %s, 'dbt.node_finished', %s)",
        (
            run_id, task_id[0], json.dumps({"resource_type": "test", "name": "not_null_orders_id", "status": "fail"}),
            run_id, task_id[0], json.dumps({"resource_type": "test", "name": "unique_orders_id", "status": "pass"}),
        ),
    )  # fmt: skip
    rule = world.conn.execute(
        "insert into ops.alert_rules (org_id, name, kind, project_id, severity) "
        "values (%s, 'job-failed', 'run_failed', %s, 'critical') returning id",
        (world.tenant.org_id, world.tenant.project_id),
    ).fetchone()
    assert rule
    job = world.conn.execute(
        "select p.slug || '/' || t.name from ops.job_templates t join ops.projects p on p.id = t.project_id "
        "where t.id = %s",
        (world.template_id,),
    ).fetchone()
    assert job
    incident = world.conn.execute(
        "insert into ops.alert_incidents (org_id, rule_id, subject, job, project_id, severity, title, "
        "first_fired_at, last_fired_at) values (%s, %s, 'subject', %s, %s, 'critical', 'job failed', now(), now()) "
        "returning id",
        (world.tenant.org_id, rule[0], job[0], world.tenant.project_id),
    ).fetchone()
    assert incident
    req = request(world, jobs_db, v2, "staging")
    assert req["status"] == "pending"
    assert check(req, "successful_runs")["passed"]
    dbt = check(req, "dbt_tests")
    assert not dbt["passed"] and dbt["summary"] == "1 of 2 test results failed"
    assert dbt["evidence"] == [{"kind": "run", "id": str(run_id), "label": "not_null_orders_id: fail"}]
    alerts = check(req, "critical_alerts")
    assert not alerts["passed"] and alerts["evidence"][0]["id"] == str(incident[0])
    ci = check(req, "check:pr-gate")
    assert not ci["passed"] and "not reported" in ci["summary"]
    assert check(req, "contract")["passed"]

    # the evidence changes: a new run without test failures does not clear the failed one, but the rest clears
    world.conn.execute("update ops.alert_incidents set state = 'resolved', resolved_at = now() where id = %s",
                       (incident[0],))  # fmt: skip
    run_async(
        jobs_db,
        lambda c: promotions.report_check(
            c, template_id=world.template_id, version=v2, name="pr-gate", status="passed",
            url="https://ci.example/runs/42", by="ci",
        ),
    )  # fmt: skip
    req = get(jobs_db, req["id"])
    assert check(req, "critical_alerts")["passed"] and check(req, "check:pr-gate")["passed"]
    assert check(req, "check:pr-gate")["evidence"][0]["id"] == "https://ci.example/runs/42"
    assert req["status"] == "pending" and not req["checks_passed"]  # the failed dbt test still blocks


def test_four_eyes_viewers_refused_and_approvals_expire_when_the_evidence_changes(
    world: JobWorld, jobs_db: str
) -> None:
    gate(world, "staging", min_successful_runs=0, required_approvals=2, approvers=["role:operator"])
    v2 = world.add_version()
    requester, first, second, viewer = (world.user(r) for r in ("operator", "operator", "admin", "viewer"))
    req = request(world, jobs_db, v2, "staging", user=requester)
    assert req["status"] == "pending" and req["checks_passed"] and req["requested_by_id"] == requester
    notified = world.conn.execute(
        "select user_id from ops.notifications where link = %s", (f"/promotions/{req['id']}",)
    ).fetchall()
    assert {n[0] for n in notified} == {first, second}  # the approvers, not the requester nor the viewer

    with pytest.raises(Forbidden, match="four eyes"):
        decide(jobs_db, req["id"], "approve", requester)
    with pytest.raises(Forbidden, match="viewer role cannot approve"):
        decide(jobs_db, req["id"], "approve", viewer)
    assert decide(jobs_db, req["id"], "approve", first, "looks good") == "pending"
    assert get(jobs_db, req["id"])["approvals"] == 1

    # a critical alert opens on the job: the evidence changed, the approval given so far expires
    rule = world.conn.execute(
        "insert into ops.alert_rules (org_id, name, kind, project_id, severity) "
        "values (%s, 'r', 'run_failed', %s, 'critical') returning id",
        (world.tenant.org_id, world.tenant.project_id),
    ).fetchone()
    assert rule
    world.conn.execute(
        "insert into ops.alert_incidents (org_id, rule_id, subject, job, project_id, severity, title, "
        "first_fired_at, last_fired_at) select %s, %s, 's', p.slug || '/' || t.name, %s, 'critical', 'down', "
        "now(), now() from ops.job_templates t join ops.projects p on p.id = t.project_id where t.id = %s",
        (world.tenant.org_id, rule[0], world.tenant.project_id, world.template_id),
    )
    evaluate(jobs_db)
    req = get(jobs_db, req["id"])
    assert req["evidence_epoch"] == 1 and req["approvals"] == 0 and not req["checks_passed"]
    assert [d["in_force"] for d in req["decisions"]] == [False]
    world.conn.execute("update ops.alert_incidents set state = 'resolved' where rule_id = %s", (rule[0],))
    evaluate(jobs_db)
    # back to the same evidence as before, yet a new epoch: the old approval does not come back
    assert get(jobs_db, req["id"])["approvals"] == 0
    assert decide(jobs_db, req["id"], "approve", first) == "pending"
    assert decide(jobs_db, req["id"], "approve", second) == "promoted"
    assert deployed(world, "staging") == v2
    with pytest.raises(Conflict, match="promoted already"):
        decide(jobs_db, req["id"], "reject", first, "too late")


def test_prod_runs_only_its_deployed_version_and_scheduled_fires_use_it(world: JobWorld, jobs_db: str) -> None:
    gate(world, "staging", min_successful_runs=0)
    gate(world, "prod", min_successful_runs=1)
    with pytest.raises(psycopg.Error, match=r'job "job-\w+" has no version deployed to prod yet') as err:
        run_version(world, jobs_db, "prod")
    assert isinstance(from_db_error(err.value), Invalid)
    # a version must be in staging before prod
    with pytest.raises(psycopg.Error, match=r"version 1 of job .* is not deployed to staging"):
        request(world, jobs_db, 1, "prod")
    assert request(world, jobs_db, 1, "staging")["status"] == "promoted"  # no runs required into staging
    assert request(world, jobs_db, 1, "prod")["status"] == "pending"
    succeed(world, jobs_db, "staging")
    assert evaluate(jobs_db) == 1 and deployed(world, "prod") == 1

    v2 = world.add_version()
    with pytest.raises(
        psycopg.Error, match=r'version 2 of job "job-\w+" is not the version deployed to prod \(version 1'
    ) as err:
        run_version(world, jobs_db, "prod", version=v2)
    assert isinstance(from_db_error(err.value), Invalid)
    assert run_version(world, jobs_db, "prod")["template_version"] == 1
    assert run_version(world, jobs_db, "dev")["template_version"] == v2  # dev runs the latest
    # the API answers 422 problem+json naming the version
    admin_token = api_token(world, "admin")
    refused = call_api(
        pytest.MonkeyPatch(),
        jobs_db,
        [("POST", f"/api/v1/templates/{world.template_id}/runs", admin_token,
          {"environment": "prod", "version": v2, "params": {"source": "orders"}})],
    )[0]  # fmt: skip
    assert refused.status_code == 422 and refused.json()["field"] == "version"
    assert "version 2" in refused.json()["detail"] and "prod" in refused.json()["detail"]

    assert request(world, jobs_db, v2, "staging")["status"] == "promoted"
    req = request(world, jobs_db, v2, "prod")
    assert req["status"] == "pending"
    succeed(world, jobs_db, "staging")
    assert evaluate(jobs_db) == 1 and deployed(world, "prod") == v2
    assert get(jobs_db, req["id"])["outcome"].startswith("v2 deployed to prod (was v1)")

    schedule_id = world.schedule("* * * * *", env="prod", planned_from=datetime.now(UTC) - timedelta(minutes=2))
    tick(jobs_db, datetime.now(UTC))
    fires = world.fires(schedule_id)
    assert fires and fires[-1]["status"] == "fired" and fires[-1]["template_version"] == v2


def test_a_scheduled_fire_in_a_gated_environment_without_a_deployment_fails_with_the_reason(
    world: JobWorld, jobs_db: str
) -> None:
    gate(world, "prod")
    schedule_id = world.schedule("* * * * *", env="prod", planned_from=datetime.now(UTC) - timedelta(minutes=2))
    tick(jobs_db, datetime.now(UTC))
    fires = world.fires(schedule_id)
    assert fires and fires[-1]["status"] == "failed"
    assert "has no version deployed to prod yet" in fires[-1]["reason"]


def test_rollback_deploys_the_previous_version_and_is_audited(world: JobWorld, jobs_db: str) -> None:
    gate(world, "staging", min_successful_runs=0)
    v2 = world.add_version()
    admin, operator = world.user("admin"), world.user("operator")
    assert request(world, jobs_db, 1, "staging")["status"] == "promoted"
    assert request(world, jobs_db, v2, "staging")["status"] == "promoted"

    async def roll_back(c: psycopg.AsyncConnection, user: uuid.UUID) -> dict[str, Any]:
        await c.execute("set role authenticated")
        await c.execute(
            "select set_config('request.jwt.claims', %s, false)",
            (json.dumps({"sub": str(user), "role": "authenticated"}),),
        )
        return await promotions.rollback(c, template_id=world.template_id, environment="staging", comment="bad data")

    with pytest.raises(psycopg.Error, match="admin role"):
        run_async(jobs_db, lambda c: roll_back(c, operator))
    assert run_async(jobs_db, lambda c: roll_back(c, admin)) == {
        "version": 1, "previous_version": v2, "request_id": None, "status": "rolled_back",
    }  # fmt: skip
    assert deployed(world, "staging") == 1
    assert run_version(world, jobs_db, "staging")["template_version"] == 1
    history = run_async(
        jobs_db, lambda c: promotions.deployments(c, template_id=world.template_id, environment="staging")
    )
    assert [(d.action, d.version, d.previous_version) for d in history] == [
        ("rollback", 1, 2), ("promote", 2, 1), ("promote", 1, None),
    ]  # fmt: skip
    audit = world.conn.execute(
        "select actor, detail from ops.audit_log where entity = 'deployments' and action = 'rollback' "
        "and entity_id = %s",
        (world.template_id,),
    ).fetchall()
    assert len(audit) == 1 and audit[0][1]["comment"] == "bad data" and audit[0][0].endswith("@test.example")
    with pytest.raises(psycopg.Error, match="append-only"):
        world.conn.execute("delete from ops.deployments where template_id = %s", (world.template_id,))


def race_decision(
    database_url: str,
    request_id: uuid.UUID,
    decision: str,
    user: uuid.UUID,
    barrier: threading.Barrier,
    outcomes: dict[str, str],
) -> None:
    """Decide on a connection of its own once the other racer is ready; record the status or the error kind."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        barrier.wait()
        try:
            row = conn.execute(
                "select ops.decide_promotion(%s, %s, 'racing', %s)", (request_id, decision, user)
            ).fetchone()
            assert row
            outcomes[decision] = row[0]
        except psycopg.Error as exc:
            mapped = from_db_error(exc)
            outcomes[decision] = type(mapped).__name__ if isinstance(mapped, ServiceError) else str(exc)


def test_concurrent_approve_and_reject_have_one_outcome(world: JobWorld, jobs_db: str) -> None:
    gate(world, "staging", min_successful_runs=0, required_approvals=1, approvers=["role:operator"])
    v2 = world.add_version()
    requester, approver, rejecter = (world.user("operator") for _ in range(3))
    for _ in range(3):
        req = request(world, jobs_db, v2, "staging", user=requester)
        barrier = threading.Barrier(2)
        outcomes: dict[str, str] = {}
        threads = [
            threading.Thread(target=race_decision, args=(jobs_db, req["id"], decision, user, barrier, outcomes))
            for decision, user in (("approve", approver), ("reject", rejecter))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        status = get(jobs_db, req["id"])["status"]
        assert sorted(outcomes.values()) in (["Conflict", "promoted"], ["Conflict", "rejected"]), outcomes
        assert status in ("promoted", "rejected") and status in outcomes.values()
        promoted = world.conn.execute(
            "select count(*) from ops.deployments where promotion_id = %s", (req["id"],)
        ).fetchone()
        assert promoted and promoted[0] == (1 if status == "promoted" else 0)
        decided = world.conn.execute(
            "select count(*) from ops.promotion_decisions where request_id = %s", (req["id"],)
        ).fetchone()
        assert decided == (1,)  # the losing decision left no trace
        if status == "promoted":  # v2 is in staging now: no further request for it
            break


def test_request_validation_names_the_field(world: JobWorld, jobs_db: str) -> None:
    v2 = world.add_version()
    with pytest.raises(psycopg.Error) as err:
        request(world, jobs_db, v2, "staging")
    mapped = from_db_error(err.value)
    assert (
        isinstance(mapped, Invalid) and mapped.field == "to_environment" and "no enabled promotion gate" in str(mapped)
    )
    gate(world, "staging")
    with pytest.raises(psycopg.Error, match="has no version 9"):
        request(world, jobs_db, 9, "staging")
    assert request(world, jobs_db, 1, "staging")["status"] == "pending"  # min 1 successful run in dev
    succeed(world, jobs_db, "dev", version=1)
    assert evaluate(jobs_db) == 1
    with pytest.raises(psycopg.Error, match="deployed to staging already"):
        request(world, jobs_db, 1, "staging")
    with pytest.raises(Invalid, match="staging or prod"):
        request(world, jobs_db, v2, "dev")
    # a second request for the same job and environment supersedes the first
    first = request(world, jobs_db, v2, "staging")
    second = request(world, jobs_db, v2, "staging")
    assert get(jobs_db, first["id"])["status"] == "superseded" and second["status"] == "pending"
    with pytest.raises(psycopg.Error, match="immutable"):
        world.conn.execute("update ops.promotion_requests set version = 1 where id = %s", (second["id"],))


def test_the_promotion_commands(world: JobWorld, jobs_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAKEHOUSE_DATABASE_URL", jobs_db)
    get_settings.cache_clear()
    gate(world, "staging", min_successful_runs=0, required_approvals=1, approvers=["role:admin"])
    name = world.conn.execute("select name from ops.job_templates where id = %s", (world.template_id,)).fetchone()
    assert name
    emails = {}
    for role in ("operator", "admin"):
        user_id = world.user(role)
        row = world.conn.execute("select email from ops.users where id = %s", (user_id,)).fetchone()
        assert row
        emails[role] = row[0]
    runner = CliRunner()
    try:
        asked = runner.invoke(
            app, ["promote", name[0], "--version", "1", "--to", "staging", "--as", emails["operator"], "-m", "go"]
        )
        assert asked.exit_code == 0, asked.output
        assert f"{name[0]} v1 dev → staging  pending" in asked.output and "✓ v1 validates" in asked.output
        request_id = asked.output.split()[0]
        own = runner.invoke(app, ["promotions", "approve", request_id, "--as", emails["operator"]])
        assert own.exit_code == 1 and "four eyes" in own.output
        approved = runner.invoke(app, ["promotions", "approve", request_id, "--as", emails["admin"], "-m", "ok"])
        assert approved.exit_code == 0 and "promoted" in approved.output, approved.output
        pipeline = runner.invoke(app, ["promotions", "pipeline", "--project", str(world.tenant.project_id)])
        assert pipeline.exit_code == 0 and "dev v1 | staging* v1 | prod v1" in pipeline.output, pipeline.output
        listed = runner.invoke(app, ["promotions", "list"])
        assert listed.exit_code == 0 and request_id in listed.output and "promoted" in listed.output
        nobody = runner.invoke(app, ["promotions", "approve", request_id, "--as", "nobody@nowhere.example"])
        assert nobody.exit_code == 1 and "lakehouse users create" in nobody.output
    finally:
        get_settings.cache_clear()


def test_members_read_the_pipeline_requests_and_their_own_refusal_under_rls(world: JobWorld, jobs_db: str) -> None:
    gate(world, "staging", min_successful_runs=0, required_approvals=1, approvers=["role:admin"])
    requester = world.user("operator")
    req = request(world, jobs_db, 1, "staging", user=requester)
    viewer, admin = world.user("viewer"), world.user("admin")

    async def as_member(conn: psycopg.AsyncConnection, user: uuid.UUID) -> tuple[Any, ...]:
        async with scoped(conn, UserPrincipal(user_id=user, email="member@test.example")):
            pipeline = await promotions.pipeline(conn, project_id=world.tenant.project_id)
            page, _ = await promotions.requests_page(conn, project_id=world.tenant.project_id)
            refusal = await promotions.decision_refusal(conn, request_id=req["id"])
        return pipeline, page, refusal

    pipeline, page, refusal = run_async(jobs_db, lambda c: as_member(c, viewer))
    staging = pipeline[0]["environments"]["staging"]
    assert staging["gate"] == "dev-to-staging" and staging["gated"] and staging["request_id"] == req["id"]
    assert pipeline[0]["environments"]["dev"]["gate"] is None and pipeline[0]["environments"]["dev"]["runs"] == 1
    assert [r["id"] for r in page] == [req["id"]]
    assert refusal is not None and "viewer role cannot approve" in refusal
    assert run_async(jobs_db, lambda c: as_member(c, admin))[2] is None
    assert run_async(jobs_db, lambda c: as_member(c, requester))[2].endswith("(four eyes)")
    # another org's member sees nothing of it
    other = make_world(world.conn)
    outsider = other.user("admin")
    pipeline, page, refusal = run_async(jobs_db, lambda c: as_member(c, outsider))
    assert pipeline == [] and page == [] and "not visible to you" in refusal
