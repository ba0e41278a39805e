"""Issue 16's task drill-down, in real Chromium against the real `lakehouse run` and its agent: clicking a task
opens its panel (spec, attempts, per-attempt log, artifacts, reads and writes); the panel lives in the address
(a reload reopens it, closing forgets it); jump to the first error; the whole attempt log downloads as a file;
the event log filters by task."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.ui.conftest import SignIn, UiWorld, screenshot
from tests.e2e.ui.test_runs_issue16 import _finished, _submit_api, _wait_for

pytestmark = pytest.mark.e2e

# Where plotly drew a task's node (DAG) or an attempt's bar (Gantt), found through plotly's own axes.
FIGURE_POINT = """([figure, key, attempt]) => {
    const el = document.querySelector(figure);
    const gd = el.classList.contains('js-plotly-plot') ? el : el.querySelector('.js-plotly-plot');
    const box = gd.getBoundingClientRect(), size = gd._fullLayout._size;
    const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
    for (const trace of gd._fullData) {
        const meta = trace.meta || {};
        if (meta.task_keys) {
            const i = meta.task_keys.indexOf(key);
            if (i >= 0) return {x: box.left + size.l + xa.l2p(trace.x[i]), y: box.top + size.t + ya.l2p(trace.y[i])};
        } else if (meta.task_key === key && meta.attempt === attempt && trace.type === 'bar') {
            const middle = xa.d2l(trace.base[0]) + trace.x[0] / 2;
            return {x: box.left + size.l + xa.l2p(middle), y: box.top + size.t + ya.l2p(ya.d2l(trace.y[0]))};
        }
    }
    return null;
}"""


def _click_in_figure(page: Page, figure: str, key: str, attempt: int | None = None) -> None:
    page.locator(figure).scroll_into_view_if_needed()
    hover = page.locator(f"{figure} .hoverlayer .hovertext").first
    # Plotly clicks the point it hovers: hover first (its label shows), then click there. The page may redraw
    # the figure just after a panel closes, which drops a hover; so hover again (off, then on) until a label
    # shows, up to a deadline.
    deadline = time.monotonic() + 30
    while True:
        point = page.evaluate(FIGURE_POINT, [figure, key, attempt])
        assert point, f"{key} is not drawn in {figure}"
        page.mouse.move(1, 1)
        page.mouse.move(point["x"], point["y"], steps=3)
        try:
            expect(hover).to_be_visible(timeout=2_000)
            break
        except AssertionError:
            if time.monotonic() > deadline:
                raise
    page.mouse.click(point["x"], point["y"])


def test_a_task_panel_with_attempts_logs_first_error_download_and_lineage(ui_world: UiWorld, sign_in: SignIn) -> None:
    token = ui_world.api_token(ui_world.operator)
    run_id = _submit_api(ui_world, token, "drill into me", [
        {"key": "prepare", "engine": "shell", "command": "echo prepared rows=42", "max_attempts": 1},
        {"key": "flaky", "engine": "shell", "depends_on": ["prepare"], "max_attempts": 2, "retry_backoff_s": 0,
         "command": "for i in 1 2 3; do echo step $i; done; echo 'disk quota exceeded' >&2; exit 3"},
    ])  # fmt: skip
    assert _finished(ui_world, run_id) == "failed"
    viewer = sign_in(ui_world.viewer)
    viewer.goto(f"{ui_world.url}/runs/{run_id}")
    viewer.locator("#tasks-table tbody tr[data-task='flaky']").click()

    panel = viewer.locator("#task-panel")
    expect(panel).to_be_visible()
    expect(viewer.locator("#panel-task-key")).to_have_text("flaky")
    expect(viewer.locator("#breadcrumb-task")).to_have_text("flaky")
    expect(viewer).to_have_url(re.compile(r".*[?&]task=flaky&attempt=2$"))
    expect(panel.locator(".panel-attempt")).to_have_count(2)
    expect(viewer.locator("#panel-spec")).to_contain_text("disk quota exceeded")  # the submitted spec
    log = viewer.locator("#panel-log")
    expect(log).to_contain_text("step 3")
    expect(log).to_contain_text("disk quota exceeded")
    screenshot(viewer, ui_world, "i16_task_panel")

    # The first error of the attempt: the button shows it in view.
    first_error = ui_world.query(
        "select min(e.id) from ops.events e join ops.tasks t on t.id = e.task_id "
        "where e.run_id = %s and t.key = 'flaky' and e.attempt = 2 and e.level = 'error'",
        run_id,
    )[0][0]
    assert first_error is not None
    viewer.click("#panel-first-error")
    expect(viewer.locator(f"#panel-event-{first_error}")).to_be_in_viewport()

    # The whole log of the attempt as a file.
    with viewer.expect_download() as download:
        viewer.click("#panel-download-log")
    saved = download.value
    assert saved.suggested_filename == "flaky-attempt-2.log"
    text = open(saved.path(), encoding="utf-8").read()  # noqa: SIM115
    assert "step 1" in text and "disk quota exceeded" in text and "prepared" not in text

    # Another attempt's log; the address follows, and a reload reopens the panel there.
    viewer.locator("#task-panel .panel-attempt[data-attempt='1']").click()
    expect(viewer).to_have_url(re.compile(r".*[?&]task=flaky&attempt=1$"))
    viewer.reload()
    expect(viewer.locator("#panel-task-key")).to_have_text("flaky")
    expect(viewer.locator("#panel-log")).to_contain_text("step 1")
    viewer.click("#panel-close")
    expect(panel).to_be_hidden()
    expect(viewer).to_have_url(re.compile(rf".*/runs/{run_id}$"))

    # A click on the task graph's node, or on an attempt's bar in the timeline, opens the panel too.
    _click_in_figure(viewer, "#run-dag", "prepare")
    expect(viewer.locator("#panel-task-key")).to_have_text("prepare")
    viewer.click("#panel-close")
    expect(panel).to_be_hidden()
    viewer.click("#tab-timeline")
    expect(viewer.locator("#run-gantt")).to_be_visible()
    _click_in_figure(viewer, "#run-gantt", "flaky", 1)
    expect(viewer.locator("#panel-task-key")).to_have_text("flaky")
    expect(viewer).to_have_url(re.compile(r".*[?&]task=flaky&attempt=1$"))
    viewer.click("#panel-close")

    # The event log narrowed to one task.
    viewer.goto(f"{ui_world.url}/runs/{run_id}?tab=timeline")
    viewer.click("#event-task")
    viewer.get_by_role("option", name="prepare").click()
    expect(viewer.locator("#event-log")).to_contain_text("prepared rows=42")
    expect(viewer.locator("#event-log .event-task").filter(has_text="flaky")).to_have_count(0)
    tasks_shown = set(viewer.locator("#event-log .event-task").all_inner_texts())
    assert tasks_shown == {"prepare"}, tasks_shown

    # Reads and writes: the demo's dbt and DuckDB tasks report lineage; the panel lists what one of them wrote.
    lineage = (
        "select o.run_id, t.key, x ->> 'name' from ops.openlineage_events o join ops.tasks t on t.id = o.task_id, "
        "jsonb_array_elements(o.event -> 'outputs') x where o.event_type = 'COMPLETE' and t.reused_from_task is null "
        "order by o.id limit 1"
    )
    _wait_for(lambda: ui_world.query(lineage), "a demo task that reports what it wrote", timeout=120)
    rows = ui_world.query(lineage)
    demo = str(rows[0][0])
    rows = [row[1:] for row in rows]
    key, written = rows[0]
    viewer.goto(f"{ui_world.url}/runs/{demo}?task={key}")
    expect(viewer.locator("#panel-task-key")).to_have_text(str(key))
    expect(viewer.locator("#panel-datasets")).to_contain_text(str(written))
    wrote = viewer.locator("#panel-datasets .panel-dataset").filter(has_text="wrote").filter(has_text=str(written))
    expect(wrote.first).to_be_visible()
    screenshot(viewer, ui_world, "i16_task_panel_lineage")
