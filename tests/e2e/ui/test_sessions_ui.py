"""Hardened web sessions in real Chromium: the session cookie is HttpOnly and SameSite=Lax, the token is in
no page HTML, script, response or websocket frame, page scripts cannot read it; after signing out,
nothing of the previous session's runs reaches the next page: no DOM mutation, response or websocket
frame of the pages that follow carries any run id (recorded from inside the page on every DOM change,
so the instant before the redirect to the sign-in page is covered too)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Response, WebSocket, expect

from tests.e2e.ui.conftest import UI_TIMEOUT_MS, UiWorld, session_token, sign_in_by_form

pytestmark = pytest.mark.e2e

# Installed in every document of the context: checks the whole DOM (text and attributes) for any of the
# markers at load and on every mutation, and keeps the hits in sessionStorage, which outlives navigations.
WATCH_DOM = """(markers) => {
    const check = (when) => {
        const html = document.documentElement ? document.documentElement.outerHTML : '';
        const phase = sessionStorage.getItem('__phase') || 'before';
        // Between the click and the server's handling of the sign-out the signed-in page is still the
        // signed-in page (its live table may re-render): "after" starts once its shell is gone.
        if (phase === 'after' && document.querySelector('#sign-out')) return;
        const key = '__seen_' + phase;
        const seen = JSON.parse(sessionStorage.getItem(key) || '{"checks": 0, "hits": []}');
        seen.checks += 1;
        for (const marker of markers) {
            if (html.includes(marker)) seen.hits.push({marker, path: location.pathname, when});
        }
        sessionStorage.setItem(key, JSON.stringify(seen));
    };
    check('start');
    document.addEventListener('DOMContentLoaded', () => check('loaded'));
    new MutationObserver(() => check('mutation')).observe(document, {
        subtree: true, childList: true, characterData: true, attributes: true,
    });
}"""


@dataclass
class Recorder:
    """What the browser received: response bodies and websocket frames, split at the sign-out click."""

    after_sign_out: bool = False
    responses: list[tuple[bool, str, str]] = field(default_factory=list)  # (after, url, body)
    frames: list[tuple[bool, str]] = field(default_factory=list)  # (from a socket opened after, payload)

    def attach(self, page: Page) -> None:
        page.on("response", self._response)
        page.on("websocket", self._websocket)

    def _response(self, response: Response) -> None:
        try:
            body = response.text() if response.status < 300 else ""
        except Exception:  # bodies of redirects and aborted requests are not available
            body = ""
        self.responses.append((self.after_sign_out, response.url, body))

    def _websocket(self, socket: WebSocket) -> None:
        opened_after = self.after_sign_out

        def received(payload: str | bytes) -> None:
            self.frames.append((opened_after, payload if isinstance(payload, str) else payload.decode("latin-1")))

        socket.on("framereceived", received)


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    context.set_default_timeout(UI_TIMEOUT_MS)
    yield context
    context.close()


def test_the_session_cookie_is_http_only_and_the_token_reaches_no_page(
    ui_world: UiWorld, context: BrowserContext
) -> None:
    page = context.new_page()
    recorder = Recorder()
    recorder.attach(page)
    sign_in_by_form(page, ui_world, ui_world.operator)
    expect(page.locator("#runs-table")).to_be_visible()
    page.goto(f"{ui_world.url}/executors")
    expect(page.locator("#executors-table")).to_be_visible()

    (cookie,) = [c for c in context.cookies() if c["name"] == "lh_session"]
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Lax" and cookie["path"] == "/"
    assert cookie["secure"] is False, "Secure only under LAKEHOUSE_ENV=production (this server is development)"
    token = session_token(page)
    assert token.startswith("lhs_") and len(token) > 30
    secret_parts = {token, cookie["value"], token.removeprefix("lhs_")}

    assert "lh_session" not in page.evaluate("document.cookie"), "page scripts can read the session cookie"
    html = page.content()
    scripts = page.evaluate("Array.from(document.scripts).map(s => s.src || s.textContent).join('\\n')")
    assert not any(part in html or part in scripts for part in secret_parts), "the token is in the page"
    bodies = [(url, body) for _, url, body in recorder.responses if body]
    assert any(re.search(r"/runs/?$", url) for url, _ in bodies) and len(bodies) > 5, "responses were recorded"
    leaked = [url for url, body in bodies if any(part in body for part in secret_parts)]
    assert leaked == [], f"responses carrying the session token: {leaked}"
    assert len(recorder.frames) > 3 and any('"delta"' in f or "delta" in f for _, f in recorder.frames)
    assert not [f for _, f in recorder.frames if any(part in f for part in secret_parts)], "a websocket frame"

    # The cookie opens what a signed-in browser reads (artifact downloads), never a write.
    assert page.request.get(f"{ui_world.url}/api/v1/runs?project=lakehouse").status == 200
    refused = page.request.post(f"{ui_world.url}/api/v1/runs/00000000-0000-0000-0000-000000000000/cancel")
    assert refused.status == 401, refused.text()


def test_after_sign_out_no_run_data_reaches_the_next_page(ui_world: UiWorld, context: BrowserContext) -> None:
    run_ids = [str(row[0]) for row in ui_world.query("select id from ops.runs order by created_at desc limit 200")]
    assert run_ids, "the demo data has runs"
    context.add_init_script(f"({WATCH_DOM})({json.dumps(run_ids)})")
    page = context.new_page()
    recorder = Recorder()
    recorder.attach(page)
    sign_in_by_form(page, ui_world, ui_world.admin)
    expect(page.locator("#runs-table [data-run-id]").first).to_be_visible()
    before = json.loads(page.evaluate("sessionStorage.getItem('__seen_before')"))
    assert before["hits"], "the watcher sees run ids in the DOM while signed in (it would see a leak)"
    assert any(any(run_id in payload for run_id in run_ids) for _, payload in recorder.frames)
    page.screenshot(path=str(ui_world.shots / "sessions_signed_in_runs.png"), full_page=True)

    page.evaluate("sessionStorage.setItem('__phase', 'after')")
    recorder.after_sign_out = True
    page.click("#sign-out")
    page.wait_for_url(re.compile(r".*/login/?$"))
    expect(page.locator("#login-submit")).to_be_visible()
    page.screenshot(path=str(ui_world.shots / "sessions_signed_out.png"), full_page=True)
    assert not [c for c in context.cookies() if c["name"] == "lh_session"], "sign-out clears the cookie"

    # The same tab opens /runs again: the page loads, hydrates and is sent to sign in.
    page.goto(f"{ui_world.url}/runs")
    page.wait_for_url(re.compile(r".*/login/?\?next=%2Fruns"))
    expect(page.locator("#login-submit")).to_be_visible()
    page.screenshot(path=str(ui_world.shots / "sessions_runs_after_sign_out.png"), full_page=True)

    after = json.loads(page.evaluate("sessionStorage.getItem('__seen_after')"))
    assert after["checks"] > 10, "the watcher ran on the pages after signing out"
    assert after["hits"] == [], f"run data in the DOM after signing out: {after['hits'][:5]}"
    later_frames = [payload for opened_after, payload in recorder.frames if opened_after]
    assert later_frames, "the pages after signing out talked over their own websocket"
    assert not [p for p in later_frames if any(run_id in p for run_id in run_ids)], "run data in a frame"
    later_bodies = [(url, body) for after_click, url, body in recorder.responses if after_click and body]
    assert any("/login" in url for url, _ in later_bodies)
    assert not [url for url, body in later_bodies if any(run_id in body for run_id in run_ids)]
