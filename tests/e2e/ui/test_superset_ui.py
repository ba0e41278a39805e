"""Superset embedded in the control room (a real Superset, tests/superset_server.py): an operator pushes a dashboard
cloned from the run-health template and sees it embedded with the demo's data; a viewer whose access policy keeps
only succeeded runs sees Superset's charts filtered by the guest token's row-level-security clause."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import httpx
import pytest
from playwright.sync_api import FrameLocator, Page, expect

from tests.e2e.ui.conftest import SignIn, UiWorld, screenshot
from tests.superset_server import RunningSuperset

pytestmark = pytest.mark.e2e
SLUG = "health-superset"
SUPERSET_TIMEOUT_MS = 120_000
RUN_DEADLINE_S = 180  # Superset's first chart queries on a loaded 2-core machine


def _embedded(page: Page) -> FrameLocator:
    expect(page.locator("#superset-embed iframe")).to_be_attached(timeout=SUPERSET_TIMEOUT_MS)
    return page.frame_locator("#superset-embed iframe")


def _restrict_viewer(world: UiWorld, project: Any) -> None:
    """The control plane's runs as a catalog dataset, and a row filter keeping the viewer to succeeded runs."""
    runs = world.query(
        "insert into ops.datasets (project_id, namespace, name, kind, columns) values (%s, "
        "'postgres://control-plane', 'ops.runs', 'table', %s::jsonb) returning id",
        project, json.dumps([{"name": "status", "type": "text"}]),
    )[0][0]  # fmt: skip
    org = world.query("select org_id from ops.projects where id = %s", project)[0][0]
    world.query("select ops.save_access_policy(%s, null, %s::jsonb, 'e2e')", org, json.dumps({
        "name": "viewer-succeeded-runs", "kind": "row_filter", "target_kind": "dataset", "target": str(runs),
        "principal_kind": "user", "principal": world.viewer.email, "row_filter": "status = 'succeeded'"}))  # fmt: skip


def test_a_pushed_template_is_embedded_and_filtered_for_a_restricted_viewer(
    ui_world: UiWorld, sign_in: SignIn, superset_instance: RunningSuperset
) -> None:
    project = ui_world.query("select id from ops.projects where slug = 'lakehouse'")[0][0]
    token = ui_world.api_token(ui_world.operator)
    # A run that fails on the local agent, for the "Recent failures" table (the demo's may not have failed yet).
    submitted = httpx.post(f"{ui_world.url}/api/v1/runs", headers={"Authorization": f"Bearer {token}"}, timeout=60,
                           json={"project": str(project), "environment": "dev", "spec": {
                               "name": "superset-e2e-failure",
                               "tasks": [{"key": "fail", "engine": "shell", "command": "exit 3"}]}})  # fmt: skip
    assert submitted.status_code == 201, submitted.text
    run_id = submitted.json()["id"]
    deadline = time.monotonic() + RUN_DEADLINE_S
    while ui_world.query("select status from ops.runs where id = %s", run_id)[0][0] != "failed":
        assert time.monotonic() < deadline, "the failing run did not fail on the local agent in time"
        time.sleep(1)
    cloned = httpx.post(f"{ui_world.url}/api/v1/dashboards", params={"project": str(project)},
                        json={"template": "run-health", "slug": SLUG},
                        headers={"Authorization": f"Bearer {token}"}, timeout=60)  # fmt: skip
    assert cloned.status_code == 201, cloned.text

    page = sign_in(ui_world.operator)
    page.goto(f"{ui_world.url}/dashboards?dashboard=saved:{SLUG}")
    expect(page.locator("#dashboard-title")).to_have_text("Run health")
    page.click("#dashboard-push-superset")
    page.wait_for_url(re.compile(rf".*/dashboards/superset\?dashboard={SLUG}$"), timeout=SUPERSET_TIMEOUT_MS)
    expect(page.locator("#superset-rls-note")).to_contain_text("No access policy restricts")
    frame = _embedded(page)
    expect(frame.get_by_text("Runs by status").first).to_be_visible(timeout=SUPERSET_TIMEOUT_MS)
    # Charts are canvases; the "Recent failures" table is HTML: it lists the demo's failed runs.
    failures = frame.locator(".dashboard-component-chart-holder", has_text="Recent failures")
    expect(failures.locator("td", has_text=re.compile(r"^(failed|timed_out)$")).first).to_be_visible(
        timeout=SUPERSET_TIMEOUT_MS)  # fmt: skip
    expect(frame.locator("canvas").first).to_be_visible()
    screenshot(page, ui_world, "superset-embedded-operator")

    _restrict_viewer(ui_world, project)
    viewer = sign_in(ui_world.viewer)
    viewer.goto(f"{ui_world.url}/dashboards/superset?dashboard={SLUG}")
    expect(viewer.locator("#superset-rls-note")).to_contain_text("row-level-security clause(s)")
    frame = _embedded(viewer)
    expect(frame.get_by_text("Runs by status").first).to_be_visible(timeout=SUPERSET_TIMEOUT_MS)
    # "Recent failures" lists failed runs: with only succeeded runs left to the viewer, it has none.
    failures = frame.locator(".dashboard-component-chart-holder", has_text="Recent failures")
    expect(failures.get_by_text("No results were returned for this query")).to_be_visible(
        timeout=SUPERSET_TIMEOUT_MS)  # fmt: skip
    expect(failures.locator("td", has_text=re.compile(r"^(failed|timed_out)$"))).to_have_count(0)
    screenshot(viewer, ui_world, "superset-embedded-viewer-filtered")
