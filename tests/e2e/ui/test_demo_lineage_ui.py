"""Catalog and lineage on the demo's own data (issue 21 acceptance): once the local agent has run the demo's
dbt build and its lake steps (DuckDB export, Delta table, DuckDB table), the catalog lists the example's
models with their documented columns and dbt test results, the lineage graph runs seeds -> staging -> marts
into the Delta and DuckDB datasets, and a column's path through them highlights."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Page, expect

from control_room.services.demo import DEMO_DBT_KEY
from tests.e2e.ui.conftest import SignIn, UiWorld, screenshot

pytestmark = pytest.mark.e2e
DEMO_DEADLINE_S = 900  # a deadline, not an expectation: dbt's first start on a loaded machine is slow
LAKE_STEPS = ("export_orders", "orders_to_delta", "daily_revenue")


def _wait_for_demo_lake(world: UiWorld) -> None:
    """Polls until the demo dbt run (build and lake steps) succeeded; fails at once naming a failed task."""
    deadline = time.monotonic() + DEMO_DEADLINE_S
    tasks: list[tuple[object, ...]] = []
    while time.monotonic() < deadline:
        tasks = world.query(
            "select t.key, t.status, t.error from ops.runs r join ops.tasks t on t.run_id = r.id "
            "where r.idempotency_key = %s order by t.key",
            DEMO_DBT_KEY,
        )
        failed = [t for t in tasks if t[1] in ("failed", "cancelled", "timed_out")]
        assert not failed, f"a demo task did not succeed: {failed}"
        if tasks and all(t[1] == "succeeded" for t in tasks):
            return
        time.sleep(2)
    raise AssertionError(f"the demo dbt run did not finish in {DEMO_DEADLINE_S} s: {tasks}")


def _drawn_names(page: Page) -> list[str]:
    """The names of the nodes plotly drew (bold first line of each marker's hover text)."""
    names: list[str] = page.evaluate(
        """() => {
            const gd = document.querySelector('#lineage-graph .js-plotly-plot');
            return gd._fullData.flatMap(t => (t.hovertext || []).map(h => h.split('</b>')[0].replace('<b>', '')));
        }"""
    )
    return names


def _dataset_id(world: UiWorld, name_like: str) -> str:
    rows = world.query("select id from ops.datasets where name like %s", name_like)
    assert len(rows) == 1, f"expected one dataset named like {name_like}, got {rows}"
    return str(rows[0][0])


def test_the_demo_catalog_and_lineage_graph(ui_world: UiWorld, sign_in: SignIn) -> None:
    _wait_for_demo_lake(ui_world)
    lake = str(ui_world.data_dir / "warehouse" / "lake" / "shop_orders")
    export = str(ui_world.data_dir / "dbt-demo" / "orders_export.parquet")
    page = sign_in(ui_world.operator)

    # The catalog: the example's models with their columns, found by a column.
    page.click("#nav-catalog")
    page.fill("#catalog-search", "ordered_on")
    rows = page.locator("#catalog-table tbody tr")
    for name in ("shop.main.stg_orders", "shop.main.fct_orders", "shop.main.daily_revenue"):
        expect(rows.filter(has_text=name).first).to_be_visible()
    fct = rows.filter(has=page.locator(".catalog-name", has_text=re.compile(r"^shop\.main\.fct_orders$")))
    expect(fct).to_contain_text("model")
    expect(fct.locator("td").nth(3)).to_have_text("6")  # columns
    expect(rows.filter(has_text=lake).first).to_contain_text("file")  # the Delta table, by its location
    screenshot(page, ui_world, "demo-catalog")

    fct.locator(".catalog-name").click()
    panel = page.locator("#dataset-panel")
    expect(panel.locator("#dataset-name")).to_have_text("shop.main.fct_orders")
    columns = panel.locator("#dataset-columns")
    expect(columns).to_contain_text("Order total in currency units.")  # dbt docs
    expect(columns).to_contain_text("DATE")  # dbt's catalog: the warehouse's type of ordered_on
    quality = panel.locator("#catalog-quality")
    expect(quality).to_contain_text("unique_fct_orders_order_id")
    expect(quality).to_contain_text("not_null_fct_orders_order_id")
    expect(quality).to_contain_text("pass")
    expect(panel.locator("#catalog-upstream")).to_contain_text("shop.main.stg_orders")
    expect(panel.locator("#catalog-downstream")).to_contain_text(export)
    expect(panel.locator("#catalog-runs")).to_contain_text("read by export_orders")
    screenshot(page, ui_world, "demo-catalog-fct-orders")

    # The whole graph: seeds, staging and marts, the Parquet export, the Delta table and the DuckDB tables.
    page.goto(f"{ui_world.url}/lineage")
    expect(page.locator("#lineage-summary")).to_contain_text("whole project")
    expect(page.locator("#lineage-graph .js-plotly-plot .scatterlayer .point").first).to_be_attached()
    drawn = set(_drawn_names(page))
    expected = {
        "shop.main.raw_orders", "shop.main.stg_orders", "shop.main.fct_orders", "shop.main.dim_customers",
        export, lake, "shop.main.daily_revenue", "warehouse.main.demo_orders",
    }  # fmt: skip
    assert expected <= drawn, f"not drawn: {expected - drawn}"
    screenshot(page, ui_world, "demo-lineage-whole")

    # Three hops around the Delta table: back to the staging model, on to the DuckDB table.
    page.goto(f"{ui_world.url}/lineage?node={_dataset_id(ui_world, lake)}&hops=3")
    expect(page.locator("#lineage-summary")).to_contain_text(f"3 hops around {lake}")
    expect(page.locator("#lineage-graph .js-plotly-plot .scatterlayer .point").first).to_be_attached()
    drawn = set(_drawn_names(page))
    assert {"shop.main.stg_orders", "shop.main.fct_orders", export, lake, "shop.main.daily_revenue"} <= drawn

    # A column's path: amount from the seed's amount_cents through the marts, the export, the Delta table
    # and into daily_revenue's revenue.
    page.click("#lineage-column")
    page.get_by_role("option", name="amount", exact=True).click()
    expect(page.locator("#lineage-path")).to_contain_text("Column amount flows through")
    expect(page.locator("#lineage-graph .js-plotly-plot .scatterlayer .point").first).to_be_attached()
    path_size = int(re.findall(r"through (\d+) datasets", page.locator("#lineage-path").inner_text())[0])
    assert path_size >= 6, page.locator("#lineage-path").inner_text()
    lit = page.evaluate(
        """() => {
            const gd = document.querySelector('#lineage-graph .js-plotly-plot');
            return Array.from(gd._fullData[0].x).filter(v => v !== null && !Number.isNaN(v)).length;
        }"""
    )
    assert lit >= 2 * 4, "the highlighted path's edges are drawn"
    screenshot(page, ui_world, "demo-lineage-column-path")
