"""The API tokens page, reached from the user menu: an operator creates a token with an expiry and a viewer
ceiling, sees it once, uses it against the HTTP API (reads work, a submit is refused by the ceiling, the
page shows when it was last used), then revokes it and the API refuses it."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import expect

from control_room.services.auth import hash_token
from tests.e2e.ui.conftest import DEMO_PROJECT, SignIn, UiWorld
from tests.live import refused_soon

pytestmark = pytest.mark.e2e


def test_create_use_and_revoke_an_api_token_from_the_user_menu(ui_world: UiWorld, sign_in: SignIn) -> None:
    page = sign_in(ui_world.operator)
    page.click("#user-menu-api-tokens")
    page.wait_for_url(re.compile(r".*/settings/api-tokens/?$"))
    expect(page.locator("#page-title")).to_have_text("API tokens")

    page.fill("#token-name", "nightly-report")
    page.click("#token-lifetime")
    page.get_by_role("option", name="30 days").click()
    page.click("#token-ceiling")
    page.get_by_role("option", name="Viewer").click()
    page.click("#token-create")
    shown = page.locator("#created-token")
    expect(shown).to_have_text(re.compile(r"^lhu_\S{20,}$"))
    token = shown.inner_text()
    page.screenshot(path=str(ui_world.shots / "api_tokens_created.png"), full_page=True)

    (stored,) = ui_world.query(
        "select t.token_hash, t.role_ceiling, round(extract(epoch from t.expires_at - t.created_at) / 86400) "
        "from ops.api_tokens t join ops.users u on u.id = t.user_id where u.email = %s and t.name = %s",
        ui_world.operator.email, "nightly-report",
    )  # fmt: skip
    assert stored == (hash_token(token), "viewer", 30), "stored hashed, with the chosen ceiling and expiry"

    page.click("#created-token-done")
    expect(page.locator("#created-token")).to_have_count(0)
    assert token not in page.content(), "the token is shown once, then gone from the page"
    row = page.locator("tr[data-token='nightly-report']")
    expect(row).to_have_attribute("data-status", "active")
    expect(row.locator(".token-last-used")).to_have_text("never")

    api = f"{ui_world.url}/api/v1"
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{api}/runs", params={"project": DEMO_PROJECT}, headers=headers, timeout=10).status_code == 200
    body = {
        "project": DEMO_PROJECT,
        "environment": "dev",
        "spec": {"name": "ceiling", "tasks": [{"key": "a", "engine": "shell", "command": "true"}]},
    }
    submit = httpx.post(f"{api}/runs", json=body, headers=headers, timeout=10)
    assert submit.status_code == 403, submit.text
    expect(row.locator(".token-last-used")).to_have_text(re.compile(r"\d+ s ago"), timeout=20_000)
    page.screenshot(path=str(ui_world.shots / "api_tokens_list.png"), full_page=True)

    row.locator(".revoke-token").click()
    page.click("#revoke-token-confirm")
    expect(row).to_have_attribute("data-status", "revoked")

    def use() -> httpx.Response:
        return httpx.get(f"{api}/runs", params={"project": DEMO_PROJECT}, headers=headers, timeout=10)

    assert refused_soon(use).status_code == 401  # the revoke's notice reaches every API process
    page.screenshot(path=str(ui_world.shots / "api_tokens_revoked.png"), full_page=True)
