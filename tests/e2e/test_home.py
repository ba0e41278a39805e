"""The real `lakehouse run`: home page in Chromium, and nothing it started survives Ctrl-C or SIGTERM."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import psutil
import pytest
from playwright.sync_api import Page, expect

from control_room.db.migrate import discover
from tests.agent.conftest import wait_until
from tests.e2e.conftest import RunningControlRoom, StartControlRoom, alive

pytestmark = pytest.mark.e2e

UI_TIMEOUT_MS = 30_000


def test_home_page_shows_the_product_and_schema_version_and_ctrl_c_stops_everything(
    page: Page, start_control_room: StartControlRoom, output_path: str
) -> None:
    # No LAKEHOUSE_DATABASE_URL, like a laptop's `make run`: the supervisor starts an embedded Postgres under the
    # data dir, migrates it and loads the demo data. (The browser tests in tests/e2e/ui start `lakehouse run`
    # against a server of their own.)
    control_room = start_control_room()
    assert "postgres: ready (embedded" in control_room.output()
    assert "migrations: " in control_room.output()
    admin = re.search(r"demo admin: (\S+)\s+password: (\S+)", control_room.output())
    assert admin, control_room.output()

    page.goto(control_room.url)  # nobody signed in: the sign-in page comes first
    expect(page).to_have_title("Sign in · Lakehouse Control Room", timeout=UI_TIMEOUT_MS)
    page.fill("#login-email", admin[1])
    page.fill("#login-password", admin[2])
    page.click("#login-submit")  # back to where the browser was sent from: the overview
    expect(page).to_have_title("Overview · Lakehouse Control Room", timeout=UI_TIMEOUT_MS)
    expect(page.locator("#product-name")).to_have_attribute("aria-label", "Lakehouse Control Room")
    expect(page.locator("#health-database")).to_have_text("database ok", timeout=UI_TIMEOUT_MS)
    expect(page.locator("#schema-version")).to_have_text(discover()[-1].version, timeout=UI_TIMEOUT_MS)
    screenshot = Path(output_path) / "home.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 0

    # The demo's alerts are delivered: with no SMTP server configured, its outbox keeps the e-mail (the
    # promotion of the demo's nightly ingest to staging is announced to its requester).
    assert "demo outbox: alert e-mail and Slack kept in" in control_room.output()
    assert "is being redefined" not in control_room.output()  # Reflex's second look at our pages stays quiet
    mail = control_room.data_dir / "outbox" / "mail"
    wait_until(lambda: any("[PROMOTION]" in m.read_text() for m in mail.glob("*.eml")), timeout=90,
               what="the demo's promotion e-mail in the outbox")  # fmt: skip

    _stops_everything(control_room, signal.SIGINT)


def test_sigterm_stops_web_server_and_embedded_postgres(start_control_room: StartControlRoom) -> None:
    _stops_everything(start_control_room(), signal.SIGTERM)


def _stops_everything(control_room: RunningControlRoom, sig: signal.Signals) -> None:
    """Ctrl-C (SIGINT) or SIGTERM stops the supervisor, the web server and its workers and the embedded
    Postgres, and exits 0."""
    assert "postgres: ready (embedded" in control_room.output()
    pgdata = control_room.data_dir / "pgdata"
    postmaster = psutil.Process(int((pgdata / "postmaster.pid").read_text().splitlines()[0]))
    started = [*control_room.started, postmaster, *postmaster.children(recursive=True)]
    assert len(control_room.started) >= 3  # supervisor, reflex, at least one server worker

    survivors = control_room.stop(sig)
    assert survivors == [], f"still running after {sig.name}: {survivors}\n{control_room.output()}"
    assert alive(started) == [], f"embedded postgres survived {sig.name}:\n{control_room.output()}"
    assert not (pgdata / "postmaster.pid").exists()
    assert control_room.process.returncode == 0
