"""Runs and run detail to the standard of Dagster and Airflow 3 (issue 16), in real Chromium against the real
`lakehouse run` and its executor agent: one test per defect of the walk (Gantt extents, labelled durations,
dialogs that stay closed, the overview's environment and links, the failed run's header, the app shell's
404 and favicon, the 820 px layout, NUL search / stderr level / run error), and re-execute from failure,
which proves the upstream task that succeeded is not run again by counting its attempts.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from control_room.state import formatting
from tests.e2e.conftest import LAKEHOUSE
from tests.e2e.ui.conftest import UI_TIMEOUT_MS, SignIn, UiWorld, screenshot, sign_in_by_form

pytestmark = pytest.mark.e2e

RUN_PAGE = re.compile(r".*/runs/(?P<id>[0-9a-f-]{36})$")
NARROW = {"width": 820, "height": 900}
# The Gantt's Plotly div (Reflex may put the id on the div itself or on a wrapper).
GANTT_BARS = """() => {
    const el = document.querySelector('#run-gantt');
    const graph = el.classList.contains('js-plotly-plot') ? el : el.querySelector('.js-plotly-plot');
    return graph.data.filter(t => t.type === 'bar').map(t => ({task: t.y[0], base: t.base[0], ms: t.x[0]}));
}"""


def _shots(page: Page, world: UiWorld, name: str) -> None:
    """The page at 1440 px and at 820 px wide (charts settle before each picture)."""
    for width, suffix in ((1440, ""), (820, "_820")):
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(400)
        screenshot(page, world, f"{name}{suffix}")
    page.set_viewport_size({"width": 1440, "height": 900})


def _wait_for(predicate: Callable[[], object], what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)  # polling the database for an outcome produced by other processes
    pytest.fail(f"timed out waiting for {what}")


def _api(world: UiWorld, token: str) -> httpx.Client:
    return httpx.Client(base_url=f"{world.url}/api/v1", headers={"Authorization": f"Bearer {token}"},
                        timeout=30, trust_env=False)  # fmt: skip


def _submit_api(world: UiWorld, token: str, name: str, tasks: list[dict[str, Any]], env: str = "dev") -> str:
    with _api(world, token) as api:
        answer = api.post("/runs", json={"project": "lakehouse", "environment": env,
                                         "spec": {"name": name, "tasks": tasks}})  # fmt: skip
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def _status(world: UiWorld, run_id: str) -> str:
    return str(world.query("select status from ops.runs where id = %s", run_id)[0][0])


def _finished(world: UiWorld, run_id: str) -> str:
    _wait_for(lambda: _status(world, run_id) in ("succeeded", "failed", "cancelled"), f"run {run_id} to finish")
    return _status(world, run_id)


def _demo_run(world: UiWorld) -> str:
    _wait_for(lambda: world.query("select 1 from ops.runs where status = 'succeeded' and name like 'demo pipeline%%'"),
              "a succeeded demo run", timeout=120)  # fmt: skip
    rows = world.query("select id from ops.runs where name like 'demo pipeline%%' and status = 'succeeded' "
                       "order by created_at limit 1")  # fmt: skip
    return str(rows[0][0])


def _attempts(world: UiWorld, run_id: str) -> dict[str, int]:
    rows = world.query(
        "select t.key, count(a.attempt) from ops.tasks t left join ops.task_attempts a on a.task_id = t.id "
        "where t.run_id = %s group by t.key",
        run_id,
    )
    return {str(key): int(str(count)) for key, count in rows}


def _ms(value: object) -> float:
    assert isinstance(value, datetime)
    return value.timestamp() * 1000


# Defect 1 -------------------------------------------------------------------------------------------


def test_gantt_bars_show_each_attempts_real_extent(ui_world: UiWorld, sign_in: SignIn) -> None:
    run_id = _demo_run(ui_world)
    viewer = sign_in(ui_world.viewer)
    viewer.goto(f"{ui_world.url}/runs/{run_id}?tab=timeline")
    expect(viewer.locator("#run-gantt")).to_be_visible()
    _wait_for(lambda: len(viewer.evaluate(GANTT_BARS)) == 3, "three bars in the Gantt", timeout=30)
    bars = {bar["task"]: bar for bar in viewer.evaluate(GANTT_BARS)}
    recorded = {
        str(key): (_ms(claimed), _ms(finished))
        for key, claimed, finished in ui_world.query(
            "select t.key, a.claimed_at, a.finished_at from ops.task_attempts a join ops.tasks t on t.id = a.task_id "
            "where a.run_id = %s",
            run_id,
        )
    }
    for key, (claimed, finished) in recorded.items():
        base = datetime.fromisoformat(str(bars[key]["base"]).replace(" ", "T"))
        start = (base if base.tzinfo else base.replace(tzinfo=UTC)).timestamp() * 1000
        assert abs(start - claimed) < 2, (key, start, claimed)
        assert abs(bars[key]["ms"] - (finished - claimed)) < 2, f"{key}: bar longer than the attempt"
    # publish depends on summarize: its bar starts after summarize's ends, as the attempts did.
    assert recorded["publish"][0] >= recorded["summarize"][1]
    assert bars["publish"]["ms"] >= 0 and bars["summarize"]["ms"] == pytest.approx(
        recorded["summarize"][1] - recorded["summarize"][0], abs=2
    )
    _shots(viewer, ui_world, "i16_run_timeline")


# Defect 2 -------------------------------------------------------------------------------------------


def test_durations_are_labelled_and_agree(ui_world: UiWorld, sign_in: SignIn) -> None:
    run_id = _demo_run(ui_world)
    viewer = sign_in(ui_world.viewer)
    viewer.goto(f"{ui_world.url}/runs/{run_id}")
    headers = viewer.locator("#tasks-table thead th")
    expect(headers).to_contain_text(["Queued", "Claimed → finished"])
    expect(viewer.locator("#attempts-table thead th")).to_contain_text(["Claimed → finished"])
    rows = ui_world.query(
        "select t.key, a.claimed_at, a.finished_at from ops.task_attempts a join ops.tasks t on t.id = a.task_id "
        "where a.run_id = %s",
        run_id,
    )
    for key, claimed, finished in rows:
        assert isinstance(claimed, datetime) and isinstance(finished, datetime)
        expected = formatting.between(claimed, finished)
        task_cell = viewer.locator(f"#tasks-table tbody tr[data-task='{key}'] .task-duration")
        attempt_cell = viewer.locator(f"#attempts-table tbody tr[data-task='{key}'] .attempt-duration")
        expect(task_cell).to_have_text(expected)
        expect(attempt_cell).to_have_text(expected)
    viewer.click("#tab-timeline")
    finish = viewer.locator("#event-log [data-event-id]", has_text="succeeded after").first
    expect(finish).to_contain_text("process wall time")
    expect(finish).not_to_contain_text("duration_s=")


# Defect 3 -------------------------------------------------------------------------------------------


def test_dialogs_do_not_reopen_by_themselves(ui_world: UiWorld, sign_in: SignIn) -> None:
    run_id = _demo_run(ui_world)
    operator = sign_in(ui_world.operator)
    operator.goto(f"{ui_world.url}/artifacts?run={run_id}")
    operator.locator("#artifacts-table tbody tr[data-artifact='summary.json']").click()
    expect(operator.locator("#preview-title")).to_have_text("summary.json")
    operator.reload()
    expect(operator.locator("#artifacts-table tbody tr")).to_have_count(3)
    expect(operator.locator("#artifact-preview")).to_have_count(0)
    operator.locator("#artifacts-table tbody tr[data-artifact='summary.json']").click()
    expect(operator.locator("#preview-title")).to_be_visible()
    operator.goto(f"{ui_world.url}/runs")
    operator.go_back()
    expect(operator.locator("#artifacts-table tbody tr")).to_have_count(3)
    expect(operator.locator("#artifact-preview")).to_have_count(0)
    operator.click("#nav-runs")
    operator.click("#nav-artifacts")
    expect(operator.locator("#artifacts-table")).to_be_visible()
    expect(operator.locator("#artifact-preview")).to_have_count(0)

    # The submit dialog with an error: gone after a reload, and its error too when it is opened again.
    operator.goto(f"{ui_world.url}/runs")
    operator.click("#submit-run")
    operator.fill("#submit-spec", "{ not json")
    operator.click("#submit-confirm")
    expect(operator.locator("#submit-error")).to_contain_text("not valid JSON")
    operator.reload()
    expect(operator.locator("#runs-table")).to_be_visible()
    expect(operator.locator("#submit-spec")).to_have_count(0)
    operator.click("#submit-run")
    expect(operator.locator("#submit-spec")).to_be_visible()
    expect(operator.locator("#submit-error")).to_have_count(0)


# Defects 4 and 5 ------------------------------------------------------------------------------------


def test_overview_follows_the_environment_live_and_links_to_filtered_runs(ui_world: UiWorld, sign_in: SignIn) -> None:
    operator = sign_in(ui_world.operator)
    token = ui_world.api_token(ui_world.operator)
    operator.goto(f"{ui_world.url}/")
    expect(operator.locator("#health-database")).to_have_text("database ok")
    operator.locator("#environment-switcher").get_by_role("radio", name="prod").click()
    expect(operator.locator("#overview-scope")).to_contain_text("the prod environment")

    def count(status: str, env: str | None) -> int:
        rows = ui_world.query(
            "select count(*) from ops.runs r join ops.environments e on e.id = r.environment_id "
            "where r.status = %s and (e.name = %s or %s::text is null) and r.created_at > now() - interval '24 hours'",
            status, env, env,
        )  # fmt: skip
        return int(str(rows[0][0]))

    # The demo's runs are dev runs: counting every environment would show them under prod too.
    assert count("succeeded", None) > count("succeeded", "prod")
    expect(operator.locator("#overview-count-succeeded")).to_have_text(str(count("succeeded", "prod")))
    before = count("failed", "prod")
    expect(operator.locator("#overview-count-failed")).to_have_text(str(before))
    boom = {"key": "boom", "engine": "shell", "max_attempts": 1, "command": "echo about to fail; exit 3"}
    run_id = _submit_api(ui_world, token, "prod breaks", [boom], env="prod")
    assert _finished(ui_world, run_id) == "failed"
    # Live: the prod count moves without a reload.
    expect(operator.locator("#overview-count-failed")).to_have_text(str(before + 1))
    _shots(operator, ui_world, "i16_overview_prod")
    operator.click("#overview-failed")
    operator.wait_for_url(re.compile(r".*/runs\?status=failed&range=24h$"))
    expect(operator.locator(f"#runs-table tbody tr[data-run-id='{run_id}']")).to_be_visible()
    statuses = operator.locator("#runs-table tbody tr").evaluate_all("rows => rows.map(r => r.dataset.status)")
    assert set(statuses) == {"failed"}, statuses
    expect(operator.locator("#quick-failed-24h")).to_have_class(re.compile(r"rt-variant-solid"))
    _shots(operator, ui_world, "i16_runs_failed_24h")

    # Defect 5: the failed run's header says what happened, and names the project as the switcher does.
    operator.goto(f"{ui_world.url}/runs/{run_id}")
    expect(operator.locator("#run-status")).to_have_text("failed")
    expect(operator.locator("#run-progress")).to_have_text("1 failed of 1 task")
    switcher_name = operator.locator("#project-switcher").inner_text().strip()
    expect(operator.locator("#run-project")).to_have_text(switcher_name)
    assert switcher_name != "lakehouse"
    expect(operator.locator("#run-error-summary")).to_contain_text('task "boom" failed')
    _shots(operator, ui_world, "i16_run_failed")


# Defect 6 -------------------------------------------------------------------------------------------


def test_app_shell_404_coming_later_titles_and_favicon(ui_world: UiWorld, sign_in: SignIn) -> None:
    viewer = sign_in(ui_world.viewer)
    # Routing & caps has landed (/governance): no "coming later" page is left, so /later/... is unknown.
    for bogus in ("/later/governance", "/later/bogus", "/no/such/page"):
        viewer.goto(f"{ui_world.url}{bogus}")
        expect(viewer.locator("#not-found")).to_have_text("This page does not exist")
        expect(viewer.locator("#sidebar")).to_be_visible()
        expect(viewer.locator("#not-available")).to_have_count(0)
    _shots(viewer, ui_world, "i16_not_found")
    icons = viewer.locator("#sidebar a.nav-item").evaluate_all("links => links.map(a => !!a.querySelector('svg'))")
    assert icons and all(icons), "every navigation entry has its icon"
    favicon = httpx.get(f"{ui_world.url}/favicon.ico", timeout=10, trust_env=False)
    assert favicon.status_code == 200 and len(favicon.content) > 100


# Defect 7 -------------------------------------------------------------------------------------------


def test_the_run_page_reads_well_at_820_px(ui_world: UiWorld, sign_in: SignIn) -> None:
    run_id = _demo_run(ui_world)
    viewer = sign_in(ui_world.viewer)
    viewer.set_viewport_size(NARROW)
    viewer.goto(f"{ui_world.url}/runs/{run_id}")
    expect(viewer.locator("#run-status")).to_have_text("succeeded")
    sidebar = viewer.locator("#sidebar").bounding_box()
    assert sidebar and sidebar["width"] <= 64, "the sidebar collapses to its icons"
    box = viewer.locator("#run-created").bounding_box()
    assert box and box["height"] < 30, f"a date wraps: {box}"
    page_width = viewer.evaluate("document.documentElement.scrollWidth")
    assert page_width <= NARROW["width"], f"the page scrolls sideways ({page_width} px)"
    table = viewer.locator("#tasks-table")
    overflow = table.evaluate("t => { const s = t.closest('.rt-TableRoot') || t; "
                              "return [s.scrollWidth, s.clientWidth, getComputedStyle(s).overflowX]; }")  # fmt: skip
    assert overflow[0] <= overflow[1] or overflow[2] in ("auto", "scroll"), f"the tasks table is clipped: {overflow}"
    # The sidebar's background runs the whole page, not just the first screen.
    heights = viewer.evaluate("[document.querySelector('#sidebar').getBoundingClientRect().height, "
                              "document.documentElement.scrollHeight]")  # fmt: skip
    assert heights[0] >= heights[1] - 1, heights
    screenshot(viewer, ui_world, "i16_run_detail_820")
    viewer.goto(f"{ui_world.url}/runs")
    expect(viewer.locator("#runs-table")).to_be_visible()
    assert viewer.evaluate("document.documentElement.scrollWidth") <= NARROW["width"]
    screenshot(viewer, ui_world, "i16_runs_820")


# Defect 8 -------------------------------------------------------------------------------------------


def test_nul_search_stderr_warnings_and_the_runs_error(ui_world: UiWorld, sign_in: SignIn) -> None:
    viewer = sign_in(ui_world.viewer)
    viewer.goto(f"{ui_world.url}/runs")
    viewer.fill("#runs-search", "demo\x00")
    expect(viewer.locator("#runs-error")).to_contain_text("NUL (0x00)")
    expect(viewer.locator("#runs-error")).not_to_contain_text("PostgreSQL")
    token = ui_world.api_token(ui_world.operator)
    with _api(ui_world, token) as api:
        refused = api.get("/runs", params={"q": "demo\x00"})
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert "q" in refused.text and "PostgreSQL" not in refused.text

    run_id = _submit_api(ui_world, token, "stderr speaks", [{"key": "noisy", "engine": "shell", "max_attempts": 1,
                         "command": "echo fine; echo 'disk almost full' >&2; exit 4"}])  # fmt: skip
    assert _finished(ui_world, run_id) == "failed"
    levels = dict(ui_world.query("select message, level from ops.events where run_id = %s and type = 'log'", run_id))
    assert levels.get("disk almost full") == "warning" and levels.get("fine") == "info", levels
    with _api(ui_world, token) as api:
        run = api.get(f"/runs/{run_id}").json()
    assert run["error"].startswith('task "noisy" failed'), run["error"]


# Deliver 1: re-execute from failure ----------------------------------------------------------------


def test_rerun_failed_reuses_the_upstream_task_and_links_both_ways(
    ui_world: UiWorld, sign_in: SignIn, tmp_path: Path
) -> None:
    marker = Path("/tmp") / f"lh-e2e-rerun-{uuid.uuid4().hex[:8]}"  # the agent's filesystem is this machine's
    token = ui_world.api_token(ui_world.operator)
    source = _submit_api(ui_world, token, "rerun me", [
        {"key": "extract", "engine": "shell", "command": "echo extracted", "max_attempts": 1},
        {"key": "load", "engine": "shell", "command": f"test -f {marker} || exit 3", "depends_on": ["extract"],
         "max_attempts": 1},
        {"key": "publish", "engine": "shell", "command": "echo published", "depends_on": ["load"], "max_attempts": 1},
    ])  # fmt: skip
    assert _finished(ui_world, source) == "failed"
    assert _attempts(ui_world, source) == {"extract": 1, "load": 1, "publish": 0}
    marker.write_text("ready")
    try:
        operator = sign_in(ui_world.operator)
        operator.goto(f"{ui_world.url}/runs/{source}")
        expect(operator.locator("#run-status")).to_have_text("failed")
        _shots(operator, ui_world, "i16_run_failed_actions")
        operator.click("#rerun-failed")
        operator.wait_for_url(lambda url: RUN_PAGE.match(url) is not None and source not in url)
        found = RUN_PAGE.match(operator.url)
        assert found
        rerun = found["id"]
        expect(operator.locator("#run-status")).to_have_text("succeeded", timeout=90_000)
        # The upstream task that succeeded is not run again: no attempt of it in the re-run.
        assert _attempts(ui_world, rerun) == {"extract": 0, "load": 1, "publish": 1}
        assert _attempts(ui_world, source) == {"extract": 1, "load": 1, "publish": 0}
        expect(operator.locator("#tasks-table tbody tr[data-task='extract'] .reused-link")).to_be_visible()
        expect(operator.locator("#run-progress")).to_have_text("2 succeeded, 1 reused of 3 tasks")
        expect(operator.locator("#rerun-of")).to_contain_text(source[:8])
        _shots(operator, ui_world, "i16_rerun_detail")
        operator.click("#rerun-of a")
        operator.wait_for_url(re.compile(f".*/runs/{source}$"))
        expect(operator.locator("#reruns")).to_contain_text(rerun[:8])

        # Re-run from a task: only it and its downstream run.
        operator.goto(f"{ui_world.url}/runs/{rerun}")
        operator.click("#rerun-from")
        operator.click("#rerun-task")
        operator.get_by_role("option", name="publish").click()
        _shots(operator, ui_world, "i16_rerun_from_dialog")
        operator.click("#rerun-from-confirm")
        operator.wait_for_url(lambda url: RUN_PAGE.match(url) is not None and rerun not in url)
        third = RUN_PAGE.match(operator.url)
        assert third
        expect(operator.locator("#run-status")).to_have_text("succeeded", timeout=90_000)
        assert _attempts(ui_world, third["id"]) == {"extract": 0, "load": 0, "publish": 1}

        # And from the CLI, against the same database.
        env = {k: v for k, v in os.environ.items() if not k.startswith("LAKEHOUSE_")}
        env["LAKEHOUSE_DATABASE_URL"] = ui_world.database_url
        done = subprocess.run([str(LAKEHOUSE), "runs", "rerun", source, "--from-task", "load"], env=env,
                              capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr
        cli_run = re.search(r"run (\S+) re-runs", done.stdout)
        assert cli_run, done.stdout
        assert _finished(ui_world, cli_run[1]) == "succeeded"
        assert _attempts(ui_world, cli_run[1]) == {"extract": 0, "load": 1, "publish": 1}
        refused = subprocess.run([str(LAKEHOUSE), "runs", "rerun", source, "--from-task", "nope"], env=env,
                                 capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
        assert refused.returncode == 1 and 'no task "nope"' in refused.stderr
    finally:
        marker.unlink(missing_ok=True)


# Deliver 5: why is it queued -----------------------------------------------------------------------


def test_a_queued_task_says_why_and_the_reason_updates_live(ui_world: UiWorld, sign_in: SignIn) -> None:
    admin = sign_in(ui_world.admin)
    admin.goto(f"{ui_world.url}/executors")
    online = admin.locator("#executors-table tbody tr[data-state='online']")
    expect(online.first).to_be_visible()
    names = [str(online.nth(i).get_attribute("data-executor")) for i in range(online.count())]
    try:
        for name in names:
            row = admin.locator(f"#executors-table tbody tr[data-executor='{name}']")
            row.locator(".drain-executor").click()
            expect(row).to_have_attribute("data-state", "draining")
        token = ui_world.api_token(ui_world.operator)
        run_id = _submit_api(ui_world, token, "waits for an executor", [
            {"key": "first", "engine": "shell", "command": "echo one"},
            {"key": "second", "engine": "shell", "command": "echo two", "depends_on": ["first"]},
        ])  # fmt: skip
        viewer = sign_in(ui_world.viewer)
        viewer.goto(f"{ui_world.url}/runs/{run_id}")
        first = viewer.locator("#tasks-table tbody tr[data-task='first'] .queue-reason")
        second = viewer.locator("#tasks-table tbody tr[data-task='second'] .queue-reason")
        expect(first).to_contain_text('only draining executors of pool "default" offers engine shell')
        expect(second).to_have_text("waiting for upstream task first to succeed")
        _shots(viewer, ui_world, "i16_run_why_queued")
        for name in names:
            row = admin.locator(f"#executors-table tbody tr[data-executor='{name}']")
            row.locator(".undrain-executor").click()
            expect(row).to_have_attribute("data-state", "online")
        # Live: once an executor takes the tasks, the reasons go without a reload.
        expect(viewer.locator("#run-status")).to_have_text("succeeded", timeout=90_000)
        expect(viewer.locator("#tasks-table .queue-reason")).to_have_count(0)
    finally:
        ui_world.query("select ops.set_executor_drain(id, false) from ops.executors where name = any(%s)", names)


# Deliver 6: the runs list ----------------------------------------------------------------------------


def test_runs_list_shows_times_and_tags_with_row_actions_and_bulk_cancel(ui_world: UiWorld, sign_in: SignIn) -> None:
    token = ui_world.api_token(ui_world.operator)
    slow = [{"key": "nap", "engine": "shell", "command": "sleep 600", "max_attempts": 1}]
    with _api(ui_world, token) as api:
        ids = []
        for n in range(2):
            body = {"project": "lakehouse", "environment": "dev", "tags": ["nightly", f"batch-{n}"],
                    "spec": {"name": f"bulk cancel {n}", "tasks": slow}}  # fmt: skip
            answer = api.post("/runs", json=body)
            assert answer.status_code == 201, answer.text
            ids.append(str(answer.json()["id"]))
    operator = sign_in(ui_world.operator)
    operator.goto(f"{ui_world.url}/runs")
    rows = [operator.locator(f"#runs-table tbody tr[data-run-id='{run_id}']") for run_id in ids]
    for n, row in enumerate(rows):
        expect(row.locator(".run-tag")).to_have_text(["nightly", f"batch-{n}"])
        expect(row).to_have_attribute("data-status", "running", timeout=60_000)
    head = operator.locator("#runs-table thead th").all_inner_texts()
    assert "Started" in head and "Ended" in head, head
    _shots(operator, ui_world, "i16_runs_list")
    operator.fill("#runs-search", "bulk cancel")  # just these two: runs created meanwhile cannot move them mid-click
    expect(operator.locator("#runs-table tbody tr")).to_have_count(2)
    for row in rows:
        row.locator(".row-select").click()
    expect(operator.locator("#runs-selected")).to_have_text("2 selected")
    operator.click("#cancel-selected")
    for row in rows:
        expect(row).to_have_attribute("data-status", "cancelled", timeout=60_000)
    assert re.search(r"/runs/?(\?q=[^/]*)?$", operator.url), "the row's own actions never open the run"
    rows[0].locator(".row-rerun").click()
    operator.wait_for_url(RUN_PAGE)
    expect(operator.locator("#rerun-of")).to_contain_text(ids[0][:8])
    operator.click("#cancel-run")
    expect(operator.locator("#cancel-confirm")).to_be_visible()
    _shots(operator, ui_world, "i16_cancel_run_dialog")
    operator.click("#cancel-confirm")
    expect(operator.locator("#run-status")).to_have_text("cancelled", timeout=60_000)


# Deliver 4: time ---------------------------------------------------------------------------------------


def test_times_show_in_the_browsers_zone_with_utc_on_hover_and_utc_can_be_pinned(
    ui_world: UiWorld, browser: Browser
) -> None:
    run_id = _demo_run(ui_world)
    ((created,),) = ui_world.query("select created_at from ops.runs where id = %s", run_id)
    assert isinstance(created, datetime)
    context = browser.new_context(viewport={"width": 1440, "height": 900}, timezone_id="Asia/Tokyo")
    try:
        page = context.new_page()
        page.set_default_timeout(UI_TIMEOUT_MS)
        sign_in_by_form(page, ui_world, ui_world.viewer)
        page.goto(f"{ui_world.url}/runs/{run_id}")
        utc_text = created.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        tokyo_text = (created.astimezone(UTC) + timedelta(hours=9)).strftime("%Y-%m-%d %H:%M:%S")
        expect(page.locator("#run-created")).to_have_text(tokyo_text)
        expect(page.locator("#run-created")).to_have_attribute("title", f"{utc_text} UTC")
        # Oldest first among the demo runs: the shared world holds more than one page of runs by now.
        page.goto(f"{ui_world.url}/runs?status=succeeded&q=demo+pipeline&dir=asc")
        row = page.locator(f"#runs-table tbody tr[data-run-id='{run_id}'] .run-created")
        expect(row).to_have_text(re.compile(r"ago$"))
        page.goto(f"{ui_world.url}/preferences")
        page.click("#pref-pin-utc")
        expect(page.locator("#pref-pin-utc")).to_be_checked()
        page.wait_for_function("() => (localStorage.getItem('lh_time_display') || '').includes('utc')")
        page.goto(f"{ui_world.url}/runs/{run_id}")
        expect(page.locator("#run-created")).to_have_text(f"{utc_text} UTC")
        screenshot(page, ui_world, "i16_run_detail_pinned_utc")
    finally:
        context.close()


# Deliver 3: shareable views --------------------------------------------------------------------------


def test_the_runs_list_and_run_tab_live_in_the_address(ui_world: UiWorld, sign_in: SignIn) -> None:
    run_id = _demo_run(ui_world)
    viewer = sign_in(ui_world.viewer)
    viewer.goto(f"{ui_world.url}/runs")
    viewer.click("#status-filter-succeeded")
    viewer.fill("#runs-search", "demo pipeline")
    viewer.click("#runs-direction")
    expect(viewer).to_have_url(re.compile(r"status=succeeded.*q=demo\+pipeline.*dir=asc"))
    shared = viewer.url
    other = sign_in(ui_world.operator)  # someone else opens the copied link
    other.goto(shared)
    expect(other.locator("#runs-search")).to_have_value("demo pipeline")
    expect(other.locator("#status-filter-succeeded")).to_have_class(re.compile(r"rt-variant-solid"))
    expect(other.locator(f"#runs-table tbody tr[data-run-id='{run_id}']")).to_be_visible()
    statuses = other.locator("#runs-table tbody tr").evaluate_all("rows => rows.map(r => r.dataset.status)")
    assert set(statuses) == {"succeeded"}, statuses

    # "/" focuses the search; j and Enter open the first row.
    other.locator("body").click(position={"x": 5, "y": 5})
    other.keyboard.press("/")
    expect(other.locator("#runs-search")).to_be_focused()
    other.locator("#page-title").click()
    other.keyboard.press("j")
    expect(other.locator("#runs-table tbody tr.row-focused")).to_have_count(1)
    other.keyboard.press("Enter")
    other.wait_for_url(RUN_PAGE)

    viewer.goto(f"{ui_world.url}/runs/{run_id}")
    viewer.click("#tab-artifacts")
    expect(viewer).to_have_url(re.compile(r"\?tab=artifacts$"))
    viewer.reload()
    expect(viewer.locator("#tab-artifacts")).to_have_attribute("data-state", "active")
    expect(viewer).to_have_title(re.compile(r"^demo pipeline.* · Run · "))


def test_the_event_logs_level_search_and_task_live_in_the_address(ui_world: UiWorld, sign_in: SignIn) -> None:
    token = ui_world.api_token(ui_world.operator)
    run_id = _submit_api(ui_world, token, "address my log", [
        {"key": "loud", "engine": "shell", "max_attempts": 1,
         "command": "echo 'needle calm'; echo 'needle burning' >&2; echo 'hay burning' >&2"},
        {"key": "quiet", "engine": "shell", "depends_on": ["loud"], "max_attempts": 1,
         "command": "echo 'needle other' >&2"},
    ])  # fmt: skip
    assert _finished(ui_world, run_id) == "succeeded"
    viewer = sign_in(ui_world.viewer)
    viewer.goto(f"{ui_world.url}/runs/{run_id}?tab=timeline")
    log = viewer.locator("#event-log")
    expect(log).to_contain_text("needle calm")

    viewer.click("#event-level")
    viewer.get_by_role("option", name="Warnings and up").click()
    expect(viewer).to_have_url(re.compile(r"[?&]level=warning"))
    viewer.fill("#event-search", "needle")
    expect(viewer).to_have_url(re.compile(r"[?&]q=needle"))
    viewer.click("#event-task")
    viewer.get_by_role("option", name="loud").click()
    expect(viewer).to_have_url(re.compile(rf"/runs/{run_id}\?tab=timeline&level=warning&q=needle&log_task=loud$"))
    expect(log).to_contain_text("needle burning")
    for hidden in ("needle calm", "hay burning", "needle other"):
        expect(log).not_to_contain_text(hidden)

    # The copied link opens the same view for someone else; a reload and Back from another page keep it.
    shared = viewer.url
    other = sign_in(ui_world.operator)
    other.goto(shared)
    expect(other.locator("#event-search")).to_have_value("needle")
    expect(other.locator("#event-level")).to_contain_text("Warnings and up")
    expect(other.locator("#event-task")).to_contain_text("loud")
    expect(other.locator("#event-log")).to_contain_text("needle burning")
    expect(other.locator("#event-log")).not_to_contain_text("needle other")
    expect(other.locator("#run-gantt .main-svg").first).to_be_visible()
    screenshot(other, ui_world, "i16_event_log_in_the_address")
    other.goto(f"{ui_world.url}/runs")
    other.go_back()
    expect(other).to_have_url(shared)
    expect(other.locator("#event-search")).to_have_value("needle")
    expect(other.locator("#event-log")).to_contain_text("needle burning")
    expect(other.locator("#event-log")).not_to_contain_text("needle calm")


def test_a_later_page_of_the_runs_list_lives_in_the_address(ui_world: UiWorld, sign_in: SignIn) -> None:
    # 55 finished runs of last month under one name, inserted as history: 50 on the first page, 5 on the next.
    tag = f"paged-{uuid.uuid4().hex[:6]}"
    ui_world.query(
        "insert into ops.runs (org_id, project_id, environment_id, name, spec, engines, task_count, status, "
        "trigger, created_at, started_at, finished_at) "
        "select p.org_id, p.id, e.id, %s || ' #' || n, %s::jsonb, array['shell'], 1, 'succeeded', 'manual', "
        "now() - interval '40 days' + n * interval '1 minute', now() - interval '40 days' + n * interval '1 minute', "
        "now() - interval '40 days' + n * interval '1 minute' + interval '5 seconds' "
        "from ops.projects p join ops.environments e on e.project_id = p.id and e.name = 'dev', "
        "generate_series(1, 55) n where p.slug = 'lakehouse' returning id",
        tag, '{"tasks": [{"key": "a", "engine": "shell", "command": "true"}]}',
    )  # fmt: skip
    viewer = sign_in(ui_world.viewer)
    viewer.goto(f"{ui_world.url}/runs?q={tag}")
    rows = viewer.locator("#runs-table tbody tr")
    expect(rows).to_have_count(50)
    expect(viewer.locator("#runs-table tbody")).to_contain_text(f"{tag} #55")  # newest first
    viewer.click("#runs-older")
    expect(rows).to_have_count(5)
    expect(viewer).to_have_url(re.compile(rf"\?q={tag}&page=2&after=[\w-]+$"))
    expect(viewer.locator("#runs-page")).to_contain_text("page 2")

    # The copied address opens the same page for someone else, and a reload keeps it.
    shared = viewer.url
    other = sign_in(ui_world.operator)
    other.goto(shared)
    expect(other.locator("#runs-table tbody tr")).to_have_count(5)
    expect(other.locator("#runs-table tbody")).to_contain_text(f"{tag} #1")
    expect(other.locator("#runs-page")).to_contain_text("page 2")
    other.reload()
    expect(other.locator("#runs-table tbody tr")).to_have_count(5)
    # Newer: back to the first page, and the address drops the page.
    other.click("#runs-newer")
    expect(other.locator("#runs-table tbody tr")).to_have_count(50)
    expect(other).to_have_url(re.compile(rf"/runs\?q={tag}$"))

    # A cursor that is not one is refused with a message, not a crash.
    other.goto(f"{ui_world.url}/runs?q={tag}&page=2&after=bogus")
    expect(other.locator("#runs-error")).to_contain_text("cursor")


# From the document's start: the run id of the table's first row each time it changes (what the browser drew).
FIRST_ROWS_SEEN = """(() => {
    window.__firstRows = [];
    const seen = () => {
        const id = document.querySelector('#runs-table tbody tr')?.dataset.runId;
        if (id && window.__firstRows[window.__firstRows.length - 1] !== id) { window.__firstRows.push(id); }
    };
    new MutationObserver(seen).observe(document, {subtree: true, childList: true, attributes: true});
})()"""


def test_reopening_the_runs_list_never_draws_the_last_visits_rows(ui_world: UiWorld, sign_in: SignIn) -> None:
    # The server keeps a tab's states across page loads: the list of the last visit (here its second page) must
    # not be sent with the new page's state and drawn before the list is read again.
    tag = f"reopen-{uuid.uuid4().hex[:6]}"
    ui_world.query(
        "insert into ops.runs (org_id, project_id, environment_id, name, spec, engines, task_count, status, "
        "trigger, created_at, started_at, finished_at) "
        "select p.org_id, p.id, e.id, %s || ' #' || n, %s::jsonb, array['shell'], 1, 'succeeded', 'manual', "
        "now() - interval '41 days' + n * interval '1 minute', now() - interval '41 days' + n * interval '1 minute', "
        "now() - interval '41 days' + n * interval '1 minute' + interval '5 seconds' "
        "from ops.projects p join ops.environments e on e.project_id = p.id and e.name = 'dev', "
        "generate_series(1, 55) n where p.slug = 'lakehouse' returning id",
        tag, '{"tasks": [{"key": "a", "engine": "shell", "command": "true"}]}',
    )  # fmt: skip
    viewer = sign_in(ui_world.viewer)
    viewer.goto(f"{ui_world.url}/runs?q={tag}")
    rows = viewer.locator("#runs-table tbody tr")
    expect(rows).to_have_count(50)
    first_page = rows.first.get_attribute("data-run-id")
    viewer.click("#runs-older")
    expect(rows).to_have_count(5)
    second_page = set(rows.evaluate_all("rows => rows.map(r => r.dataset.runId)"))

    viewer.context.add_init_script(script=FIRST_ROWS_SEEN)
    viewer.goto(f"{ui_world.url}/runs?q={tag}")
    expect(rows).to_have_count(50)
    expect(viewer.locator("#runs-page")).to_contain_text("page 1")
    drawn = viewer.evaluate("window.__firstRows")
    assert drawn == [first_page], (drawn, second_page)
    # The pager works from there as from any first page.
    viewer.click("#runs-older")
    expect(rows).to_have_count(5)
    assert set(rows.evaluate_all("rows => rows.map(r => r.dataset.runId)")) == second_page
