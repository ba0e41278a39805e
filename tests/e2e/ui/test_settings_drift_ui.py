"""Project settings from the bundle on a real control room (issue 25): the demo bundle keeps the ml project's
events 90 days; an admin who sets another retention through the API sees it on the governance page as drift
from the deployed bundle, with the export that brings the repository up to date; setting it back ends the drift."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import expect

from tests.e2e.ui.conftest import SignIn, UiWorld, screenshot

pytestmark = pytest.mark.e2e


def _set_retention(world: UiWorld, token: str, project: object, days: int) -> None:
    answer = httpx.put(f"{world.url}/api/v1/projects/{project}/retention", json={"event_retention_days": days},
                       headers={"Authorization": f"Bearer {token}"}, timeout=30)  # fmt: skip
    assert answer.status_code == 200, answer.text


def test_a_retention_changed_outside_the_bundle_shows_as_drift(ui_world: UiWorld, sign_in: SignIn) -> None:
    [(ml, days)] = ui_world.query("select id, event_retention_days from ops.projects where slug = 'ml'")
    assert days == 90, "the demo bundle (examples/bundle/settings.yaml) keeps ml's events 90 days"
    token = ui_world.api_token(ui_world.admin)
    _set_retention(ui_world, token, ml, 45)
    try:
        admin = sign_in(ui_world.admin)
        admin.goto(f"{ui_world.url}/governance")
        banner = admin.locator("#drift-banner")
        expect(banner).to_contain_text("~ settings ml: event_retention_days 90 -> 45")
        expect(admin.locator("#export-bundle")).to_have_attribute("href", "/api/v1/governance/bundle.zip?org=demo")
        screenshot(admin, ui_world, "settings-drift-retention")
        # The export says what is live: the repository's settings.yaml can be brought up to date from it.
        exported = httpx.get(f"{ui_world.url}/api/v1/governance/bundle.zip", params={"org": "demo"},
                             headers={"Authorization": f"Bearer {token}"}, timeout=60)  # fmt: skip
        assert exported.status_code == 200, exported.text
    finally:
        _set_retention(ui_world, token, ml, 90)
    admin.reload()
    expect(admin.locator("#page-title")).to_have_text("Routing & caps")
    expect(admin.get_by_text("~ settings ml", exact=False)).to_have_count(0)
