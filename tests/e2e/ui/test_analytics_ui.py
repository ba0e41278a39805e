"""Dashboards and Ask on a real control room with the demo data: the run-health template drawn from the demo's
runs, cloned and edited as YAML with a preview and saved; a question answered with reviewed SQL run as a DuckDB
SQL task on the local agent, its result table and an automatic chart."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import Page, expect

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


# Where plotly drew the bar of one x category of a chart (found through plotly's own axes).
BAR_POINT = """([figure, category]) => {
    const gd = document.querySelector(figure).querySelector('.js-plotly-plot');
    const box = gd.getBoundingClientRect(), size = gd._fullLayout._size;
    const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, trace = gd._fullData[0];
    const i = Array.from(trace.x).map(String).indexOf(category);
    if (i < 0) return null;
    return {x: box.left + size.l + xa.l2p(xa.d2l(trace.x[i])), y: box.top + size.t + ya.l2p(trace.y[i] / 2)};
}"""
PLOTTED_X = "(figure) => Array.from(document.querySelector(figure + ' .js-plotly-plot')._fullData[0].x).map(String)"


def _click_bar(page: Page, figure: str, category: str) -> None:
    """Hover the bar until plotly shows its label (plotly clicks what it hovers), then click it."""
    page.locator(figure).scroll_into_view_if_needed()
    hover = page.locator(f"{figure} .hoverlayer .hovertext").first
    deadline = time.monotonic() + 30
    while True:
        point = page.evaluate(BAR_POINT, [figure, category])
        assert point, f"no bar {category} in {figure}"
        page.mouse.move(1, 1)
        page.mouse.move(point["x"], point["y"], steps=3)
        try:
            expect(hover).to_be_visible(timeout=2_000)
            break
        except AssertionError:
            if time.monotonic() > deadline:
                raise
    page.mouse.click(point["x"], point["y"])


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
