"""`lakehouse bundle deploy --target prod` is itself subject to the prod gate (issue 18): a bundle whose job
version is not the one deployed in a gated environment opens a promotion request instead of deploying it,
says so, and deploys nothing there; ungated environments run the latest as before."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from control_room.bundle.deploy import deploy_bundle, plan_bundle
from control_room.bundle.loader import load_bundle
from control_room.bundle.plan import TargetStep
from tests.bundle.conftest import CliResult, DemoLikeOrg, edit


def deployed(db: psycopg.Connection, org: DemoLikeOrg, environment: str) -> dict[str, int]:
    rows = db.execute(
        "select distinct on (d.template_id) p.slug || '/' || t.name, d.version from ops.deployments d "
        "join ops.job_templates t on t.id = d.template_id join ops.projects p on p.id = d.project_id "
        "where d.org_id = %s and d.environment = %s order by d.template_id, d.id desc",
        (org.org_id, environment),
    ).fetchall()
    return {key: version for key, version in rows}


def pending(db: psycopg.Connection, org: DemoLikeOrg) -> dict[str, tuple[str, int, str]]:
    rows = db.execute(
        "select p.slug || '/' || t.name, x.id::text, x.version, x.to_environment from ops.promotion_requests x "
        "join ops.job_templates t on t.id = x.template_id join ops.projects p on p.id = x.project_id "
        "where x.org_id = %s and x.status = 'pending'",
        (org.org_id,),
    ).fetchall()
    return {key: (request_id, version, env) for key, request_id, version, env in rows}


def promote_to_staging(db: psycopg.Connection, org: DemoLikeOrg, job: str, version: int) -> None:
    """Record ``job`` v``version`` as promoted to staging (as its dev -> staging promotion would have)."""
    db.execute(
        "insert into ops.deployments (org_id, project_id, template_id, environment_id, environment, version, "
        "version_id, action, actor) select t.org_id, t.project_id, t.id, e.id, e.name, v.version, v.id, 'promote', "
        "'test' from ops.job_templates t join ops.environments e on e.project_id = t.project_id and e.name = 'staging' "
        "join ops.job_template_versions v on v.template_id = t.id and v.version = %s "
        "where t.org_id = %s and t.name = %s",
        (version, org.org_id, job),
    )


def test_a_bundle_deployed_into_prod_opens_promotion_requests_instead_of_changing_prod(
    db: psycopg.Connection, org: DemoLikeOrg, bundle_dir: Path, lakehouse: Callable[..., CliResult]
) -> None:
    deploy_bundle(db, load_bundle(bundle_dir), actor="test")  # v1 of every job; gated environments run none
    promote_to_staging(db, org, "nightly-ingest", 1)

    plan = plan_bundle(db, load_bundle(bundle_dir), target="prod")
    steps = {step.job: step for step in plan.targets}
    assert steps["lakehouse/nightly-ingest"] == TargetStep(
        "lakehouse/nightly-ingest", "prod", 1, None, "request", "staging-to-prod"
    )
    assert steps["ml/feature-freshness"].outcome == "not gated"  # only train-churn-model is gated into prod in ml
    assert pending(db, org) == {}, "a plan opens nothing"

    result = lakehouse("bundle", "deploy", str(bundle_dir), "--target", "prod", "--actor", "ci")
    assert result.exit_code == 0, result.stderr
    assert "Nothing to deploy." in result.stdout
    assert (
        "prod is gated: opened 2 promotion request(s) instead of deploying lakehouse/nightly-ingest v1, "
        "ml/train-churn-model v1 there" in result.stdout
    )
    requests = pending(db, org)
    assert {key: (version, env) for key, (_, version, env) in requests.items()} == {
        "lakehouse/nightly-ingest": (1, "prod"), "ml/train-churn-model": (1, "prod"),
    }  # fmt: skip
    ingest_request = requests["lakehouse/nightly-ingest"][0]
    assert (
        f"? lakehouse/nightly-ingest: promotion request {ingest_request} opened for v1 instead of deploying it "
        "(gate staging-to-prod; nothing runs until it is promoted)" in result.stdout
    )
    # dbt-build v1 never reached staging: no request, and the reason is printed.
    assert (
        '! lakehouse/dbt-build: v1 not requested: version 1 of job "dbt-build" is not deployed to staging '
        "(version none is): promote it to staging first (nothing keeps running)" in result.stdout
    )
    assert deployed(db, org, "prod") == {}, "prod got no version from the bundle"
    row = db.execute(
        "select x.requested_by, x.comment, e.name, r.trigger from ops.promotion_requests x "
        "join ops.runs r on r.id = x.check_run_id join ops.environments e on e.id = r.environment_id "
        "where x.id = %s",
        (ingest_request,),
    ).fetchone()
    assert row == ("ci", "bundle deploy --target prod by ci", "prod", "promotion")  # its smoke test runs in prod

    # Deploying the same bundle again opens nothing new: the requests are pending.
    again = lakehouse("bundle", "deploy", str(bundle_dir), "--target", "prod", "--format", "json")
    assert again.exit_code == 0, again.stderr
    targets = {t["job"]: t for t in json.loads(again.stdout)["targets"]}
    assert targets["lakehouse/nightly-ingest"] | {"deployed": None} == {
        "job": "lakehouse/nightly-ingest", "environment": "prod", "version": 1, "deployed": None,
        "outcome": "pending", "gate": "staging-to-prod", "request_id": ingest_request,
    }  # fmt: skip
    assert pending(db, org) == requests

    # A new version of the job in the bundle: created as v2 (dev runs it), but prod still asks for staging first.
    edit(bundle_dir / "job_templates" / "lakehouse" / "nightly-ingest.yaml", "timeout_s: 1800", "timeout_s: 1700")
    third = lakehouse("bundle", "deploy", str(bundle_dir), "--target", "prod")
    assert third.exit_code == 0, third.stderr
    assert "Deployed 1 change(s)." in third.stdout
    refusal = 'v2 not requested: version 2 of job "nightly-ingest" is not deployed to staging (version 1 is)'
    assert refusal in third.stdout
    assert deployed(db, org, "prod") == {} and pending(db, org) == requests


def test_a_target_nothing_gates_runs_the_latest_and_a_promoted_version_is_current(
    db: psycopg.Connection, org: DemoLikeOrg, bundle_dir: Path
) -> None:
    deploy_bundle(db, load_bundle(bundle_dir), actor="test")
    plan = deploy_bundle(db, load_bundle(bundle_dir), actor="test", target="dev")
    assert plan.is_empty and {step.outcome for step in plan.targets} == {"not gated"}
    promote_to_staging(db, org, "nightly-ingest", 1)
    plan = deploy_bundle(db, load_bundle(bundle_dir), actor="test", target="staging")
    steps = {step.job: step for step in plan.targets}
    assert steps["lakehouse/nightly-ingest"].outcome == "current"
    assert steps["lakehouse/dbt-build"].outcome == "requested"  # dev -> staging needs no earlier deployment
    assert steps["ml/train-churn-model"].outcome == "not gated"
    assert "Target staging:" in plan.render()


def admin_of(db: psycopg.Connection, org: DemoLikeOrg) -> tuple[uuid.UUID, str]:
    email = f"deployer-{uuid.uuid4().hex[:8]}@test.example"
    row = db.execute("insert into ops.users (email) values (%s) returning id", (email,)).fetchone()
    assert row
    db.execute("insert into ops.org_members (org_id, user_id, role) values (%s, %s, 'admin')", (org.org_id, row[0]))
    return row[0], email


def test_the_deployer_requests_the_promotions_and_may_not_approve_them(
    db: psycopg.Connection, org: DemoLikeOrg, bundle_dir: Path, lakehouse: Callable[..., CliResult]
) -> None:
    # the gate's new settings travel in the bundle (validated: at most 10 rollback approvals)
    gates = bundle_dir / "promotion_gates.yaml"
    settings = "    rollback_approvals: 11\n    allow_unpromoted_runs: true\n"
    edit(gates, "    window_days: 14\n", "    window_days: 14\n" + settings)
    invalid = lakehouse("bundle", "validate", str(bundle_dir))
    assert invalid.exit_code == 1 and "rollback_approvals" in invalid.stdout + invalid.stderr
    edit(gates, "rollback_approvals: 11", "rollback_approvals: 2")
    deploy_bundle(db, load_bundle(bundle_dir), actor="test")
    assert db.execute(
        "select allow_unpromoted_runs, rollback_approvals from ops.promotion_gates where org_id = %s "
        "and name = 'staging-to-prod'", (org.org_id,),
    ).fetchone() == (True, 2)  # fmt: skip
    assert plan_bundle(db, load_bundle(bundle_dir)).is_empty, "read back as deployed: no drift"
    promote_to_staging(db, org, "nightly-ingest", 1)

    deployer, email = admin_of(db, org)
    other, _ = admin_of(db, org)
    unknown = lakehouse("bundle", "deploy", str(bundle_dir), "--target", "prod", "--as", "nobody@test.example")
    assert unknown.exit_code == 1 and 'no user with e-mail "nobody@test.example"' in unknown.stderr
    result = lakehouse("bundle", "deploy", str(bundle_dir), "--target", "prod", "--as", email)
    assert result.exit_code == 0, result.stderr
    request_id = pending(db, org)["lakehouse/nightly-ingest"][0]
    row = db.execute(
        "select requested_by, requested_by_id, comment from ops.promotion_requests where id = %s", (request_id,)
    ).fetchone()
    assert row == (email, deployer, f"bundle deploy --target prod by {email}")
    # four eyes: the deployer's own approval is refused, another admin's counts
    with pytest.raises(psycopg.Error, match="you requested this promotion"):
        db.execute("select ops.decide_promotion(%s, 'approve', 'mine', %s)", (request_id, deployer))
    assert db.execute("select ops.decide_promotion(%s, 'approve', 'ok', %s)", (request_id, other)).fetchone() == (
        "pending",  # its checks (runs in staging, pr-gate) are not green yet
    )
    assert db.execute(
        "select array_agg(actor_id) from ops.promotion_decisions where request_id = %s and decision = 'approve'",
        (request_id,),
    ).fetchone() == ([other],)
