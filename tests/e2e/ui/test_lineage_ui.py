"""The lineage page on a real control room: OpenLineage events posted over HTTP (an outside producer with
a user API token) draw their jobs and datasets; search focuses on one dataset; a column's path through
the columnLineage facets highlights; a click on a node opens its panel, which links to the catalog."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.ui.conftest import DEMO_PROJECT, SignIn, UiWorld, screenshot
from tests.e2e.ui.test_catalog_ui import FACET

pytestmark = pytest.mark.e2e

NS = "s3://lake"


def _event(job: str, source: str, target: str, columns: dict[str, str]) -> dict[str, Any]:
    """A COMPLETE RunEvent of ``job`` reading ``source`` and writing ``target``, whose columns come from
    the source's columns named in ``columns`` (target column -> source column)."""
    return {
        "eventType": "COMPLETE",
        "eventTime": "2026-12-04T04:00:00Z",
        "producer": "https://example.com/airflow",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": str(uuid.uuid4())},
        "job": {"namespace": "airflow-prod", "name": job},
        "inputs": [{"namespace": NS, "name": source}],
        "outputs": [{
            "namespace": NS, "name": target,
            "facets": {
                "schema": {**FACET, "fields": [{"name": name, "type": "DECIMAL"} for name in columns]},
                "columnLineage": {**FACET, "fields": {
                    name: {"inputFields": [{"namespace": NS, "name": source, "field": origin}]}
                    for name, origin in columns.items()}},
            },
        }],
    }  # fmt: skip


def _click_node(page: Page, name: str) -> None:
    """Clicks the drawn marker of a node, found through plotly's own axes (WebGL has no DOM per point)."""
    point = page.evaluate(
        """(name) => {
            const gd = document.querySelector('#lineage-graph .js-plotly-plot');
            for (const trace of gd._fullData) {  // decoded: positions travel as typed arrays
                const i = (trace.hovertext || []).findIndex(t => t.startsWith('<b>' + name + '</b>'));
                if (i < 0) continue;
                const box = gd.getBoundingClientRect(), size = gd._fullLayout._size;
                return {x: box.left + size.l + gd._fullLayout.xaxis.l2p(trace.x[i]),
                        y: box.top + size.t + gd._fullLayout.yaxis.l2p(trace.y[i])};
            }
            return null;
        }""",
        name,
    )
    assert point, f"{name} is not drawn"
    page.mouse.click(point["x"], point["y"])


def test_lineage_draws_ingested_jobs_focuses_and_highlights_a_columns_path(ui_world: UiWorld, sign_in: SignIn) -> None:
    token = ui_world.api_token(ui_world.operator)
    for event in (
        _event("etl.clean_orders", "raw.orders", "clean.orders", {"amount": "amount", "order_id": "id"}),
        _event("etl.revenue", "clean.orders", "mart.revenue", {"total": "amount"}),
    ):
        posted = httpx.post(
            f"{ui_world.url}/api/v1/lineage", params={"project": DEMO_PROJECT}, json=event,
            headers={"Authorization": f"Bearer {token}"}, timeout=30,
        )  # fmt: skip
        assert posted.status_code == 201, posted.text

    page = sign_in(ui_world.operator)
    page.click("#nav-lineage")
    expect(page.locator("#lineage-summary")).to_contain_text("whole project")
    expect(page.locator("#lineage-graph .js-plotly-plot .scatterlayer .point").first).to_be_attached()
    screenshot(page, ui_world, "lineage-whole")

    page.fill("#lineage-search", "clean.ord")
    page.locator("#lineage-matches .lineage-match", has_text="clean.orders").first.click()
    expect(page).to_have_url(re.compile(r"/lineage\?node=[0-9a-f-]{36}&hops=2$"))
    expect(page.locator("#lineage-summary")).to_contain_text("5 nodes · 4 edges · 2 hops around clean.orders")

    page.click("#lineage-column")
    page.get_by_role("option", name="amount").click()
    expect(page.locator("#lineage-path")).to_contain_text("Column amount flows through 3 datasets")
    screenshot(page, ui_world, "lineage-column-path")

    _click_node(page, "mart.revenue")
    panel = page.locator("#lineage-panel")
    expect(panel.locator("#lineage-node-name")).to_have_text("mart.revenue")
    expect(panel).to_contain_text("COMPLETE")
    screenshot(page, ui_world, "lineage-node-panel")
    panel.get_by_role("link", name="Open in catalog").click()
    expect(page.locator("#dataset-name")).to_have_text("mart.revenue")
    expect(page.locator("#catalog-upstream")).to_contain_text("clean.orders")
