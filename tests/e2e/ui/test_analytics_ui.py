"""Dashboards and Ask on a real control room with the demo data: the run-health template drawn from the demo's
runs, cloned and edited as YAML with a preview and saved; a question answered with reviewed SQL run as a DuckDB
SQL task on the local agent, its result table and an automatic chart."""

from __future__ import annotations

import re
import time

import httpx
import pytest
from playwright.sync_api import Page, expect

from control_room.services.demo import DEMO_DBT_KEY
from tests.e2e.ui.conftest import DEMO_PROJECT, SignIn, UiWorld, screenshot

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
    # The table's instants read as seconds in UTC, not as ISO text ("2026-12-06T13:42:23.893919+00:00").
    failure_time = page.locator("#panel-recent_failures tbody tr td").first
    expect(failure_time).to_have_text(re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC$"))
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


# The middle of the bar plotly drew for one x category of a chart's first series (its SVG path: with two series
# side by side the category's centre is the edge between two bars, where plotly hovers neither).
BAR_POINT = """([figure, category]) => {
    const gd = document.querySelector(figure).querySelector('.js-plotly-plot');
    const i = Array.from(gd._fullData[0].x).map(String).indexOf(category);
    const bar = i < 0 ? null : gd.querySelectorAll('.barlayer .trace')[0]?.querySelectorAll('.point path')[i];
    if (!bar) return null;
    const box = bar.getBoundingClientRect();
    return {x: box.left + box.width / 2, y: box.top + box.height / 2};
}"""
PLOTTED_X = "(figure) => Array.from(document.querySelector(figure + ' .js-plotly-plot')._fullData[0].x).map(String)"
# A chart's first series as {x: y}.
PLOTTED = """(figure) => {
    const trace = document.querySelector(figure + ' .js-plotly-plot')._fullData[0];
    return Object.fromEntries(Array.from(trace.x).map((x, i) => [String(x), Number(trace.y[i])]));
}"""


def _click_bar(page: Page, figure: str, category: str) -> None:
    """Hover the bar until plotly shows its label for that category (plotly clicks what it hovers; a chart that
    cross-filters hovers by x, so a label shows anywhere over the plot and must name the category), then click."""
    page.locator(figure).scroll_into_view_if_needed()
    hover = page.locator(f"{figure} .hoverlayer .axistext")  # the hovered category's label on the x axis
    deadline = time.monotonic() + 30
    while True:
        point = page.evaluate(BAR_POINT, [figure, category])
        assert point, f"no bar {category} in {figure}"
        page.mouse.move(1, 1)
        page.mouse.move(point["x"], point["y"], steps=3)
        try:
            expect(hover).to_contain_text(category, timeout=2_000)
            break
        except AssertionError:
            if time.monotonic() > deadline:
                raise
    page.mouse.click(point["x"], point["y"])


def test_run_health_cross_filters_by_environment(ui_world: UiWorld, sign_in: SignIn) -> None:
    """Clicking an environment's bar in "Runs by environment" sets the environment filter, and every other chart
    is read again for that environment alone (the bar chart itself lists every environment: it sets the filter)."""
    token = ui_world.api_token(ui_world.operator)
    for i in range(2):  # the demo's runs are dev's: two staging runs give the filter something to separate
        spec = {"name": f"e2e cross-filter #{i}", "tasks": [{"key": "noop", "engine": "shell", "command": "true"}]}
        submitted = httpx.post(f"{ui_world.url}/api/v1/runs", json={"project": DEMO_PROJECT, "environment": "staging",
                               "spec": spec}, headers={"Authorization": f"Bearer {token}"}, timeout=30)  # fmt: skip
        assert submitted.status_code in (200, 201), submitted.text
    page = sign_in(ui_world.operator)
    page.goto(f"{ui_world.url}/dashboards?dashboard=template:run-health")
    expect(page.locator("#dashboard-title")).to_have_text("Run health")
    by_environment = "#panel-runs_by_environment"
    expect(page.locator(f"{by_environment} .js-plotly-plot .bars path").first).to_be_visible()
    expect(page.locator("#panel-runs_per_day .js-plotly-plot .bars path").first).to_be_visible()
    counts = page.evaluate(PLOTTED, by_environment)
    assert counts.get("staging", 0) >= 2 and counts.get("dev", 0) > 0, counts
    per_day = "#panel-runs_per_day"
    assert sum(page.evaluate(PLOTTED, per_day).values()) > counts["staging"]  # every environment's runs

    _click_bar(page, by_environment, "staging")
    expect(page.locator("#filter-environment")).to_contain_text("staging")
    # Runs per day and the pie are read again for staging alone: as many runs as staging's bar counts (that bar
    # is drawn by the same refresh, so a run submitted meanwhile counts in both).
    deadline = time.monotonic() + 30
    while True:
        counts = page.evaluate(PLOTTED, by_environment)
        drawn = sum(page.evaluate(PLOTTED, per_day).values())
        pie = sum(page.evaluate(PLOTTED.replace("trace.x", "trace.labels").replace("trace.y", "trace.values"),
                                "#panel-runs_by_status").values())  # fmt: skip
        if drawn == counts["staging"] == pie:
            break
        assert time.monotonic() < deadline, (counts, drawn, pie)
        time.sleep(0.5)
    page.evaluate("window.scrollTo(0, 0)")  # the sticky top bar at the top of the full-page picture
    screenshot(page, ui_world, "dashboard-run-health-cross-filter")

    # "all" again: every environment's runs.
    page.locator("#filter-environment").click()
    page.get_by_role("option", name="all").click()
    expect(page.locator("#filter-environment")).to_contain_text("all")
    page.wait_for_function(
        "([figure, staging]) => Array.from(document.querySelector(figure + ' .js-plotly-plot')._fullData[0].y)"
        ".reduce((a, b) => a + Number(b), 0) > staging",
        arg=[per_day, counts["staging"]],
    )


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


def test_shop_sales_draws_warehouse_datasets_computed_on_the_agent(ui_world: UiWorld, sign_in: SignIn) -> None:
    _wait_for_demo_warehouse(ui_world)
    page = sign_in(ui_world.operator)
    page.goto(f"{ui_world.url}/dashboards?dashboard=template:shop-sales")
    expect(page.locator("#dashboard-title")).to_have_text("Shop sales")
    # Each warehouse dataset is a DuckDB SQL task on the local agent, submitted as the operator.
    revenue = page.locator("#panel-revenue_by_country .js-plotly-plot .bars path").first
    expect(revenue).to_be_visible(timeout=180_000)
    expect(page.locator("#panel-top_customers tbody tr").first).to_contain_text("Margaret Hamilton", timeout=60_000)
    expect(page.locator("#panel-orders_by_status .js-plotly-plot .slice").first).to_be_visible()
    drawn = page.evaluate(PLOTTED_X, "#panel-revenue_by_country")
    assert sorted(drawn) == ["GB", "NL", "US"], drawn

    _click_bar(page, "#panel-revenue_by_country", "NL")
    expect(page.locator("#filter-country")).to_contain_text("NL")
    # NL's only customer is Edsger Dijkstra: the top-customers table is computed again for NL alone.
    expect(page.locator("#panel-top_customers tbody tr")).to_have_count(1, timeout=120_000)
    expect(page.locator("#panel-top_customers tbody tr").first).to_contain_text("Edsger Dijkstra")
    screenshot(page, ui_world, "dashboard-shop-sales")
    runs = ui_world.query(
        "select count(*) from ops.runs r join ops.users u on u.id = r.requested_by "
        "where r.idempotency_key like 'dashboard:%%' and u.email = %s", ui_world.operator.email,
    )  # fmt: skip
    assert runs[0][0] >= 5, runs
