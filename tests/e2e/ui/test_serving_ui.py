"""Serving in the UI on a real control room: the operator creates an endpoint for the demo's trained model,
the local agent runs its replica (`mlflow models serve`), and the "try it" form answers a prediction through
the proxy; the page shows the replica, its health and the proxy's request stats. Delete asks first, then the
endpoint leaves the list."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect

from tests.e2e.ui.conftest import SignIn, UiWorld, screenshot
from tests.e2e.ui.test_ml_ui import _training_run

pytestmark = pytest.mark.e2e
SERVING_DEADLINE_SECONDS = 240.0


def test_create_endpoint_and_try_a_prediction(ui_world: UiWorld, sign_in: SignIn) -> None:
    _training_run(ui_world)  # the demo model churn-classifier v1 is registered by then
    page = sign_in(ui_world.operator)
    page.click("#nav-endpoints")
    # The example bundle's endpoint for the demo model is listed, stopped until someone starts it.
    expect(page.locator("#endpoints-table .endpoint-row")).to_have_count(1)
    expect(page.locator("#endpoints-table .endpoint-row")).to_contain_text("stopped")
    page.fill("#endpoint-name", "churn")
    page.fill("#endpoint-model", "churn-classifier")
    page.fill("#endpoint-version", "1")
    page.click("#endpoint-create")
    expect(page.locator("#endpoint-message")).to_contain_text("endpoint churn created")
    expect(page.locator("#endpoints-table")).to_contain_text("churn-classifier v1 100%")

    # The replica starts on the local agent: refresh until the endpoint is healthy (a deadline, not a sleep).
    health = page.locator("#endpoint-header .endpoint-health")
    deadline = time.monotonic() + SERVING_DEADLINE_SECONDS
    while time.monotonic() < deadline and health.inner_text() != "healthy":
        page.click("#endpoints-refresh")
        page.wait_for_timeout(1000)  # one refresh a second while the server loads the model
    expect(health).to_have_text("healthy")
    expect(page.locator("#endpoint-replicas .replica-row")).to_contain_text("127.0.0.1:")

    page.click("#try-send")
    expect(page.locator("#try-answer")).to_contain_text("predictions", timeout=30_000)
    expect(page.locator("#try-meta")).to_contain_text("HTTP 200 from churn-classifier v1")
    # The proxy's stats reach the page once written (every two seconds).
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "0 requests" in page.locator("#endpoint-totals").inner_text():
        page.click("#endpoints-refresh")
        page.wait_for_timeout(1000)
    expect(page.locator("#endpoint-totals")).to_contain_text("1 requests in 30 min")
    expect(page.locator("#endpoint-chart")).to_contain_text("latency")
    screenshot(page, ui_world, "ml-endpoint")

    # Stopping frees the local agent's slot for the tests after this one.
    page.click("#endpoint-stop")
    expect(page.locator("#endpoint-header .endpoint-health")).to_have_text("stopped", timeout=30_000)

    # Delete asks first; keeping it changes nothing.
    page.click("#endpoint-delete")
    dialog = page.get_by_role("alertdialog")
    expect(dialog).to_contain_text("Delete endpoint churn?")
    expect(dialog).to_contain_text("Its replicas stop, its tokens stop working")
    screenshot(page, ui_world, "ml-endpoint-delete-confirm")
    dialog.get_by_role("button", name="Keep it").click()
    expect(dialog).to_have_count(0)
    expect(page.locator("#endpoints-table .endpoint-row")).to_have_count(2)
    page.click("#endpoint-delete")
    page.click("#endpoint-delete-confirm")
    expect(page.locator("#endpoint-message")).to_contain_text("endpoint churn deleted")
    expect(page.locator("#endpoints-table .endpoint-name")).to_have_text(["churn-classifier"])  # the bundle's
    expect(page.locator("#endpoint-header")).to_have_count(0)
    screenshot(page, ui_world, "ml-endpoint-deleted")
