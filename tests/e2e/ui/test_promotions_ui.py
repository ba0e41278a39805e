"""Promotion gates in real Chromium against the real `lakehouse run`, its promotion loop and its executor agent.

The demo opens a request to promote nightly-ingest v1 from dev to staging; it is promoted once the demo
backfill's dev runs succeed. An operator then requests v1 for prod from the job's page, sees the checks
turn green as its staging runs succeed (the gate wants 3) and as the gate's smoke test, run in prod by the
agent, succeeds; cannot approve their own request; the admin, an approver, is e-mailed; the admin (a second
person) approves, the requester is e-mailed the outcome, the Promotions page's prod column shows v1, and a
prod run uses it; another version in prod is refused with 422 naming the version. Screenshots go to
test-results/screenshots/.
"""

from __future__ import annotations

import re
import time
import uuid

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.ui.conftest import SignIn, UiWorld

pytestmark = pytest.mark.e2e

REQUEST_PAGE = re.compile(r".*/promotions/(?P<id>[0-9a-f-]{36})$")
RUNS_DEADLINE_MS = 300_000  # deadlines, not expectations: the agent also runs the demo's other work
MAIL_DEADLINE_S = 60


def _shot(page: Page, world: UiWorld, name: str) -> None:
    page.wait_for_timeout(500)  # let badges and callouts finish their transition before the picture
    path = world.shots / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000


def _mail_to(world: UiWorld, address: str, subject: str) -> str:
    """The body of the e-mail to ``address`` whose subject contains ``subject``, waiting for it up to a deadline
    (the promotion loop plans it, the deliveries sender sends it)."""
    deadline = time.monotonic() + MAIL_DEADLINE_S
    while time.monotonic() < deadline:
        for mail in world.smtp.mailbox.to(address):
            if subject in " ".join(str(mail["Subject"]).split()):
                payload = mail.get_payload(decode=True)
                assert isinstance(payload, bytes)
                return payload.decode()
        time.sleep(0.2)  # polling another process's outbox: nothing to await
    seen = [" ".join(str(m["Subject"]).split()) for m in world.smtp.mailbox.to(address)]
    raise AssertionError(f"no e-mail to {address} about {subject!r} within {MAIL_DEADLINE_S} s; got {seen}")


def test_an_operator_promotes_to_prod_through_checks_and_a_second_persons_approval(
    ui_world: UiWorld, sign_in: SignIn
) -> None:
    rows = ui_world.query("select id from ops.job_templates where name = 'nightly-ingest'")
    job_id = uuid.UUID(str(rows[0][0]))
    # The people of this flow start from the default notification preferences (e-mail at once): the alerts
    # test, sharing this control room, gives the operator quiet hours and a daily digest of info notices.
    ui_world.query(
        "delete from ops.notification_preferences where user_id in (select id from ops.users where email = any(%s)) "
        "returning user_id",
        [ui_world.operator.email, ui_world.admin.email],
    )
    operator = sign_in(ui_world.operator)

    # The demo's request into staging goes through once a dev run of v1 succeeded.
    operator.click("#nav-promotions")
    expect(operator.locator("#page-title")).to_have_text("Promotions")
    ingest = operator.locator("#pipeline-nightly-ingest")
    expect(ingest.locator(".pipeline-staging")).to_contain_text("v1", timeout=RUNS_DEADLINE_MS)
    expect(ingest.locator(".pipeline-prod")).to_contain_text("—")
    expect(operator.locator("#promotions-table")).to_contain_text("promoted")
    _shot(operator, ui_world, "promotions-01-pipeline")

    # Before a promotion, prod runs nothing of the job.
    token = ui_world.api_token(ui_world.operator)
    with httpx.Client(base_url=ui_world.url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as api:
        refused = api.post(f"/api/v1/templates/{job_id}/runs", json={"environment": "prod",
                                                                     "params": {"source": "orders"}})  # fmt: skip
        assert refused.status_code == 422 and refused.json()["field"] == "version"
        assert "no version deployed to prod" in refused.json()["detail"]

        # The operator requests v1 for prod from the job's page.
        operator.goto(f"{ui_world.url}/jobs/{job_id}")
        expect(operator.locator("#job-stage-staging")).to_contain_text("v1")
        operator.click("#job-request-promotion")
        operator.locator("#promotion-target").click()
        operator.get_by_role("option", name="prod").click()
        operator.fill("#promotion-comment", "orders landed fine in staging")
        operator.click("#promotion-submit")
        operator.wait_for_url(REQUEST_PAGE)
        found = REQUEST_PAGE.match(operator.url)
        assert found
        request_id = found["id"]
        expect(operator.locator("#promotion-status")).to_have_text("pending")
        runs_check = operator.locator("#check-successful_runs")
        expect(runs_check).to_contain_text("0 of 3")
        expect(runs_check).to_have_class(re.compile("check-failed"))
        expect(operator.locator("#decision-refusal")).to_contain_text("four eyes")  # not their own request
        _shot(operator, ui_world, "promotions-02-request-waiting")

        # Runs of v1 in staging succeed: the checks turn green on the open page.
        for _ in range(3):
            ran = api.post(f"/api/v1/templates/{job_id}/runs", json={"environment": "staging",
                                                                      "params": {"source": "orders"}})  # fmt: skip
            assert ran.status_code == 201, ran.text
            assert ran.json()["template_version"] == 1
        expect(runs_check).to_have_class(re.compile("check-passed"), timeout=RUNS_DEADLINE_MS)
        expect(runs_check).to_contain_text("3 of 3")
        expect(runs_check.locator(".evidence-link")).to_have_count(3)
        # The gate's custom check: a smoke test submitted as a run in prod when the request opened.
        smoke_check = operator.locator("#check-check_run")
        expect(smoke_check).to_have_class(re.compile("check-passed"), timeout=RUNS_DEADLINE_MS)
        expect(smoke_check).to_contain_text("run succeeded")
        expect(smoke_check.locator(".evidence-link")).to_have_attribute("href", re.compile(r"^/runs/[0-9a-f-]{36}$"))
        expect(operator.locator("#promotion-checks .check-failed")).to_have_count(0)
        expect(operator.locator("#promotion-status")).to_have_text("pending")  # the approval is still missing
        _shot(operator, ui_world, "promotions-03-checks-green")

        # The approvers heard of it through the alert channels: the admin (role:admin) got an e-mail.
        asked = _mail_to(ui_world, ui_world.admin.email, "nightly-ingest v1 to prod: your approval is requested")
        assert f"/promotions/{request_id}" in asked

        # A second person, an approver of the gate (role:admin), approves: v1 is deployed to prod.
        admin = sign_in(ui_world.admin)
        admin.goto(f"{ui_world.url}/promotions/{request_id}")
        expect(admin.locator("#promotion-approve")).to_be_visible()
        admin.fill("#decision-comment", "three green runs in staging, ship it")
        admin.click("#promotion-approve")
        expect(admin.locator("#promotion-status")).to_have_text("promoted")
        expect(admin.locator("#promotion-outcome")).to_contain_text("v1 deployed to prod")
        expect(admin.locator("#promotion-decisions")).to_contain_text("ship it")
        _shot(admin, ui_world, "promotions-04-approved")

        admin.click("#nav-promotions")
        expect(admin.locator("#pipeline-nightly-ingest .pipeline-prod")).to_contain_text("v1")
        _shot(admin, ui_world, "promotions-05-prod-column")

        # A prod run now uses the promoted version.
        ran = api.post(f"/api/v1/templates/{job_id}/runs", json={"environment": "prod", "params": {"source": "orders"}})
        assert ran.status_code == 201, ran.text
        assert ran.json()["template_version"] == 1
        told = _mail_to(ui_world, ui_world.operator.email, "nightly-ingest v1 to prod: promoted")
        assert "v1 deployed to prod" in told
        other = api.post(f"/api/v1/templates/{job_id}/runs",
                         json={"environment": "prod", "version": 2, "params": {"source": "orders"}})  # fmt: skip
        assert other.status_code in (404, 422), other.text  # no version 2 (or not the deployed one)
    audit = ui_world.query(
        "select action, actor from ops.audit_log where entity = 'promotion_requests' and entity_id = %s order by id",
        uuid.UUID(request_id),
    )
    assert audit[0] == ("request", ui_world.operator.email)
    assert ("approve", ui_world.admin.email) in audit and audit[-1][0] == "promote"
