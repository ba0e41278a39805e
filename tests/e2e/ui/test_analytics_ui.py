"""Dashboards and Ask on a real control room with the demo data: the run-health template drawn from the demo's
runs, cloned and edited as YAML with a preview and saved; a question answered with reviewed SQL run as a DuckDB
SQL task on the local agent, its result table and an automatic chart."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect

from control_room.services.demo import DEMO_DBT_KEY
from tests.e2e.ui.conftest import SignIn, UiWorld, screenshot

pytestmark = pytest.mark.e2e
DBT_DEADLINE_S = 600


def test_run_health_dashboard_then_clone_and_edit(ui_world: UiWorld, sign_in: SignIn) -> None:
    page = sign_in(ui_world.operator)
    page.click("#nav-dashboards")
    expect(page.locator("#dashboard-title")).to_have_text("Run health")
    runs = page.locator("#panel-runs_per_day")
    expect(runs.locator(".js-plotly-plot .bars path").first).to_be_visible()  # bars drawn from the demo's runs
    expect(page.locator("#panel-runs_by_status .js-plotly-plot .slice").first).to_be_visible()
    expect(page.locator("#panel-duration_p95 .js-plotly-plot").first).to_be_visible()
    screenshot(page, ui_world, "dashboard-run-health")

    page.click("#dashboard-edit")
    editor = page.locator("#dashboard-yaml")
    expect(editor).to_contain_text("title: Run health")
    source = editor.input_value()
    edited = source.replace("title: Run health", "title: Ops health", 1).replace(
        "    title: Runs by status\n    type: pie", "    title: Runs by status (bars)\n    type: bar", 1
    )
    assert edited.count("type: bar") > source.count("type: bar")
    editor.fill(edited)
    page.click("#dashboard-preview-btn")
    expect(page.locator("#dashboard-preview #panel-runs_by_status")).to_contain_text("Runs by status (bars)")
    expect(page.locator("#dashboard-preview #panel-runs_by_status .js-plotly-plot .bars path").first).to_be_visible()
    page.fill("#dashboard-slug", "ops-health")
    page.click("#dashboard-save")
    expect(page.locator("#dashboard-notice")).to_contain_text("Saved ops-health as version 1")
    expect(page.locator("#dashboard-title")).to_have_text("Ops health")
    expect(page.locator("#panel-runs_by_status .js-plotly-plot .bars path").first).to_be_visible()
    screenshot(page, ui_world, "dashboard-edited")
    rows = ui_world.query("select latest_version, template from ops.dashboards where slug = 'ops-health'")
    assert rows == [(1, "run-health")]


def _wait_for_demo_warehouse(world: UiWorld) -> None:
    deadline = time.monotonic() + DBT_DEADLINE_S
    status = None
    while time.monotonic() < deadline:
        rows = world.query("select status from ops.runs where idempotency_key = %s", DEMO_DBT_KEY)
        status = rows[0][0] if rows else None
        tables = world.query("select count(*) from ops.datasets where name like %s", "%fct_orders")
        if status == "succeeded" and tables[0][0]:
            return
        assert status not in ("failed", "cancelled", "timed_out"), f"the demo dbt build {status}"
        time.sleep(2)
    raise AssertionError(f"the demo dbt build did not finish in {DBT_DEADLINE_S} s (status {status})")


def test_ask_top_customers(ui_world: UiWorld, sign_in: SignIn) -> None:
    _wait_for_demo_warehouse(ui_world)
    page = sign_in(ui_world.operator)
    page.click("#nav-ask")
    page.fill("#ask-question", "top 5 customers by total order amount")
    page.click("#ask-submit")
    sql = page.locator("#ask-sql")
    expect(sql).to_contain_text("JOIN dim_customers")
    expect(sql).to_contain_text("LIMIT 5")
    page.click("#ask-run")
    expect(page.locator("#ask-run-status")).to_have_text("succeeded", timeout=180_000)
    table = page.locator("#ask-table")
    expect(table.locator("tbody tr")).to_have_count(5)
    expect(table.locator("tbody tr").first).to_contain_text("Margaret Hamilton")
    expect(page.locator("#ask-chart .js-plotly-plot .bars path").first).to_be_visible()
    page.click("#ask-correct")
    screenshot(page, ui_world, "ask-top-customers")
    rows = ui_world.query(
        "select feedback, run_id is not null from ops.nl2sql_questions order by created_at desc limit 1"
    )
    assert rows == [("correct", True)]
