"""The task form generated from each engine's schema, in the Submit dialog and in the job editor.

An operator switches the example's task to DuckDB in the form (the JSON beside it follows), sees a
wrong type and a missing required field named under their fields before submitting, fixes them, and
the run goes through; an unknown engine typed into the JSON is named with its JSON pointer. An admin
adds a task to a new job through the form and the YAML (engine fields under ``config``) follows.
"""

from __future__ import annotations

import json
import re
from typing import Any

from playwright.sync_api import Page, expect

from tests.e2e.ui.conftest import SignIn, UiWorld, screenshot

RUN_PAGE = re.compile(r".*/runs/(?P<id>[0-9a-f-]{36})$")


def _choose(page: Page, trigger: str, option: str) -> None:
    page.click(trigger)
    page.get_by_role("option", name=option, exact=True).click()


def _spec(page: Page) -> dict[str, Any]:
    spec = json.loads(page.locator("#submit-spec").input_value())
    assert isinstance(spec, dict)
    return spec


def test_submit_dialog_form_validates_before_submit(ui_world: UiWorld, sign_in: SignIn) -> None:
    operator = sign_in(ui_world.operator)
    operator.goto(f"{ui_world.url}/runs")
    operator.click("#submit-run")
    form = operator.locator("#submit-form")
    expect(form.locator("#submit-form-key")).to_be_visible()
    first_key = _spec(operator)["tasks"][0]["key"]
    last_key = _spec(operator)["tasks"][-1]["key"]

    # Another engine: the task keeps its key, gets DuckDB's fields, and the JSON follows.
    _choose(operator, "#submit-form-engine", "duckdb")
    expect(form.locator("#submit-form-sql")).to_be_visible()
    expect(operator.locator("#submit-spec")).to_have_value(re.compile(r'"engine": "duckdb"'))
    assert _spec(operator)["tasks"][0]["key"] == first_key

    # A wrong type and a missing required field, named under their fields before anything is sent.
    operator.fill("#submit-form-max_scan_bytes", "12.5")
    expect(form.locator("#submit-form-error-max_scan_bytes")).to_contain_text("whole number")
    operator.fill("#submit-form-sql", "")
    expect(form.locator("#submit-form-error-sql")).to_contain_text("required")
    screenshot(operator, ui_world, "task-form-1-errors-before-submit")

    operator.fill("#submit-form-max_scan_bytes", "1000000")
    operator.fill("#submit-form-sql", "select 6 * 7 as answer")
    expect(form.locator(".field-error")).to_have_count(0)
    task = _spec(operator)["tasks"][0]
    assert task["sql"] == "select 6 * 7 as answer" and task["max_scan_bytes"] == 1000000

    # More tasks from the form: the new one depends on the last one.
    operator.click("#submit-form-add-task")
    expect(form.locator("#submit-form-key")).to_have_value(re.compile(r"^task\d+$"))
    added = _spec(operator)["tasks"][-1]
    assert added["engine"] == "shell" and added["depends_on"] == [last_key]
    operator.locator("#submit-form-more").get_by_text("More: dependencies").click()
    expect(form.locator("#submit-form-max_attempts")).to_be_visible()
    screenshot(operator, ui_world, "task-form-2-valid-two-tasks")
    operator.click("#submit-form-remove-task")
    expect(operator.locator("#submit-spec")).not_to_have_value(re.compile(added["key"]))

    # An unknown engine typed into the JSON: the form names it by pointer; the server agrees on submit.
    broken = _spec(operator)
    broken["tasks"][0]["engine"] = "cobol"
    operator.fill("#submit-spec", json.dumps(broken, indent=2))
    expect(form.locator("#submit-form-problems")).to_contain_text("/tasks/0/engine: unknown engine 'cobol'")
    operator.click("#submit-confirm")
    expect(operator.locator("#submit-error")).to_contain_text("unknown engine")
    screenshot(operator, ui_world, "task-form-3-unknown-engine")

    broken["tasks"][0]["engine"] = "duckdb"
    operator.fill("#submit-spec", json.dumps(broken, indent=2))
    expect(form.locator("#submit-form-problems")).to_have_count(0)
    _choose(operator, "#submit-form-task", str(first_key))
    expect(form.locator("#submit-form-sql")).to_have_value("select 6 * 7 as answer")
    operator.click("#submit-confirm")
    operator.wait_for_url(RUN_PAGE)
    expect(operator.locator("#run-status")).to_have_text(re.compile("succeeded", re.I), timeout=90_000)


def test_job_editor_form_writes_the_yaml(ui_world: UiWorld, sign_in: SignIn) -> None:
    admin = sign_in(ui_world.admin)
    admin.goto(f"{ui_world.url}/jobs")
    admin.click("#new-job")
    form = admin.locator("#job-form")
    expect(form.locator("#job-form-command")).to_be_visible()
    admin.click("#job-form-add-task")
    _choose(admin, "#job-form-engine", "duckdb")
    admin.fill("#job-form-sql", "select 1 as one")
    yaml_box = admin.locator("#job-yaml")
    expect(yaml_box).to_have_value(re.compile(r"engine: duckdb\n(.*\n)*?\s+config:\n\s+sql: select 1 as one"))
    expect(admin.locator("#job-yaml-valid")).to_be_visible()
    screenshot(admin, ui_world, "task-form-4-job-editor")
