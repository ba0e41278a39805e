"""Access policies on a real control room and agent: an admin masks customers.email for group analysts on
the Policies page (the simulator says why); an analyst's DuckDB query task then returns masked values, in the
rows API and the artifact preview, and the editor's live preview (as a member of analysts) shows them masked; a
non-admin cannot preview as someone else; the analyst's refusal is in the audit, the page shows them no editor;
an admin's unmasked result is withheld from them; the catalog hides from the analyst a dataset denied to the group."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.e2e.ui.conftest import DEMO_PROJECT, SignIn, UiWorld, screenshot

pytestmark = pytest.mark.e2e
EMAIL = "ann@shop.example"
SETUP_SQL = (
    "create or replace table acl_customers as select * from (values (1, 'ann@shop.example', 'EU'), "
    "(2, 'bob@shop.example', 'US')) t(id, email, region); create or replace table acl_payroll as select 1 as id"
)


def run_sql(world: UiWorld, token: str, sql: str) -> dict[str, Any]:
    """Submit a one-task DuckDB run and wait (with a deadline) until it finishes; the run's detail."""
    headers = {"Authorization": f"Bearer {token}"}
    spec = {"name": "acl", "tasks": [{"key": "q", "engine": "duckdb", "sql": sql}]}
    posted = httpx.post(f"{world.url}/api/v1/runs", json={"project": DEMO_PROJECT, "environment": "dev", "spec": spec},
                        headers=headers, timeout=30)  # fmt: skip
    assert posted.status_code == 201, posted.text
    run_id = posted.json()["id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        run = httpx.get(f"{world.url}/api/v1/runs/{run_id}", headers=headers, timeout=30).json()
        if run["status"] in ("succeeded", "failed", "cancelled"):
            return dict(run)
        time.sleep(0.5)  # polling the run's status with a deadline
    raise AssertionError(f"run {run_id} did not finish in 120 s")


def result_rows(world: UiWorld, token: str, run_id: str) -> list[Any]:
    headers = {"Authorization": f"Bearer {token}"}
    listed = httpx.get(f"{world.url}/api/v1/runs/{run_id}/artifacts", headers=headers, timeout=30).json()
    parquet = next(a for a in listed["items"] if a["name"] == "result.parquet")
    rows = httpx.get(f"{world.url}/api/v1/artifacts/{parquet['id']}/rows", headers=headers, timeout=30)
    assert rows.status_code == 200, rows.text
    return list(rows.json()["rows"])


def wait_preview(world: UiWorld, token: str, run_id: str) -> dict[str, Any]:
    """Poll a policy preview (with a deadline) until its run finished; the preview."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = httpx.get(f"{world.url}/api/v1/access/previews/{run_id}", headers={"Authorization": f"Bearer {token}"},
                          timeout=30)  # fmt: skip
        assert found.status_code == 200, found.text
        if found.json()["done"]:
            return dict(found.json())
        time.sleep(0.5)  # polling the preview's run with a deadline
    raise AssertionError(f"preview {run_id} did not finish in 120 s")


def _parquet_id(world: UiWorld, token: str, run_id: str) -> str:
    headers = {"Authorization": f"Bearer {token}"}
    listed = httpx.get(f"{world.url}/api/v1/runs/{run_id}/artifacts", headers=headers, timeout=30).json()
    return str(next(a for a in listed["items"] if a["name"] == "result.parquet")["id"])


def setup_query(world: UiWorld, token: str) -> str:
    """An admin's query over the customers (unmasked for them); its run id."""
    run = run_sql(world, token, "select id, email from acl_customers order by id")
    assert run["status"] == "succeeded", run
    return str(run["id"])


def test_an_admin_masks_email_for_analysts_and_the_agent_and_catalog_enforce_it(
    ui_world: UiWorld, sign_in: SignIn
) -> None:
    admin_token = ui_world.api_token(ui_world.admin)
    setup = run_sql(ui_world, admin_token, SETUP_SQL)
    assert setup["status"] == "succeeded", setup
    # The DuckDB task's lineage registers the tables it wrote (with their columns) in the catalog.
    registered = ui_world.query(
        "select name, columns from ops.datasets where name in ('warehouse.main.acl_customers', "
        "'warehouse.main.acl_payroll') and last_run_id = %s",
        setup["id"],
    )
    assert sorted(r[0] for r in registered) == ["warehouse.main.acl_customers", "warehouse.main.acl_payroll"]

    admin = sign_in(ui_world.admin)
    admin.goto(f"{ui_world.url}/policies")
    admin.fill("#group-name", "analysts")
    admin.fill("#group-members", ui_world.operator.email)
    admin.click("#group-save")
    expect(admin.locator("#policies-notice")).to_contain_text("Saved group analysts")
    admin.fill("#policy-name", "mask-email")
    admin.select_option("#policy-kind", "column_mask")
    admin.fill("#policy-target", "acl_customers")
    admin.select_option("#policy-principal-kind", "group")
    admin.fill("#policy-principal", "analysts")
    admin.fill("#policy-mask-column", "email")
    admin.select_option("#policy-mask-kind", "hash")
    admin.click("#policy-save")
    expect(admin.locator("#policies-table tr.policy-row", has_text="mask-email")).to_contain_text("hash email")
    # The payroll table is closed to the group (through the API, the editor's other face).
    denied = httpx.put(
        f"{ui_world.url}/api/v1/access/policies", headers={"Authorization": f"Bearer {admin_token}"}, timeout=30,
        json={"name": "payroll-closed", "kind": "deny", "target_kind": "schema", "target": "warehouse.main.acl_payroll",
              "principal_kind": "group", "principal": "analysts", "privilege": "read"},
    )  # fmt: skip
    assert denied.status_code == 200, denied.text
    admin.reload()
    expect(admin.locator("#policies-table tr.policy-row", has_text="payroll-closed")).to_have_count(1)
    admin.fill("#simulate-principal", "analysts")
    admin.fill("#simulate-column", "email")
    admin.fill("#simulate-dataset", "acl_customers")
    admin.click("#simulate-ask")
    expect(admin.locator("#simulate-verdict")).to_contain_text('masked (hash) by policy "mask-email"')
    expect(admin.locator("#policies-audit")).to_contain_text("create access policies mask-email")
    screenshot(admin, ui_world, "policies-editor")

    # The live preview: as a member of group analysts, the dataset's first rows come back with e-mails hashed
    # (a run acting as the group, through the agent's rewrite); the admin's own rows stay unmasked.
    admin.select_option("#preview-kind", "group")
    admin.fill("#preview-principal", "analysts")
    admin.fill("#preview-dataset", "acl_customers")
    admin.click("#preview-run")
    preview_rows = admin.locator("#preview-table tbody tr")
    expect(preview_rows).to_have_count(2, timeout=120_000)
    expect(admin.locator("#preview-table")).to_contain_text(hashlib.sha256(EMAIL.encode()).hexdigest())
    expect(admin.locator("#preview-table")).not_to_contain_text(EMAIL)
    expect(admin.locator("#preview-status")).to_contain_text("2 of 2 rows as group analysts")
    expect(admin.locator("#policies-audit")).to_contain_text("previewed warehouse.main.acl_customers as group analysts")
    screenshot(admin, ui_world, "policies-preview-masked")
    # Through the API: as the group, the denied payroll is refused, naming the dataset and the privilege.
    started = httpx.post(f"{ui_world.url}/api/v1/access/previews", headers={"Authorization": f"Bearer {admin_token}"},
                         json={"dataset": "acl_payroll", "principal_kind": "group", "principal": "analysts"},
                         timeout=30)  # fmt: skip
    assert started.status_code == 201, started.text
    assert started.json()["sql"] == 'SELECT * FROM "main"."acl_payroll" LIMIT 20'
    payroll = wait_preview(ui_world, admin_token, started.json()["run_id"])
    assert payroll["status"] == "failed" and payroll["rows"] == []
    assert "may not read dataset warehouse.main.acl_payroll (missing privilege read" in str(payroll["error"])

    analyst_token = ui_world.api_token(ui_world.operator)
    # A non-admin may not preview as someone else (the admin), through the API or the page.
    forged = httpx.post(f"{ui_world.url}/api/v1/access/previews", headers={"Authorization": f"Bearer {analyst_token}"},
                        json={"dataset": "acl_customers", "principal_kind": "user", "principal": ui_world.admin.email},
                        timeout=30)  # fmt: skip
    assert forged.status_code == 403, forged.text
    assert "only org admins, and the owners of a dataset" in forged.text
    query = run_sql(ui_world, analyst_token, "select id, email from acl_customers order by id")
    assert query["status"] == "succeeded", query
    rows = result_rows(ui_world, analyst_token, query["id"])  # computed as the analyst: shown, masked
    assert rows == [
        [1, hashlib.sha256(EMAIL.encode()).hexdigest()],
        [2, hashlib.sha256(b"bob@shop.example").hexdigest()],
    ]
    refused = run_sql(ui_world, analyst_token, "select * from acl_payroll")
    assert refused["status"] == "failed"
    assert "may not read dataset warehouse.main.acl_payroll (missing privilege read" in str(refused)

    analyst = sign_in(ui_world.operator)
    # The preview of the analyst's result shows the masked values.
    analyst.goto(f"{ui_world.url}/artifacts?run={query['id']}")
    analyst.locator("#artifacts-table tbody tr[data-artifact='result.parquet']").click()
    expect(analyst.locator("#preview-table tbody tr")).to_have_count(2)
    expect(analyst.locator("#preview-table tbody tr").first).to_contain_text(hashlib.sha256(EMAIL.encode()).hexdigest())
    expect(analyst.locator("#preview-table")).not_to_contain_text(EMAIL)
    screenshot(analyst, ui_world, "policies-masked-preview")
    analyst.keyboard.press("Escape")
    # The analyst sees the lists, the simulator and the audit (their refusal in it), not the editors.
    analyst.goto(f"{ui_world.url}/policies")
    expect(analyst.locator("#policies-read-only")).to_be_visible()
    expect(analyst.locator("#policy-save")).to_have_count(0)
    expect(analyst.locator("#group-save")).to_have_count(0)
    expect(analyst.locator("#preview-run")).to_have_count(0)
    expect(analyst.locator("#simulate-ask")).to_be_visible()
    expect(analyst.locator("#policies-audit")).to_contain_text(
        "refused read on warehouse.main.acl_payroll (payroll-closed)"
    )
    screenshot(analyst, ui_world, "policies-analyst-read-only")
    # An admin's result over the customers is withheld from the analyst, whose policies mask a source.
    admins_result = _parquet_id(ui_world, admin_token, setup_query(ui_world, admin_token))
    admins_rows = httpx.get(f"{ui_world.url}/api/v1/artifacts/{admins_result}/rows",
                            headers={"Authorization": f"Bearer {analyst_token}"}, timeout=30)  # fmt: skip
    assert admins_rows.status_code == 403
    assert "mask dataset warehouse.main.acl_customers" in admins_rows.text
    analyst.click("#nav-catalog")
    analyst.fill("#catalog-search", "acl_")
    rows_shown = analyst.locator("#catalog-table tbody tr")
    expect(rows_shown).to_have_count(1)
    expect(rows_shown.first).to_contain_text("warehouse.main.acl_customers")
    screenshot(analyst, ui_world, "policies-catalog-hidden")
