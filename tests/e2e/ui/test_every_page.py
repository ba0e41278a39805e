"""Every page of the app shell, as the demo admin sees it after `lakehouse run`, at 1440 px and at 820 px:
each renders its title without an error callout and without a horizontal scroll bar, and leaves a
screenshot of each width under test-results/screenshots/ to look at (issue 16's acceptance)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from control_room import routes
from tests.e2e.ui.conftest import SignIn, UiWorld, screenshot
from tests.e2e.ui.test_ml_ui import _training_run

pytestmark = pytest.mark.e2e

PAGES = {
    "overview": routes.HOME,
    "runs": routes.RUNS,
    "jobs": routes.JOBS,
    "promotions": routes.PROMOTIONS,
    "executors": routes.EXECUTORS,
    "artifacts": routes.ARTIFACTS,
    "catalog": routes.CATALOG,
    "lineage": routes.LINEAGE,
    "alerts": routes.ALERTS,
    "governance": routes.GOVERNANCE,
    "experiments": routes.ML_EXPERIMENTS,
    "models": routes.ML_MODELS,
    "policies": routes.POLICIES,
    "dashboards": routes.DASHBOARDS,
    "ask": routes.ASK,
    "preferences": routes.PREFERENCES,
    "api_tokens": routes.API_TOKENS,
}

# What shows that a page's data arrived (the pages load it over the websocket, after the page itself).
LOADED = {
    "overview": "#health-database:has-text('database ok')",
    "governance": ".rule-row",
    "executors": "tr[data-executor]",
    "jobs": ".job-row",
    "runs": "#runs-table tbody tr",
    "catalog": "#catalog-table tbody tr",
    "experiments": "#experiments-table tbody tr",
}

# The widest element's right edge beyond the viewport (a page that scrolls sideways), with what it is.
OVERFLOW = """() => {
    const width = document.documentElement.clientWidth;
    let worst = null;
    for (const el of document.querySelectorAll('body *')) {
        const box = el.getBoundingClientRect();
        if (box.width === 0 || box.right <= width + 1) continue;
        let clipped = false;
        for (let up = el.parentElement; up; up = up.parentElement) {
            const style = getComputedStyle(up);
            const scrolls = ['auto', 'scroll', 'hidden', 'clip'].includes(style.overflowX);
            if (scrolls && up.getBoundingClientRect().right <= width + 1) {
                clipped = true;
                break;
            }
        }
        if (!clipped && (!worst || box.right > worst.right)) {
            worst = {right: Math.round(box.right), tag: el.tagName, id: el.id, cls: String(el.className).slice(0, 60)};
        }
    }
    return {scroll: document.documentElement.scrollWidth - width, worst};
}"""


def test_every_page_renders_at_1440_and_820_px_without_sideways_scrolling(ui_world: UiWorld, sign_in: SignIn) -> None:
    _training_run(ui_world)  # the demo's last run to finish: every page then has its data
    admin = sign_in(ui_world.admin)
    problems = []
    for name, path in PAGES.items():
        for width in (1440, 820):
            admin.set_viewport_size({"width": width, "height": 900})
            admin.goto(f"{ui_world.url}{path}")
            expect(admin.locator("#page-title")).to_be_visible()
            expect(admin.locator("#page-title")).not_to_have_text("")
            admin.wait_for_load_state("networkidle")
            expect(admin.locator("#signed-in-user")).to_have_text(ui_world.admin.email)  # the session's state arrived
            if name in LOADED:
                expect(admin.locator(LOADED[name]).first).to_be_visible()
            found = admin.evaluate(OVERFLOW)
            if found["scroll"] > 1:
                problems.append(f"{name} at {width} px scrolls sideways by {found['scroll']} px: {found['worst']}")
            screenshot(admin, ui_world, f"page_{name}_{width}")
    assert not problems, "\n".join(problems)
