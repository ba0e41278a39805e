"""Routing & caps on a real control room: an admin reorders two rules and the simulator's answer changes,
reviews the diff and applies it (audited); the edit shows as drift with an export; a duplicated rule is
flagged as shadowed; a cap of 1 concurrent task shows live usage and a second task waiting with the reason
"pool at its concurrency cap"; a submit a cap refused is listed beside it (no run: who asked, where); an
operator sees no edit controls, and a forged edit is refused in SQL."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import psycopg
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.ui.conftest import DEMO_PROJECT, SignIn, UiWorld, screenshot

pytestmark = pytest.mark.e2e

CAP = "e2e-default-pool-one"
NO_RUNS = "e2e-no-staging-runs"
SLOW_SPEC = {
    "name": "e2e slow",
    "tasks": [{"key": "wait", "engine": "shell", "command": "sleep 25", "max_attempts": 1}],
}


def _choose(page: Page, trigger: str, option: str) -> None:
    page.click(trigger)
    page.get_by_role("option", name=option, exact=True).click()


def _simulate(page: Page, *, project: str, environment: str, engine: str, tags: str) -> None:
    _choose(page, "#sim-project", project)
    _choose(page, "#sim-environment", environment)
    page.fill("#sim-engine", engine)
    page.fill("#sim-tags", tags)
    page.click("#simulate")


def _row(page: Page, rule: str) -> str:
    return f"#rules-table tr[data-rule='{rule}']"


def test_admin_edits_routing_and_caps_operator_reads(ui_world: UiWorld, sign_in: SignIn) -> None:
    admin = sign_in(ui_world.admin)
    admin.click("a[href='/governance']")
    expect(admin.locator("#rules-table tr.rule-row")).to_have_count(5)
    expect(admin.locator("#page-title")).to_have_text("Routing & caps")

    # The simulator: an ml training Spark task in prod goes by prod-spark (position 10) ...
    _simulate(admin, project="ml", environment="prod", engine="spark", tags="training")
    expect(admin.locator("#sim-rule")).to_have_text("prod-spark")
    expect(admin.locator(f"{_row(admin, 'prod-spark')} .sim-match")).to_be_visible()
    # ... until ml-training is dragged above it (a real HTML5 drag in the browser: it takes prod-spark's place).
    admin.locator(_row(admin, "ml-training")).drag_to(admin.locator(_row(admin, "prod-spark")))
    expect(admin.locator("#rules-table tr.rule-row").first).to_have_attribute("data-rule", "ml-training")
    expect(admin.locator(f"{_row(admin, 'ml-training')} + tr")).to_have_attribute("data-rule", "prod-spark")
    expect(admin.locator(_row(admin, "catch-all"))).to_have_attribute("draggable", "true")
    # The arrows are the keyboard's way: down then up (Enter on the focused button) leaves the order as dragged.
    # (Each move is awaited before the next: a press on a row that re-renders under it would hit its neighbour.)
    admin.locator(f"{_row(admin, 'dbt-models')} .rule-arrow-down").press("Enter")
    expect(admin.locator(f"{_row(admin, 'sql-warehouse')} + tr")).to_have_attribute("data-rule", "dbt-models")
    admin.locator(f"{_row(admin, 'dbt-models')} .rule-arrow-up").press("Enter")
    expect(admin.locator(f"{_row(admin, 'sql-warehouse')} + tr")).to_have_attribute("data-rule", "catch-all")
    names = admin.locator("#rules-table tr.rule-row").evaluate_all("rows => rows.map(r => r.dataset.rule)")
    assert names == ["ml-training", "prod-spark", "dbt-models", "sql-warehouse", "catch-all"], names
    admin.click("#simulate")
    expect(admin.locator("#sim-rule")).to_have_text("ml-training")
    expect(admin.locator("#sim-result")).to_contain_text("your draft")
    screenshot(admin, ui_world, "governance-1-reordered-simulated")
    admin.click("#review-apply")
    expect(admin.locator("#review-diff")).to_contain_text("~ ml-training: position 40 -> 5")
    screenshot(admin, ui_world, "governance-2-review-diff")
    admin.click("#apply-confirm")
    expect(admin.locator("#review-apply")).to_be_disabled()
    # Applied: the live matrix now gives the simulator the same answer (no longer a draft's).
    admin.click("#simulate")
    expect(admin.locator("#sim-result")).not_to_contain_text("your draft")
    expect(admin.locator("#sim-rule")).to_have_text("ml-training")
    positions = ui_world.query("select name from ops.routing_rules order by position")
    assert [p[0] for p in positions][:2] == ["ml-training", "prod-spark"]
    audit = ui_world.query(
        "select actor, detail -> 'before' ->> 'position', detail -> 'after' ->> 'position' from ops.audit_log "
        "where entity = 'routing_rules' and action = 'update' and detail ->> 'name' = 'ml-training'"
    )
    assert audit == [(ui_world.admin.email, "40", "5")]
    # The UI's edit is drift against the deployed bundle, with an export.
    expect(admin.locator("#drift-banner")).to_contain_text("~ routing_rules ml-training: position 40 -> 5")
    expect(admin.locator("#export-bundle")).to_have_attribute("href", "/api/v1/governance/bundle.zip?org=demo")

    # Warnings computed live: a duplicate is shadowed; a pool no executor serves is flagged.
    admin.locator(f"{_row(admin, 'dbt-models')} .rule-copy").click()
    expect(admin.locator(f"{_row(admin, 'dbt-models-copy')} .rule-warning")).to_contain_text(
        'never matches: rule "dbt-models" above it matches every task it would'
    )
    # A pool no executor serves is flagged as soon as the edit is done (still a draft).
    admin.locator(f"{_row(admin, 'dbt-models-copy')} .rule-pencil").click()
    admin.fill("#edit-pool", "gpu")
    admin.click("#edit-done")
    expect(admin.locator(f"{_row(admin, 'dbt-models-copy')} .rule-warning")).to_contain_text([
        "pool gpu has no executor", 'never matches: rule "dbt-models" above it matches every task it would'
    ])  # fmt: skip
    screenshot(admin, ui_world, "governance-3-warnings")
    admin.click("#discard-draft")
    expect(admin.locator(_row(admin, "dbt-models-copy"))).to_have_count(0)


@pytest.fixture
def slow_runs(ui_world: UiWorld) -> Iterator[list[str]]:
    """The slow runs a test submits; whatever the test's outcome, they are cancelled and the cap of one task
    is gone afterwards, so a failure here cannot leave the shared agent capped for the tests after it."""
    runs: list[str] = []
    yield runs
    headers = {"Authorization": f"Bearer {ui_world.api_token(ui_world.admin)}"}
    deleted = httpx.delete(f"{ui_world.url}/api/v1/caps/{CAP}", params={"org": "demo"}, headers=headers, timeout=30)
    assert deleted.status_code in {204, 404}, deleted.text
    for run_id in runs:
        httpx.post(f"{ui_world.url}/api/v1/runs/{run_id}/cancel", headers=headers, timeout=30)


def test_cap_usage_and_operator_reads_only(ui_world: UiWorld, sign_in: SignIn, slow_runs: list[str]) -> None:
    admin = sign_in(ui_world.admin)
    admin.goto(f"{ui_world.url}/governance")
    expect(admin.locator("#rules-table tr.rule-row")).to_have_count(5)

    # A cap of one concurrent task on the pool: usage is live and the second task waits. (First the demo's
    # own runs, claimed before any cap, must be done: run alone, this test can start while they still run.)
    deadline = time.monotonic() + 180
    while ui_world.query("select count(*) from ops.tasks where status in ('claimed', 'running')")[0][0]:
        assert time.monotonic() < deadline, "the demo's tasks still run after 3 minutes"
        admin.wait_for_timeout(500)
    admin.click("#tab-caps")
    admin.click("#add-cap")
    admin.fill("#cap-name", CAP)
    admin.fill("#cap-pool", "default")
    admin.fill("#cap-limit", "1")
    screenshot(admin, ui_world, "governance-3-cap-dialog")
    admin.click("#cap-save")
    expect(admin.locator(f"#caps-table tr[data-cap='{CAP}'] .cap-limit")).to_have_text("1 tasks")
    token = ui_world.api_token(ui_world.operator)
    runs = slow_runs
    for _ in range(2):
        posted = httpx.post(
            f"{ui_world.url}/api/v1/runs", json={"project": DEMO_PROJECT, "environment": "dev", "spec": SLOW_SPEC},
            headers={"Authorization": f"Bearer {token}"}, timeout=30,
        )  # fmt: skip
        assert posted.status_code == 201, posted.text
        runs.append(posted.json()["id"])
    row = admin.locator(f"#caps-table tr[data-cap='{CAP}']")
    expect(row.locator(".cap-used")).to_have_text("1 running")
    expect(row.locator(".cap-waiting")).to_contain_text("pool at its concurrency cap")
    # The task the cap holds is listed beside it, linked to its run (the task's panel). (A task of the demo's
    # schedules may be held beside it, when one comes due meanwhile.)
    held = row.locator(".cap-refusal-run", has_text="e2e slow").first
    expect(held).to_have_text("e2e slow · wait")
    href = held.get_attribute("href")
    assert href in {f"/runs/{run_id}?task=wait" for run_id in runs}, href
    expect(row.locator(".cap-refusal")).to_contain_text("claim")
    screenshot(admin, ui_world, "governance-4-cap-usage")

    # A submit a cap refuses makes no run; it is listed beside the cap all the same: the run it would have
    # been, where, and who asked.
    admin_token = ui_world.api_token(ui_world.admin)
    no_runs = {"scope": "environment", "project": DEMO_PROJECT, "environment": "staging", "kind": "runs_per_day",
               "limit": 0}  # fmt: skip
    saved = httpx.put(f"{ui_world.url}/api/v1/caps/{NO_RUNS}", json=no_runs,
                      headers={"Authorization": f"Bearer {admin_token}"}, timeout=30)  # fmt: skip
    assert saved.status_code == 200, saved.text
    try:
        refused = httpx.post(
            f"{ui_world.url}/api/v1/runs",
            json={"project": DEMO_PROJECT, "environment": "staging", "spec": {**SLOW_SPEC, "name": "e2e refused"}},
            headers={"Authorization": f"Bearer {token}"}, timeout=30,
        )  # fmt: skip
        assert refused.status_code == 429, refused.text
        submit_row = admin.locator(f"#caps-table tr[data-cap='{NO_RUNS}']")
        expect(submit_row.locator(".cap-refusal-submit")).to_have_text(
            f"e2e refused in {DEMO_PROJECT}/staging by {ui_world.operator.email}"
        )
        expect(submit_row.locator(".cap-refusal")).to_contain_text("submit")
        submit_row.scroll_into_view_if_needed()
        screenshot(admin, ui_world, "governance-7-submit-refusal")
    finally:
        deleted = httpx.delete(
            f"{ui_world.url}/api/v1/caps/{NO_RUNS}", params={"org": "demo"},
            headers={"Authorization": f"Bearer {admin_token}"}, timeout=30,
        )  # fmt: skip
    assert deleted.status_code == 204, deleted.text
    admin.evaluate("() => { window.scrollTo(0, 0); document.querySelectorAll('*').forEach(e => e.scrollTop = 0); }")

    # Effective caps for a spec: a Spark task in prod with its own 10-minute timeout.
    _choose(admin, "#eff-environment", "prod")
    admin.fill("#eff-spec", "tasks:\n  - key: train\n    engine: spark\n    application: job.py\n    timeout_s: 600\n")
    admin.click("#eff-show")
    train = admin.locator("#eff-result .effective-task[data-task='train']")
    expect(train).to_contain_text("by rule prod-spark")
    tightest = train.locator(".effective-limit[data-tightest='true']")
    expect(tightest).to_have_count(4)
    for source in (CAP, "spec timeout_s", "org-runs-per-day", "spark-memory"):
        expect(train.locator(f".effective-limit[data-limit='{source}']")).to_have_attribute("data-tightest", "true")
    expect(train.locator(".effective-limit[data-limit='prod-max-runtime']")).to_have_attribute("data-tightest", "false")
    # Back to the top (the fill scrolled the page), so the sticky header is drawn at the top of the picture.
    admin.evaluate("() => { window.scrollTo(0, 0); document.querySelectorAll('*').forEach(e => e.scrollTop = 0); }")
    screenshot(admin, ui_world, "governance-6-effective-caps")

    # The operator reads everything and edits nothing; a forged edit is refused in SQL (the API's 403 comes
    # from ops.apply_routing_rules, the direct UPDATE from the missing grant).
    operator = sign_in(ui_world.operator)
    operator.goto(f"{ui_world.url}/governance")
    expect(operator.locator("#read-only")).to_be_visible()
    expect(operator.locator("#rules-table tr.rule-row")).to_have_count(5)
    expect(operator.locator("#add-rule")).to_have_count(0)
    expect(operator.locator(".rule-arrow-up")).to_have_count(0)
    expect(operator.locator(".rule-grip")).to_have_count(0)
    expect(operator.locator(_row(operator, "catch-all"))).not_to_have_attribute("draggable", "true")
    screenshot(operator, ui_world, "governance-5-operator-read-only")
    forged = httpx.put(
        f"{ui_world.url}/api/v1/routing/rules", json={"rules": [{"name": "all-mine", "pool": "default"}]},
        headers={"Authorization": f"Bearer {token}"}, timeout=30,
    )  # fmt: skip
    assert forged.status_code == 403, forged.text
    operator_id = ui_world.query("select id from ops.users where email = %s", ui_world.operator.email)[0][0]
    with psycopg.connect(ui_world.database_url, autocommit=True) as conn, conn.transaction(force_rollback=True):
        conn.execute("set local role authenticated")
        conn.execute("select set_config('request.jwt.claims', %s, true)", (json.dumps({"sub": str(operator_id)}),))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("update ops.routing_rules set pool = 'mine'")

    # The admin deletes the cap (the fixture cancels the slow runs and leaves the agent free for the other tests).
    admin.click(f"#caps-table tr[data-cap='{CAP}'] .cap-edit")
    admin.click("#cap-delete")
    expect(admin.locator(f"#caps-table tr[data-cap='{CAP}']")).to_have_count(0)
