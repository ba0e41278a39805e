"""Alerts on a real control room: the demo's failing job is in the admin's bell; an admin creates a rule
(previewed against the last 7 days); a failing demo run fires it; the bell counts it live; its e-mail lands
in the test's SMTP server (aiosmtpd, shown as text in a screenshot); the operator opens it from their bell
and acknowledges it, and the incident's timeline shows the e-mail sent and the ack."""

from __future__ import annotations

import html
import re
import time
from email.message import Message

import httpx
import pytest
from playwright.sync_api import Page, expect

from control_room.services.demo import DEMO_FAILING_SPEC
from tests.e2e.ui.conftest import DEMO_PROJECT, SignIn, UiWorld, screenshot

pytestmark = pytest.mark.e2e

RULE = "e2e-failing-job"
ONCALL = "oncall@example.test"
MAIL_DEADLINE_SECONDS = 60.0


def _choose(page: Page, trigger: str, option: str) -> None:
    page.click(trigger)
    page.get_by_role("option", name=option, exact=True).click()


def _submit_failing_run(world: UiWorld) -> str:
    token = world.api_token(world.operator)
    posted = httpx.post(
        f"{world.url}/api/v1/runs", json={"project": DEMO_PROJECT, "environment": "dev", "spec": DEMO_FAILING_SPEC},
        headers={"Authorization": f"Bearer {token}"}, timeout=30,
    )  # fmt: skip
    assert posted.status_code == 201, posted.text
    return str(posted.json()["id"])


def _wait_for_mail(world: UiWorld, to: str) -> Message:
    deadline = time.monotonic() + MAIL_DEADLINE_SECONDS
    while not world.smtp.mailbox.to(to):
        assert time.monotonic() < deadline, f"no e-mail to {to} within {MAIL_DEADLINE_SECONDS:.0f} s"
        time.sleep(0.2)
    return world.smtp.mailbox.to(to)[0]


def test_a_rule_fires_into_the_bell_and_the_mailbox_and_the_operator_acks(ui_world: UiWorld, sign_in: SignIn) -> None:
    admin = sign_in(ui_world.admin)
    # make run's demo: the deliberately failing job fired demo-run-failed into the admin's bell.
    expect(admin.locator("#bell-count")).to_be_visible()
    admin.click("#bell")
    expect(admin.locator("#bell-dropdown")).to_contain_text("demo failing job: validate orders")
    screenshot(admin, ui_world, "alerts-1-demo-bell")
    admin.keyboard.press("Escape")

    admin.click("#nav-alerts")
    expect(admin.locator("#incidents-table")).to_contain_text("demo-run-failed")
    admin.click("#tab-rules")
    expect(admin.locator("#rules-table tr[data-rule='demo-run-failed']")).to_be_visible()
    admin.click("#rule-new")
    admin.fill("#rule-name", RULE)
    _choose(admin, "#rule-severity", "critical")
    _choose(admin, "#rule-scope", "Demo Lakehouse")
    _choose(admin, "#rule-environment", "dev")
    admin.fill("#rule-notify", ONCALL)
    admin.click("#rule-preview")
    expect(admin.locator("#rule-preview-result")).to_have_text(re.compile(r"Would have fired [1-9]\d* time"))
    screenshot(admin, ui_world, "alerts-2-rule-editor-preview")
    admin.click("#rule-save")
    expect(admin.locator("#rule-editor")).to_be_hidden()
    expect(admin.locator(f"#rules-table tr[data-rule='{RULE}']")).to_contain_text("never")
    screenshot(admin, ui_world, "alerts-3-rules")

    admin.click("#tab-incidents")
    unread_before = int(admin.locator("#bell-count").inner_text())
    run_id = _submit_failing_run(ui_world)
    # The bell updates on its own (LISTEN/NOTIFY), without reloading the page.
    expect(admin.locator("#bell-count")).to_have_text(str(unread_before + 1))
    expect(admin.locator("#incidents-table")).to_contain_text(RULE)
    admin.click("#bell")
    expect(admin.locator("#bell-dropdown")).to_contain_text("[CRITICAL] FIRING")
    screenshot(admin, ui_world, "alerts-4-bell-fired")
    admin.keyboard.press("Escape")

    mail = _wait_for_mail(ui_world, ONCALL)
    payload = mail.get_payload(decode=True)
    assert isinstance(payload, bytes)
    text = payload.decode()
    assert "[CRITICAL] FIRING" in mail["Subject"] and f"/runs/{run_id}" in text
    inbox = admin.context.new_page()
    inbox.set_content(
        "<body style='font: 14px sans-serif; padding: 24px'><h2>aiosmtpd mailbox of the test: "
        f"{len(ui_world.smtp.mailbox.messages)} message(s)</h2>"
        f"<p><b>To:</b> {html.escape(mail['To'])}<br><b>From:</b> {html.escape(mail['From'])}<br>"
        f"<b>Subject:</b> {html.escape(mail['Subject'])}</p>"
        f"<pre style='background: #f4f4f5; padding: 16px; white-space: pre-wrap'>{html.escape(text)}</pre></body>"
    )
    screenshot(inbox, ui_world, "alerts-5-email")
    inbox.close()

    operator = sign_in(ui_world.operator)
    # The operator is paged by the new rule; make run's demo failure may be unread in the bell too.
    expect(operator.locator("#bell-count")).to_have_text(re.compile(r"^[12]$"))
    unread = int(operator.locator("#bell-count").inner_text())
    operator.click("#bell")
    operator.locator("#bell-dropdown .bell-item", has_text="[CRITICAL] FIRING").click()
    detail = operator.locator("#incident-detail")
    expect(detail.locator("#incident-title")).to_contain_text("demo failing job: validate orders")
    expect(detail.locator("#incident-timeline")).to_contain_text(f"email to {ONCALL}")
    if unread == 1:
        expect(operator.locator("#bell-count")).to_be_hidden()  # opening it marked it read
    else:
        expect(operator.locator("#bell-count")).to_have_text(str(unread - 1))  # that one only
    detail.locator("#incident-ack").click()
    expect(detail.locator("#incident-timeline")).to_contain_text(f"acked by {ui_world.operator.email}")
    expect(detail).to_contain_text("acked")
    expect(detail.locator("#incident-run")).to_have_attribute("href", f"/runs/{run_id}")
    screenshot(operator, ui_world, "alerts-6-operator-acked")
    state = ui_world.query(
        "select i.state, i.acked_by from ops.alert_incidents i join ops.alert_rules r on r.id = i.rule_id "
        "where r.name = %s",
        RULE,
    )
    assert state == [("acked", ui_world.operator.email)]

    # The operator's own preferences, from the user menu: quiet hours, the digest, a muted job.
    operator.keyboard.press("Escape")
    operator.click("#user-preferences")
    expect(operator.locator("#pref-jobs")).to_contain_text("demo failing job: validate orders")
    operator.fill("#pref-quiet-start", "22:00")
    operator.fill("#pref-quiet-end", "07:00")
    operator.fill("#pref-timezone", "Europe/Paris")
    operator.click("#pref-digest")
    operator.locator("#pref-jobs tr", has_text="demo failing job").locator("button[role='switch']").nth(1).click()
    operator.click("#pref-save")
    expect(operator.locator("#pref-saved")).to_have_text("Saved.")
    screenshot(operator, ui_world, "alerts-7-preferences")
    [(quiet, zone, digest, muted)] = ui_world.query(
        "select np.quiet_start::text, np.timezone, np.digest_info, np.muted_jobs from ops.notification_preferences np "
        "join ops.users u on u.id = np.user_id where u.email = %s",
        ui_world.operator.email,
    )
    assert (quiet, zone, digest, muted) == (
        "22:00:00",
        "Europe/Paris",
        True,
        [f"{DEMO_PROJECT}/{DEMO_FAILING_SPEC['name']}"],
    )
