"""Event retention on the run page (issue 25 deliver 5), in real Chromium against the real `lakehouse run`: a run
that finished past its project's retention is archived by `lakehouse projects archive-events` into the control
room's artifact store; its page says so and shows the archived events, marked archived, on request, with its
attempts (and timeline) rebuilt from the archive."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import LAKEHOUSE
from tests.e2e.ui.conftest import SignIn, UiWorld, screenshot
from tests.e2e.ui.test_runs_issue16 import _finished, _submit_api, _wait_for

pytestmark = pytest.mark.e2e


def _archive_events(world: UiWorld) -> str:
    """One retention pass as an operator would start it, on the control room's database and artifact store."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("LAKEHOUSE_")}
    env.update({"LAKEHOUSE_DATABASE_URL": world.database_url, "LAKEHOUSE_DATA_DIR": str(world.data_dir)})
    done = subprocess.run([str(LAKEHOUSE), "projects", "archive-events"], env=env, capture_output=True, text=True,
                          timeout=180, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_an_archived_runs_page_shows_its_archived_events(ui_world: UiWorld, sign_in: SignIn) -> None:
    token = ui_world.api_token(ui_world.operator)
    lines = "; ".join(f"echo 'loaded partition {n} of 6'" for n in range(1, 7))
    run_id = _submit_api(ui_world, token, "nightly load (archived)", [
        {"key": "extract", "engine": "shell", "max_attempts": 1, "command": "echo 'extracted 1200 rows'"},
        {"key": "load", "engine": "shell", "max_attempts": 1, "depends_on": ["extract"],
         "command": f"{lines}; echo 'watermark behind by 2 h' >&2"},
    ])  # fmt: skip
    assert _finished(ui_world, run_id) == "succeeded"
    live = ui_world.query("select count(*) from ops.events where run_id = %s", run_id)[0][0]
    assert isinstance(live, int) and live >= 8
    # Ran 40 days ago: past the demo project's 30 days (created_at is immutable and stays today).
    ui_world.query("update ops.runs set started_at = started_at - interval '40 days', "
                   "finished_at = finished_at - interval '40 days' where id = %s returning id", run_id)  # fmt: skip
    _archive_events(ui_world)  # the control room's own loop may take it first: either way, one archive
    _wait_for(lambda: ui_world.query("select status from ops.event_archives where run_id = %s", run_id)
              == [("done",)], "the run's archive to be done")  # fmt: skip
    assert ui_world.query("select count(*) from ops.events where run_id = %s", run_id) == [(0,)]
    key, sha = ui_world.query("select events_key, events_sha256 from ops.event_archives where run_id = %s", run_id)[0]
    assert Path(ui_world.data_dir / "artifacts" / str(key)).is_file() and len(str(sha)) == 64

    viewer = sign_in(ui_world.viewer)
    viewer.goto(f"{ui_world.url}/runs/{run_id}?tab=timeline")
    notice = viewer.locator("#archive-notice")
    expect(notice).to_contain_text(f"{live} events and 2 attempts of this run were archived to Parquet")
    expect(notice).to_contain_text("project retention: 30 days")
    expect(viewer.locator("#event-log")).to_contain_text("No events left in the database")
    viewer.click("#events-archived-load")
    archived = viewer.locator(".event-row.archived")
    expect(archived).to_have_count(live)
    logs = archived.filter(has=viewer.locator('.event-task[title="log"]'))  # the lines the commands printed
    expect(logs.filter(has_text="loaded partition 6 of 6")).to_have_count(1)
    expect(logs.filter(has_text="watermark behind by 2 h").locator(".level-badge")).to_have_text("warning")
    expect(archived.first.locator(".archived-badge")).to_have_text("archived")
    expect(viewer.locator("#archived-count")).to_have_text(f"{live} archived events shown")
    screenshot(viewer, ui_world, "retention_run_archived_events")
    # The attempts table is rebuilt from the archived attempts.
    viewer.click("#tab-overview")
    expect(viewer.locator(".attempt-row")).to_have_count(2)
    screenshot(viewer, ui_world, "retention_run_archived_attempts")
