"""The Jobs pages in real Chromium against the real `lakehouse run` and its executor agent.

An admin creates a job in the YAML editor (checked as they type), runs it with params from the form the
params schema generates (a missing required param is named under its field), schedules it every minute
and fires it now (no waiting for a real minute), backfills 5 daily intervals as one group, and sees the
history chart; a new version shows in the side-by-side diff; `lakehouse bundle export` writes the job
back; viewers and operators get the controls of their role only. Screenshots of each step go to
test-results/screenshots/.
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import LAKEHOUSE
from tests.e2e.ui.conftest import SignIn, UiWorld

pytestmark = pytest.mark.e2e

JOB_PAGE = re.compile(r".*/jobs/(?P<id>[0-9a-f-]{36})")
JOB_YAML = """\
name: {name}
description: Orders of one day, landed and counted (made in the UI).
owner: ui-e2e@demo.example
tags: [e2e, daily]
params_schema:
  type: object
  properties:
    day:
      type: string
      description: The day to load (YYYY-MM-DD).
    mode:
      type: string
      enum: [delta, full]
      default: delta
    batch_size:
      type: integer
      minimum: 1
      default: 100
  required: [day]
  additionalProperties: false
retries:
  max_attempts: 1
  backoff_s: 0
tasks:
  - key: land
    engine: shell
    config:
      command: echo "landing $LAKEHOUSE_PARAM_DAY in $LAKEHOUSE_PARAM_MODE mode"; sleep {sleep}
  - key: count
    engine: shell
    depends_on: [land]
    config:
      command: echo "counted {what}"
"""


def _shot(page: Page, world: UiWorld, name: str) -> None:
    page.wait_for_timeout(500)  # let charts and dialogs finish their transition before the picture
    path = world.shots / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000


def _tab(page: Page, name: str) -> None:
    page.click(f"#tab-{name}")
    expect(page.locator(f"#tab-{name}")).to_have_attribute("data-state", "active")


def test_create_run_schedule_backfill_and_history_of_a_job(ui_world: UiWorld, sign_in: SignIn) -> None:
    name = f"ui-job-{uuid.uuid4().hex[:6]}"
    admin = sign_in(ui_world.admin)

    # The Jobs page lists the demo's templates with real figures.
    admin.click("#nav-jobs")
    expect(admin.locator("#page-title")).to_have_text("Jobs")
    expect(admin.locator("#jobs-table tbody tr.job-row").first).to_be_visible()
    _shot(admin, ui_world, "jobs-01-list")

    # Create a job in the YAML editor: a mistake is reported as you type, with its line.
    admin.click("#new-job")
    editor = admin.locator("#job-yaml")
    editor.fill(JOB_YAML.format(name=name, sleep=1, what="v1").replace("depends_on: [land]", "depends_on: [lnad]"))
    expect(admin.locator("#job-yaml-problems")).to_contain_text('unknown task key "lnad"')
    expect(admin.locator("#job-save")).to_be_disabled()
    _shot(admin, ui_world, "jobs-02-editor-problem")
    editor.fill(JOB_YAML.format(name=name, sleep=1, what="v1"))
    expect(admin.locator("#job-yaml-valid")).to_be_visible()
    admin.click("#job-save")
    admin.wait_for_url(JOB_PAGE)
    found = JOB_PAGE.match(admin.url)
    assert found
    job_id = found["id"]
    expect(admin.locator("#job-name")).to_have_text(name)
    expect(admin.locator("#job-version")).to_have_text("v1")
    expect(admin.locator("#job-dag")).to_be_visible()
    expect(admin.locator("#job-params-schema")).to_contain_text("batch_size")
    _shot(admin, ui_world, "jobs-03-job-page")

    # Run it with params: the form comes from the params schema; a missing required param is named.
    admin.click("#job-run")
    expect(admin.locator("#param-batch_size")).to_have_value("100")
    admin.click("#run-confirm")
    expect(admin.locator("#param-error-day")).to_contain_text("required")
    admin.fill("#param-day", "2026-12-01")
    admin.fill("#param-batch_size", "250")
    _shot(admin, ui_world, "jobs-04-run-form")
    admin.click("#run-confirm")
    runs = admin.locator("#job-runs tbody tr.job-run-row")
    expect(runs.first).to_be_visible()
    expect(admin.locator("#job-runs tbody tr.job-run-row[data-status='succeeded']")).to_have_count(1, timeout=90_000)
    params = ui_world.query(
        "select params from ops.runs where template_id = %s and trigger = 'manual'", uuid.UUID(job_id)
    )
    assert params == [({"day": "2026-12-01", "mode": "delta", "batch_size": 250},)]

    # Schedule it every minute: the editor checks as you type and previews the next 10 fires.
    _tab(admin, "schedules")
    admin.click("#schedule-new")
    expect(admin.locator("#schedule-error")).to_contain_text("/params/day")  # required by the params schema
    admin.fill("#schedule-params", '{"day": "2026-12-02"}')
    admin.fill("#schedule-cron", "61 * * * *")
    expect(admin.locator("#schedule-error")).to_contain_text("cron")
    admin.fill("#schedule-cron", "* * * * *")
    admin.fill("#schedule-timezone", "Europe/Berlin")
    expect(admin.locator("#schedule-valid")).to_be_visible()
    expect(admin.locator("#schedule-preview tbody tr")).to_have_count(10)
    expect(admin.locator("#schedule-preview")).to_contain_text("CET")
    _shot(admin, ui_world, "jobs-05-schedule-editor")
    admin.click("#schedule-save")
    schedule_row = admin.locator(f"#job-schedules tbody tr[data-schedule='{name}-schedule']")
    expect(schedule_row).to_contain_text("enabled")

    # Fire now (no waiting a real minute): the fire starts a run, shown on the calendar strip.
    schedule_row.locator(".schedule-fire").click()
    expect(admin.locator("#schedule-fires tbody tr.fire-row").first).to_be_visible()
    expect(admin.locator("#fire-strip")).to_be_visible()
    fired = ui_world.query(
        "select f.status, r.trigger from ops.schedule_fires f join ops.schedules s on s.id = f.schedule_id "
        "left join ops.runs r on r.id = f.run_id where s.template_id = %s",
        uuid.UUID(job_id),
    )
    assert ("fired", "schedule") in fired
    _tab(admin, "runs")
    expect(admin.locator("#job-runs tbody tr.job-run-row", has_text="schedule").first).to_be_visible()
    _tab(admin, "schedules")
    schedule_row.locator(".schedule-link").click()
    expect(admin.locator("#schedule-fires tbody tr.fire-row").first).to_have_attribute(
        "data-outcome", re.compile("succeeded|running|queued")
    )
    _shot(admin, ui_world, "jobs-06-schedule-fired")

    # Backfill 5 daily intervals as one group, two at a time; its progress reaches 5 of 5.
    admin.click("#job-backfill")
    expect(admin.locator("#bf-step")).to_have_value("1d")
    admin.fill("#bf-concurrency", "2")
    admin.fill("#bf-params", '{"day": "from-the-interval", "mode": "full"}')
    _shot(admin, ui_world, "jobs-07-backfill-form")
    admin.click("#bf-confirm")
    expect(admin.locator("#bf-error")).to_have_count(0)
    expect(admin.locator("#tab-backfills")).to_have_attribute("data-state", "active")
    backfill = admin.locator("#job-backfills tbody tr.backfill-row").first
    expect(backfill.locator(".backfill-progress")).to_contain_text("/ 5 done")
    expect(backfill).to_have_attribute("data-status", "succeeded", timeout=150_000)
    expect(backfill.locator(".backfill-progress")).to_contain_text("5 / 5 done")
    _shot(admin, ui_world, "jobs-08-backfill-done")
    intervals = ui_world.query(
        "select r.params ->> 'data_interval_start' from ops.runs r where r.template_id = %s and r.trigger = 'backfill' "
        "order by 1",
        uuid.UUID(job_id),
    )
    assert len(intervals) == 5

    # The history: duration per run coloured by outcome with the p95 line, success per day, per task.
    _tab(admin, "runs")
    expect(admin.locator("#history-durations")).to_be_visible()
    expect(admin.locator("#history-durations")).to_contain_text("p95")
    expect(admin.locator("#history-tasks")).to_contain_text("land")
    expect(admin.locator("#history-summary")).to_contain_text("finished")
    _shot(admin, ui_world, "jobs-09-history")

    # A new version from the editor, compared side by side with the first.
    admin.click("#job-edit")
    expect(admin.locator("#job-yaml")).to_have_value(re.compile("counted v1"))
    admin.locator("#job-yaml").fill(JOB_YAML.format(name=name, sleep=1, what="v2"))
    expect(admin.locator("#job-yaml-valid")).to_be_visible()
    admin.click("#job-save")
    expect(admin.locator("#job-version")).to_have_text("v2")
    _tab(admin, "versions")
    expect(admin.locator("#job-versions tbody tr.job-version-row")).to_have_count(2)
    admin.reload()
    _tab(admin, "versions")
    expect(admin.locator("#diff-summary")).to_contain_text("v1 → v2")
    expect(admin.locator("#diff-left")).to_contain_text("v1")
    expect(admin.locator("#diff-right")).to_contain_text("v2")
    expect(admin.locator("#version-diff tr.diff-line[data-kind='replace']")).to_contain_text("counted v2")
    _shot(admin, ui_world, "jobs-10-version-diff")

    # The runs list narrows to this job (1 run from the form, 5 of the backfill, the fire now, and the
    # every-minute fires of the scheduler while the test ran).
    admin.click("#job-runs-link")
    expect(admin.locator("#runs-job-filter")).to_contain_text(name)
    expect(admin.locator("#runs-table tbody tr", has_text="backfill")).to_have_count(5)
    expect(admin.locator("#runs-table tbody tr", has_text="manual")).to_have_count(1)
    total = ui_world.query("select count(*) from ops.runs where template_id = %s", uuid.UUID(job_id))[0][0]
    expect(admin.locator("#runs-table tbody tr")).to_have_count(int(str(total)))
    _shot(admin, ui_world, "jobs-11-runs-of-job")

    # `lakehouse bundle export` writes the job the UI made.
    target = Path(ui_world.data_dir) / f"export-{name}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAKEHOUSE_")}
    env["LAKEHOUSE_DATABASE_URL"] = ui_world.database_url
    done = subprocess.run([str(LAKEHOUSE), "bundle", "export", str(target), "--org", "demo"], env=env,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    exported = next(target.glob(f"job_templates/*/{name}.yaml")).read_text()
    assert "counted v2" in exported and "ui-e2e@demo.example" in exported
    assert f"name: {name}-schedule" in (target / "schedules.yaml").read_text()

    # Roles: an operator runs but does not edit; a viewer only sees.
    operator = sign_in(ui_world.operator)
    operator.goto(f"{ui_world.url}/jobs/{job_id}")
    expect(operator.locator("#job-run")).to_be_visible()
    expect(operator.locator("#job-edit")).to_have_count(0)
    _tab(operator, "schedules")
    expect(operator.locator(".schedule-fire")).to_have_count(1)
    expect(operator.locator(".schedule-edit")).to_have_count(0)
    # An operator may pause it: its every-minute fires stop (and stop adding runs to the later tests' lists).
    paused_row = operator.locator(f"#job-schedules tbody tr[data-schedule='{name}-schedule']")
    paused_row.get_by_role("button", name="Pause").click()
    expect(paused_row).to_contain_text("paused")
    paused = ui_world.query("select paused_at is not null from ops.schedules where name = %s", f"{name}-schedule")
    assert paused == [(True,)]
    viewer = sign_in(ui_world.viewer)
    viewer.goto(f"{ui_world.url}/jobs/{job_id}")
    expect(viewer.locator("#job-name")).to_have_text(name)
    expect(viewer.locator("#job-run")).to_have_count(0)
    expect(viewer.locator("#job-backfill")).to_have_count(0)
    _shot(viewer, ui_world, "jobs-12-viewer")
