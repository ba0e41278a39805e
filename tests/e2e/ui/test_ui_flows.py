"""The Control Room UI in real Chromium against the real `lakehouse run` and a real executor agent.

Acceptance flows: sign in; drain the executors and see a submitted run stay queued; undrain and
watch it go queued -> running -> succeeded without reloading; events arriving live in the timeline;
artifact preview, verify and download; an operator cancels a long run; a viewer sees no cancel
button and a forged cancel is refused. Screenshots of every page go to test-results/screenshots/.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, WebSocketRoute, expect

from tests.e2e.ui.conftest import SignIn, UiWorld, screenshot, session_token

pytestmark = pytest.mark.e2e

RUN_PAGE = re.compile(r".*/runs/(?P<id>[0-9a-f-]{36})")
# What a page sends after a navigation inside it: the server then runs the new page's load events.
LOAD_EVENT = re.compile(r"on_load_internal_state\.on_load_internal\b")
# Records every text #run-status shows, in the page itself, so no transition between polls is missed.
WATCH_STATUS = """() => {
    window.__statusSeen = [];
    window.__noReload = 'still the same page';
    const record = () => {
        const el = document.querySelector('#run-status');
        const text = el ? el.textContent.trim().toLowerCase() : null;
        if (text && window.__statusSeen[window.__statusSeen.length - 1] !== text) window.__statusSeen.push(text);
    };
    record();
    new MutationObserver(record).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


def _shot(page: Page, world: UiWorld, name: str) -> None:
    page.wait_for_timeout(400)  # let charts finish their transition before the picture
    screenshot(page, world, name)


def _submit(page: Page, world: UiWorld, example: str) -> str:
    """Submit an example run from the runs page's dialog; returns the new run's id."""
    page.goto(f"{world.url}/runs")
    page.click("#submit-run")
    page.click("#submit-example")
    page.get_by_role("option", name=re.compile(example)).click()
    page.click("#submit-confirm")
    page.wait_for_url(RUN_PAGE)
    found = RUN_PAGE.match(page.url)
    assert found
    return found["id"]


def _run_status(world: UiWorld, run_id: str) -> str:
    return str(world.query("select status from ops.runs where id = %s", run_id)[0][0])


def _wait_for(predicate: object, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.2)  # polling the database for an outcome produced by other processes
    pytest.fail(f"timed out waiting for {what}")


def test_sign_in_pages_and_theme(ui_world: UiWorld, sign_in: SignIn, page: Page) -> None:
    page.goto(f"{ui_world.url}/runs")
    page.wait_for_url(re.compile(r".*/login\?next=.*runs"))  # not signed in: sent to sign in first
    expect(page.locator("#login-submit")).to_be_visible()
    _shot(page, ui_world, "login")
    page.fill("#login-email", ui_world.admin.email)
    page.fill("#login-password", "not-the-password")
    page.click("#login-submit")
    expect(page.locator("#login-error")).to_contain_text("email or password is wrong")

    admin = sign_in(ui_world.admin)
    demo = admin.locator("#runs-table tbody tr", has_text="demo pipeline")
    expect(demo.first).to_be_visible()
    expect(demo.first.locator(".status-badge")).to_have_text("succeeded", timeout=90_000)
    _shot(admin, ui_world, "runs")

    admin.click("#nav-overview")
    expect(admin.locator("#health-database")).to_have_text("database ok")
    _shot(admin, ui_world, "overview")

    admin.click("#nav-executors")
    expect(admin.locator(f"#executors-table tbody tr[data-executor='{ui_world.agent}']")).to_have_attribute(
        "data-state", "online"
    )
    _shot(admin, ui_world, "executors")

    admin.goto(f"{ui_world.url}/runs")
    admin.click("#theme-toggle")
    expect(admin.locator("html")).to_have_class(re.compile(r"\bdark\b"))
    _shot(admin, ui_world, "runs_dark")
    admin.click("#theme-toggle")
    expect(admin.locator("html")).not_to_have_class(re.compile(r"\bdark\b"))

    # Signing out ends the session in the database: the cookie no longer opens any page.
    session = session_token(admin)
    admin.click("#sign-out")
    admin.wait_for_url(re.compile(r".*/login"))
    revoked = ui_world.query(
        "select revoked_at is not null from ops.user_sessions where token_hash = encode(sha256(%s::bytea), 'hex')",
        session,
    )
    assert revoked == [(True,)]
    admin.goto(f"{ui_world.url}/executors")
    admin.wait_for_url(re.compile(r".*/login\?next=.*executors"))


def test_drained_executors_get_nothing_then_the_run_goes_live(ui_world: UiWorld, sign_in: SignIn) -> None:
    try:
        _drain_submit_and_undrain(ui_world, sign_in)
    except BaseException:
        # The module's later tests need the executors: a failure here must not leave them drained.
        ui_world.execute("update ops.executors set drain_requested = false where drain_requested")
        raise


def _drain_submit_and_undrain(ui_world: UiWorld, sign_in: SignIn) -> None:
    admin = sign_in(ui_world.admin)
    admin.goto(f"{ui_world.url}/executors")
    online = admin.locator("#executors-table tbody tr[data-state='online']")
    expect(online.first).to_be_visible()
    names = [str(online.nth(i).get_attribute("data-executor")) for i in range(online.count())]
    for name in names:
        row = admin.locator(f"#executors-table tbody tr[data-executor='{name}']")
        row.locator(".drain-executor").click()
        expect(row).to_have_attribute("data-state", "draining")

    operator = sign_in(ui_world.operator)
    expect(operator.locator("#signed-in-role")).to_have_text("operator")
    run_id = _submit(operator, ui_world, "Demo pipeline")
    expect(operator.locator("#run-status")).to_have_text("queued")
    operator.evaluate(WATCH_STATUS)
    # Drained executors claim nothing: the run waits, and no attempt exists. (Absence cannot be
    # polled for; three seconds is many claim long-poll wake-ups of an agent that would take it.)
    operator.wait_for_timeout(3000)
    assert _run_status(ui_world, run_id) == "queued"
    assert ui_world.query("select count(*) from ops.task_attempts where run_id = %s", run_id)[0][0] == 0
    expect(operator.locator("#run-status")).to_have_text("queued")

    for name in names:
        row = admin.locator(f"#executors-table tbody tr[data-executor='{name}']")
        row.locator(".undrain-executor").click()
        expect(row).to_have_attribute("data-state", "online")

    expect(operator.locator("#run-status")).to_have_text("succeeded", timeout=90_000)
    seen = operator.evaluate("window.__statusSeen")
    assert seen[0] == "queued" and seen[-1] == "succeeded" and "running" in seen, seen
    assert operator.evaluate("window.__noReload") == "still the same page"
    expect(operator.locator("#tasks-table tbody tr[data-status='succeeded']")).to_have_count(3)
    expect(operator.locator("#run-progress")).to_have_text("3 of 3 tasks succeeded")
    _shot(operator, ui_world, "run_detail")
    operator.click("#tab-artifacts")
    expect(operator.locator("#run-artifacts-table tbody tr")).to_have_count(3)
    _shot(operator, ui_world, "run_artifacts")


def test_events_arrive_live_in_the_timeline(ui_world: UiWorld, sign_in: SignIn) -> None:
    operator = sign_in(ui_world.operator)
    run_id = _submit(operator, ui_world, "Chatty job")
    operator.click("#tab-timeline")
    expect(operator).to_have_url(re.compile(r".*/runs/[0-9a-f-]+"))
    rows = operator.locator("#event-log [data-event-id]")
    expect(operator.locator("#run-status")).to_have_text("running")
    expect(rows.first).to_be_visible()
    first_count = rows.count()
    _wait_for(lambda: rows.count() > first_count, "new events to appear while the job runs", timeout=20)
    # Follow mode keeps the newest event in view.
    at_end = operator.evaluate(
        "() => { const log = document.getElementById('event-log'); "
        "return log.scrollHeight - log.scrollTop - log.clientHeight < 60; }"
    )
    assert at_end
    _shot(operator, ui_world, "run_timeline")

    operator.click("#event-level")
    operator.get_by_role("option", name="Warnings and up").click()
    badges = operator.locator("#event-log .level-badge")
    expect(badges.filter(has_text=re.compile("^(debug|info)$"))).to_have_count(0)
    expect(badges.filter(has_text="warning").first).to_be_visible()  # the job warns every 50 batches
    assert set(badges.all_inner_texts()) <= {"warning", "error"}
    operator.fill("#event-search", "rejected")
    expect(operator.locator("#event-log [data-event-id]").first).to_contain_text("rejected")
    _wait_for(lambda: _run_status(ui_world, run_id) == "succeeded", "the chatty job to finish")


def _demo_run(world: UiWorld) -> str:
    rows = world.query(
        "select id from ops.runs where name like 'demo pipeline%%' and status = 'succeeded' order by created_at limit 1"
    )
    assert rows, "no succeeded demo run"
    return str(rows[0][0])


def test_a_page_whose_load_event_is_lost_still_opens(ui_world: UiWorld, sign_in: SignIn) -> None:
    """The event that runs a page's load events after a navigation, dropped on its way to the server (a
    websocket that reconnected mid-navigation; CI once saw the run page spin for 30 s after a submit): the
    shell's watchdog asks again after a few seconds, and the page opens instead of waiting for ever."""
    operator = sign_in(ui_world.operator)
    dropped: list[str] = []

    def drop_each_navigations_load(ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()

        def from_page(message: str | bytes) -> None:
            if isinstance(message, str) and LOAD_EVENT.search(message) and len(dropped) < 2:
                dropped.append(message)  # never reaches the server
                return
            server.send(message)

        ws.on_message(from_page)

    operator.route_web_socket(re.compile(r".*/_event.*"), drop_each_navigations_load)
    operator.goto(f"{ui_world.url}/runs")  # a new page load: its websocket goes through the route
    # Into the newest run from the list: a navigation inside the page, whose load the page asks the server for.
    link = operator.locator("#runs-table a.run-link").first
    run_id = str(link.get_attribute("href")).rstrip("/").rsplit("/", 1)[-1]
    ((tasks,),) = ui_world.query("select count(*) from ops.tasks where run_id = %s", run_id)
    link.click()
    expect(operator.locator("#run-opening")).to_be_visible()
    expect(operator.locator("#run-status")).to_be_visible()
    expect(operator.locator("#tasks-table tbody tr")).to_have_count(int(str(tasks)))
    assert len(dropped) == 1
    operator.click("#nav-catalog")  # another page (one that reads only when it loads), the same loss
    expect(operator.locator("#catalog-table tbody tr").first).to_be_visible()
    assert len(dropped) == 2


def _with_address(message: str, path: str, **params: str) -> str:
    """A socket.io event frame (``42/_event,["event", {...}]``) rewritten to carry another address."""
    start = message.index("[")
    frame, body = message[:start], json.loads(message[start:])
    body[1]["router_data"] = {"pathname": path, "asPath": path, "query": params}
    return frame + json.dumps(body)


def test_a_run_page_whose_load_reads_a_wrong_address_asks_the_browser_and_opens_its_run(
    ui_world: UiWorld, sign_in: SignIn
) -> None:
    """A run page's load that reads an address without the run's id (CI once showed "This is not a run id." on
    /runs/<id> right after a submit redirected there: the load read another address than the browser's). Here
    the load event reaches the server with a wrong address: the page asks the browser for its own address and
    opens the run."""
    operator = sign_in(ui_world.operator)
    rewritten: list[str] = []

    def wrong_address_on_the_first_load(ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()

        def from_page(message: str | bytes) -> None:
            if isinstance(message, str) and LOAD_EVENT.search(message) and '"/runs/' in message and not rewritten:
                message = _with_address(message, "/runs/not-this", run_id="not-this")
                rewritten.append(message)
            server.send(message)

        ws.on_message(from_page)

    operator.route_web_socket(re.compile(r".*/_event.*"), wrong_address_on_the_first_load)
    operator.goto(f"{ui_world.url}/runs")
    link = operator.locator("#runs-table a.run-link").first
    run_id = str(link.get_attribute("href")).rstrip("/").rsplit("/", 1)[-1]
    link.click()
    expect(operator.locator("#run-status")).to_be_visible()
    expect(operator.locator("#run-id")).to_contain_text(run_id)
    assert len(rewritten) == 1
    expect(operator.get_by_text("This is not a run id.")).to_have_count(0)
    operator.goto(f"{ui_world.url}/runs/not-a-run")  # a wrong address in the browser itself still says so
    expect(operator.get_by_text("This is not a run id.")).to_be_visible()


def test_a_run_that_cannot_be_read_says_why_and_opens_on_try_again(ui_world: UiWorld, sign_in: SignIn) -> None:
    """Opening a run fails for a reason a retry cannot fix by itself (here: the signed-in role lost its right to
    read the run's archive record): the page says what failed and offers Try again, instead of a spinner."""
    operator = sign_in(ui_world.operator)
    link = operator.locator("#runs-table a.run-link").first
    href = str(link.get_attribute("href"))
    ui_world.execute("revoke select on ops.event_archives from authenticated")
    try:
        operator.goto(ui_world.url + href)
        expect(operator.locator("#run-load-error")).to_contain_text("event_archives")
        expect(operator.locator("#run-load-retry")).to_be_visible()
        expect(operator.locator("#run-status")).to_have_count(0)
        _shot(operator, ui_world, "run_load_error")
    finally:
        ui_world.execute("grant select on ops.event_archives to authenticated")
    operator.click("#run-load-retry")
    expect(operator.locator("#run-status")).to_be_visible()
    expect(operator.locator("#run-load-error")).to_have_count(0)


def test_artifact_preview_verify_and_download(ui_world: UiWorld, sign_in: SignIn, tmp_path: Path) -> None:
    _wait_for(lambda: ui_world.query("select 1 from ops.runs where status = 'succeeded' and name like 'demo%%'"),
              "a succeeded demo run", timeout=120)  # fmt: skip
    run_id = _demo_run(ui_world)
    admin = sign_in(ui_world.admin)
    admin.goto(f"{ui_world.url}/artifacts?run={run_id}")
    expect(admin.locator("#artifacts-table tbody tr")).to_have_count(3)
    _shot(admin, ui_world, "artifacts")

    admin.locator("#artifacts-table tbody tr[data-artifact='summary.json']").click()
    expect(admin.locator("#preview-title")).to_have_text("summary.json")
    expect(admin.locator("#preview-json details").first).to_be_visible()
    admin.click("#verify-artifact")
    expect(admin.locator("#verify-result")).to_have_attribute("data-state", "ok")
    expect(admin.locator("#verify-result")).to_contain_text("as recorded")
    _shot(admin, ui_world, "artifact_preview_json")
    sha = admin.locator("#preview-sha").inner_text().split("sha256:")[-1].strip()
    with admin.expect_download() as download:
        admin.click("#download-artifact")
    saved = tmp_path / "summary.json"
    download.value.save_as(saved)
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == sha
    admin.keyboard.press("Escape")

    admin.locator("#artifacts-table tbody tr[data-artifact='out/orders.csv']").click()
    expect(admin.locator("#preview-table tbody tr")).to_have_count(50)
    expect(admin.locator("#preview-rows")).to_contain_text("of 200")
    admin.click("#preview-next")
    expect(admin.locator("#preview-rows")).to_contain_text("rows 51 to 100")
    _shot(admin, ui_world, "artifact_preview_csv")
    admin.keyboard.press("Escape")

    # Verify re-reads the stored bytes: a tampered file is caught.
    ((project, task, attempt),) = ui_world.query(
        "select project_id, task_id, attempt from ops.artifacts where run_id = %s and name = 'report.md'", run_id
    )
    stored = ui_world.data_dir / "artifacts" / str(project) / run_id / str(task) / str(attempt) / "report.md"
    os.chmod(stored, 0o644)
    stored.write_bytes(b"x" * stored.stat().st_size)
    admin.locator("#artifacts-table tbody tr[data-artifact='report.md']").click()
    expect(admin.locator("#preview-text")).to_contain_text("xxxx")
    admin.click("#verify-artifact")
    expect(admin.locator("#verify-result")).to_have_attribute("data-state", "mismatch")
    expect(admin.locator("#verify-result")).to_contain_text("Checksum mismatch")
    _shot(admin, ui_world, "artifact_verify_mismatch")


def test_operator_cancels_a_long_run(ui_world: UiWorld, sign_in: SignIn) -> None:
    operator = sign_in(ui_world.operator)
    run_id = _submit(operator, ui_world, "Long-running job")
    expect(operator.locator("#run-status")).to_have_text("running")
    operator.click("#cancel-run")
    operator.click("#cancel-confirm")
    expect(operator.locator("#run-status")).to_have_text("cancelled", timeout=60_000)
    _wait_for(lambda: _run_status(ui_world, run_id) == "cancelled", "the run to be cancelled")
    outcome = ui_world.query("select outcome from ops.task_attempts where run_id = %s", run_id)
    assert outcome == [("cancelled",)]
    expect(operator.locator("#retry-run")).to_be_visible()


def test_viewer_sees_no_cancel_and_a_forged_cancel_is_refused(ui_world: UiWorld, sign_in: SignIn) -> None:
    operator = sign_in(ui_world.operator)
    run_id = _submit(operator, ui_world, "Long-running job")
    expect(operator.locator("#run-status")).to_have_text("running")
    expect(operator.locator("#cancel-run")).to_be_visible()

    viewer = sign_in(ui_world.viewer)
    viewer.goto(f"{ui_world.url}/runs/{run_id}")
    expect(viewer.locator("#run-status")).to_have_text("running")
    expect(viewer.locator("#run-name")).to_have_text("long-running job")
    expect(viewer.locator("#cancel-run")).to_have_count(0)
    expect(viewer.locator("#submit-run")).to_have_count(0)
    _shot(viewer, ui_world, "run_detail_viewer")
    viewer.goto(f"{ui_world.url}/runs")
    expect(viewer.locator("#runs-table")).to_be_visible()
    expect(viewer.locator("#submit-run")).to_have_count(0)

    # The viewer's own session, used to call the same cancel the operator's button uses: refused.
    session = session_token(viewer)
    response = httpx.post(
        f"{ui_world.url}/api/v1/runs/{run_id}/cancel", headers={"Authorization": f"Bearer {session}"}, timeout=10
    )
    assert response.status_code == 403, response.text
    assert "operator role" in response.json()["detail"]
    assert _run_status(ui_world, run_id) == "running"

    operator.click("#cancel-run")
    operator.click("#cancel-confirm")
    expect(operator.locator("#run-status")).to_have_text("cancelled", timeout=60_000)
