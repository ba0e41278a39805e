"""Promotion gate settings on real Postgres: ``allow_unpromoted_runs`` (a gated environment may run a version
other than its deployed one when a run names it) and ``rollback_approvals`` (a rollback opens a request that
needs the gate's approvals, four eyes, and no checks)."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from control_room.cli import app
from control_room.config import get_settings
from control_room.services import promotion_notices, promotions
from control_room.services.errors import Forbidden, Invalid, from_db_error
from control_room.state.promotions import pipeline_row, request_row
from tests.jobs.conftest import JobWorld, run_async
from tests.jobs.test_promotions import decide, deployed, gate, get, request, run_version
from tests.jobs.test_template_runs import api_token, call_api


def set_gate(world: JobWorld, gate_id: uuid.UUID, **columns: Any) -> None:
    for column, value in columns.items():
        assert column in ("allow_unpromoted_runs", "rollback_approvals")
        world.conn.execute(f"update ops.promotion_gates set {column} = %s where id = %s", (value, gate_id))


def test_a_gate_allowing_unpromoted_runs_lets_a_run_name_another_version(world: JobWorld, jobs_db: str) -> None:
    prod = gate(world, "prod", min_successful_runs=0)
    gate(world, "staging", min_successful_runs=0)
    assert request(world, jobs_db, 1, "staging")["status"] == "promoted"
    assert request(world, jobs_db, 1, "prod")["status"] == "promoted"
    v2 = world.add_version()
    # by default prod refuses a version other than its deployed one
    with pytest.raises(psycopg.Error, match="is not the version deployed to prod") as err:
        run_version(world, jobs_db, "prod", version=v2)
    assert isinstance(from_db_error(err.value), Invalid)

    set_gate(world, prod, allow_unpromoted_runs=True)
    assert run_version(world, jobs_db, "prod", version=v2)["template_version"] == v2
    assert run_version(world, jobs_db, "prod", version=1)["template_version"] == 1
    assert run_version(world, jobs_db, "prod")["template_version"] == 1, "naming none still runs the deployed one"
    assert deployed(world, "prod") == 1, "running another version deploys nothing"
    assert world.conn.execute(
        "select ops.template_version_refusal(%s, e.id, 2) from ops.environments e where e.project_id = %s "
        "and e.name = 'prod'", (world.template_id, world.tenant.project_id),
    ).fetchone() == (None,)  # fmt: skip
    # the setting is the gate's: with it off again, prod refuses v2 once more
    set_gate(world, prod, allow_unpromoted_runs=False)
    with pytest.raises(psycopg.Error, match="is not the version deployed to prod"):
        run_version(world, jobs_db, "prod", version=v2)
    with pytest.raises(psycopg.errors.CheckViolation):
        set_gate(world, prod, rollback_approvals=11)


def test_a_rollback_with_rollback_approvals_opens_a_request_that_needs_four_eyes(
    world: JobWorld, jobs_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    staging = gate(world, "staging", min_successful_runs=0, approvers=["role:operator"])
    set_gate(world, staging, rollback_approvals=1)
    v2 = world.add_version()
    assert request(world, jobs_db, 1, "staging")["status"] == "promoted"
    assert request(world, jobs_db, v2, "staging")["status"] == "promoted"
    second, viewer = world.user("operator"), world.user("viewer")

    # an operator asks through the API: a rollback request opens, nothing is rolled back yet
    token = api_token(world, "operator")
    requester = world.conn.execute(
        "select t.user_id from ops.api_tokens t where t.token_prefix = %s", (token[:8],)
    ).fetchone()
    assert requester
    opened = call_api(
        monkeypatch, jobs_db,
        [("POST", f"/api/v1/templates/{world.template_id}/rollback", token,
          {"environment": "staging", "comment": "v2 writes bad rows"})],
    )[0]  # fmt: skip
    assert opened.status_code == 200, opened.text
    body = opened.json()
    assert body["status"] == "pending" and body["version"] == 1 and body["previous_version"] == v2
    request_id = uuid.UUID(body["request_id"])
    assert deployed(world, "staging") == v2
    req = get(jobs_db, request_id)
    assert (req["kind"], req["status"], req["checks"], req["checks_passed"]) == ("rollback", "pending", [], True)
    assert (req["from_environment"], req["to_environment"], req["required_approvals"]) == ("staging", "staging", 1)
    assert req["requested_by_id"] == requester[0] and req["comment"] == "v2 writes bad rows"
    notified = world.conn.execute(
        "select user_id, title from ops.notifications where link = %s", (f"/promotions/{request_id}",)
    ).fetchall()
    assert {n[0] for n in notified} == {second}  # the approvers, not the requester nor the viewer
    assert notified[0][1].startswith("Rollback of job-") and "to v1 awaits your approval" in notified[0][1]
    assert run_version(world, jobs_db, "staging")["template_version"] == v2, "runs keep v2 until approved"
    # the approvers' e-mail (and webhook) says what is asked
    msg = promotion_notices.message(req, "opened", "https://control-room.test")
    assert msg["subject"].startswith("[ROLLBACK] ") and msg["subject"].endswith(
        " v1 in staging: your approval is requested"
    )
    assert "back to v1" in msg["summary"] and "no checks" in msg["summary"]
    # the Promotions page lists it as a rollback, and its staging cell says what waits
    assert request_row(req).route == "rollback in staging"
    cells = run_async(jobs_db, lambda c: promotions.pipeline(c, project_id=world.tenant.project_id))
    staging_cell = next(c for c in pipeline_row(cells[0]).cells if c.environment == "staging")
    assert staging_cell.request_label == "rollback to v1 waiting · approvals 0/1"

    with pytest.raises(Forbidden, match="four eyes"):
        decide(jobs_db, request_id, "approve", requester[0])
    with pytest.raises(Forbidden, match="viewer role cannot approve"):
        decide(jobs_db, request_id, "approve", viewer)
    assert decide(jobs_db, request_id, "approve", second, "agreed") == "promoted"
    assert deployed(world, "staging") == 1
    assert run_version(world, jobs_db, "staging")["template_version"] == 1
    req = get(jobs_db, request_id)
    assert req["outcome"] == "rolled back to v1 in staging (was v2): 1 approval"
    history = run_async(
        jobs_db, lambda c: promotions.deployments(c, template_id=world.template_id, environment="staging")
    )
    assert (history[0].action, history[0].version, history[0].previous_version) == ("rollback", 1, v2)
    audit = world.conn.execute(
        "select entity, action from ops.audit_log where entity_id in (%s, %s) order by id",
        (request_id, world.template_id),
    ).fetchall()
    assert [tuple(a) for a in audit if a[1] != "evidence_changed"][-4:] == [
        ("promotion_requests", "request_rollback"), ("promotion_requests", "approve"),
        ("promotion_requests", "rollback"), ("deployments", "rollback"),
    ]  # fmt: skip

    # A second rollback (back from v1 to v2) through the CLI opens a request too; a reject ends it.
    monkeypatch.setenv("LAKEHOUSE_DATABASE_URL", jobs_db)
    get_settings.cache_clear()
    email = world.conn.execute("select email from ops.users where id = %s", (second,)).fetchone()
    assert email
    result = CliRunner().invoke(
        app, ["promotions", "rollback", str(world.template_id), "--env", "staging", "--as", email[0], "-m", "again"]
    )
    get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "rollback request" in result.stdout and "(v1 → v2)" in result.stdout
    pending = world.conn.execute(
        "select id from ops.promotion_requests where template_id = %s and kind = 'rollback' and status = 'pending'",
        (world.template_id,),
    ).fetchone()
    assert pending
    assert decide(jobs_db, pending[0], "reject", requester[0], "v1 is fine") == "rejected"
    assert deployed(world, "staging") == 1


def test_without_rollback_approvals_a_rollback_stays_immediate_and_for_admins(world: JobWorld, jobs_db: str) -> None:
    gate(world, "staging", min_successful_runs=0)
    v2 = world.add_version()
    request(world, jobs_db, 1, "staging")
    request(world, jobs_db, v2, "staging")
    admin = world.user("admin")
    done = run_async(
        jobs_db, lambda c: promotions.rollback(c, template_id=world.template_id, environment="staging", user_id=admin)
    )
    assert done == {"version": 1, "previous_version": v2, "request_id": None, "status": "rolled_back"}
    assert deployed(world, "staging") == 1
    assert world.conn.execute(
        "select count(*) from ops.promotion_requests where template_id = %s and kind = 'rollback'", (world.template_id,)
    ).fetchone() == (0,)
