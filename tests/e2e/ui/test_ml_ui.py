"""MLflow in the UI on a real control room: the demo's training run (run by the local agent against the
MLflow server `lakehouse run` started) links to its MLflow runs; an experiment's runs, their metric
chart and the compare of two runs; the registry's model and setting `champion` as an admin."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect

from control_room.services.demo import DEMO_TRAINING_KEY
from tests.e2e.ui.conftest import SignIn, UiWorld, screenshot

pytestmark = pytest.mark.e2e
# A deadline, not an expectation: the agent runs the demo's other runs too, and training logs three models.
TRAINING_DEADLINE_SECONDS = 420.0


def _training_run(world: UiWorld) -> str:
    deadline = time.monotonic() + TRAINING_DEADLINE_SECONDS
    status = "unknown"
    while time.monotonic() < deadline:
        rows = world.query("select id::text, status from ops.runs where idempotency_key = %s", DEMO_TRAINING_KEY)
        assert rows, "the demo data has no training run"
        run_id, status = str(rows[0][0]), str(rows[0][1])
        if status in ("succeeded", "failed", "cancelled"):
            assert status == "succeeded", f"the demo training run {run_id} ended {status}"
            return run_id
        time.sleep(1.0)  # polling a run the agent works on in another process
    raise AssertionError(f"the demo training run is still {status} after {TRAINING_DEADLINE_SECONDS:.0f} s")


def test_training_run_experiment_compare_and_champion(ui_world: UiWorld, sign_in: SignIn) -> None:
    run_id = _training_run(ui_world)
    page = sign_in(ui_world.admin)

    # From the control-room run to the MLflow runs it logged, and to one of them.
    page.goto(f"{ui_world.url}/runs/{run_id}?tab=artifacts")
    page.click("#run-mlflow-link")
    linked = page.locator("#linked-mlflow-runs .linked-mlflow-run")
    expect(linked).to_have_count(3)
    expect(page.locator("#experiments-table")).to_contain_text("lakehouse")
    linked.first.locator("a").click()
    dialog = page.locator("#mlflow-run-dialog")
    expect(dialog.locator("#mlflow-run-facts")).to_contain_text("param alpha")
    expect(dialog.locator("#mlflow-run-artifacts")).to_contain_text("coefficients.json")
    expect(dialog.locator("#mlflow-run-origin")).to_have_attribute("href", f"/runs/{run_id}")
    page.keyboard.press("Escape")

    # The experiment's runs with metric columns, the chart, and the compare of two runs.
    rows = page.locator("#mlflow-runs-table .mlflow-run-row")
    expect(rows).to_have_count(3)
    expect(page.locator("#mlflow-runs-table thead")).to_contain_text("metrics.auc")
    expect(page.locator("#metric-chart")).to_contain_text("sgd-alpha-0.01")  # the legend: one curve per run
    rows.nth(0).locator(".run-select").click()
    rows.nth(1).locator(".run-select").click()
    expect(page.locator("#compare-button")).to_be_enabled()
    screenshot(page, ui_world, "ml-experiment")
    page.click("#compare-button")
    compare = page.locator("#compare-dialog")
    expect(compare.locator("#compare-params")).to_contain_text("alpha")
    expect(compare.locator("#compare-metrics")).to_contain_text("auc")
    expect(compare.locator("#compare-chart")).to_contain_text("step")
    screenshot(page, ui_world, "ml-compare")
    page.keyboard.press("Escape")

    # The registry: the demo model's version, then `champion` set by the admin and audited.
    page.click("#nav-models")
    expect(page.locator("#models-table")).to_contain_text("churn-classifier")
    expect(page.locator("#model-versions .model-version-row")).to_have_count(1)
    expect(page.locator("#model-versions")).to_contain_text("tenure_months")
    page.fill("#alias-gate", "auc")
    page.click("#alias-save")
    expect(page.locator("#alias-message")).to_contain_text("@champion now points at version 1")
    expect(page.locator("#model-versions .model-version-row").first).to_contain_text("champion")
    screenshot(page, ui_world, "ml-models")
    audited = ui_world.query(
        "select action, new_status from ops.audit_log where entity = 'registered_models' and detail->>'alias' = %s",
        "champion",
    )
    assert audited == [("alias_set", "1")]
