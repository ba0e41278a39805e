"""The catalog page on a real control room: an OpenLineage event posted over HTTP (as an outside producer
would, with a user API token) adds its datasets; search by a column finds the dataset; its panel shows
the schema, the upstream dataset and the run that wrote it."""

from __future__ import annotations

import uuid

import httpx
import pytest
from playwright.sync_api import expect

from tests.e2e.ui.conftest import DEMO_PROJECT, SignIn, UiWorld, screenshot

pytestmark = pytest.mark.e2e

NS = "postgres://warehouse.example:5432"
FACET = {"_producer": "https://example.com/airflow", "_schemaURL": "https://openlineage.io/spec/facets/x.json"}


def test_an_ingested_openlineage_event_shows_in_the_catalog(ui_world: UiWorld, sign_in: SignIn) -> None:
    event = {
        "eventType": "COMPLETE",
        "eventTime": "2026-12-03T10:00:00Z",
        "producer": "https://example.com/airflow",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": str(uuid.uuid4())},
        "job": {"namespace": "airflow-prod", "name": "etl.load_invoices"},
        "inputs": [{"namespace": NS, "name": "landing.public.invoices_raw"}],
        "outputs": [{
            "namespace": NS, "name": "analytics.public.invoices",
            "facets": {"schema": {**FACET, "fields": [{"name": "invoice_id", "type": "BIGINT"},
                                                      {"name": "vat_amount", "type": "NUMERIC"}]}},
            "outputFacets": {"outputStatistics": {**FACET, "rowCount": 1234}},
        }],
    }  # fmt: skip
    posted = httpx.post(
        f"{ui_world.url}/api/v1/lineage", params={"project": DEMO_PROJECT}, json=event,
        headers={"Authorization": f"Bearer {ui_world.api_token(ui_world.operator)}"}, timeout=30,
    )  # fmt: skip
    assert posted.status_code == 201, posted.text

    page = sign_in(ui_world.operator)
    page.click("#nav-catalog")
    expect(page.locator("#catalog-table tbody tr", has_text="analytics.public.invoices")).to_be_visible()
    page.fill("#catalog-search", "vat_amount")
    rows = page.locator("#catalog-table tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("analytics.public.invoices")
    expect(rows.first).to_contain_text(NS)
    screenshot(page, ui_world, "catalog")

    rows.first.locator(".catalog-name").click()
    panel = page.locator("#dataset-panel")
    expect(panel.locator("#dataset-name")).to_have_text("analytics.public.invoices")
    expect(panel.locator("#dataset-columns")).to_contain_text("vat_amount")
    expect(panel.locator("#dataset-columns")).to_contain_text("NUMERIC")
    expect(panel.locator("#dataset-facts")).to_contain_text("1,234")
    expect(panel.locator("#catalog-upstream")).to_contain_text("landing.public.invoices_raw")
    expect(panel.locator("#catalog-runs")).to_contain_text("wrote by etl.load_invoices")
    screenshot(page, ui_world, "catalog-dataset")
