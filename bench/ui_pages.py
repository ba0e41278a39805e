"""Time UI pages in real Chromium against a large history (seed it first with bench/seed_history.py).

Starts the real `lakehouse run` on the bench database, signs in, and measures in the page itself
(performance.now(), i.e. from navigation start, or from the click for in-page changes) until the
table is rendered:

* runs page, first page (a full page load: HTML, scripts, websocket, session check, query);
* runs page, next page (keyset pagination: click "Older" until the rows changed);
* runs page, a filter change (click a status until every row has it);
* run detail of the run with 100,000 events, opened on its timeline (latest events first), and
  opened on its overview (header, DAG, tasks).

Prints median, p90 and max per measurement with the target. Never asserts: figures only.

    .venv/bin/python bench/ui_pages.py [--database-url URL] [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.seed_history import BENCH_ADMIN, BENCH_PASSWORD, BIG_RUN_NAME, DEMO_PROJECT, database  # noqa: E402

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
TARGETS_MS = {
    "runs: first page (page load)": 1000,
    "runs: first page (new browser tab)": 1000,
    "runs: next page": 300,
    "runs: filter change": 500,
    "run detail, 100k events: timeline (page load)": 1000,
    "run detail, 100k events: overview (page load)": 1000,
}
LAKEHOUSE = Path(sys.executable).with_name("lakehouse")

# Resolves (with the time since navigation start) once the condition holds; polled every frame.
WAIT_JS = """(condition) => new Promise((resolve) => {
    const check = () => {
        if (eval(condition)) { resolve(performance.now()); } else { requestAnimationFrame(check); }
    };
    check();
})"""
# Clicks, then resolves with the milliseconds until the condition holds.
CLICK_JS = """([selector, condition]) => new Promise((resolve) => {
    window.__before = document.querySelector('#runs-table tbody tr')?.dataset.runId;
    const t0 = performance.now();
    document.querySelector(selector).click();
    const check = () => {
        if (eval(condition)) { resolve(performance.now() - t0); } else { requestAnimationFrame(check); }
    };
    check();
})"""
ROWS = "document.querySelectorAll('#runs-table tbody tr')"
PAGE_CHANGED = f"{ROWS}.length === 50 && {ROWS}[0].dataset.runId !== window.__before"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_control_room(url: str, data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("LAKEHOUSE_")}
    env.update(
        {
            "LAKEHOUSE_DATABASE_URL": url,
            "LAKEHOUSE_PORT": str(port),
            "LAKEHOUSE_DATA_DIR": str(data_dir),
            "LAKEHOUSE_LOAD_DEMO_DATA": "false",
        }
    )
    log = (data_dir / "lakehouse-run.log").open("wb")  # kept for a failed start: see the message below
    process = subprocess.Popen(
        [str(LAKEHOUSE), "run"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = (data_dir / "lakehouse-run.log").read_text(errors="replace")
            raise SystemExit(f"`lakehouse run` exited with {process.returncode}:\n{output[-3000:]}")
        try:
            if httpx.get(f"{base}/api/v1/health", timeout=2).status_code == 200:
                return process, base
        except httpx.HTTPError:
            pass
        time.sleep(0.5)  # waiting for a server that is building its frontend
    raise SystemExit("`lakehouse run` did not become healthy within 10 minutes")


def _stop_control_room(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


def _summary(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    target = TARGETS_MS[name]
    verdict = "meets" if statistics.median(ordered) < target else "OVER"
    return (
        f"{name:<48} median {statistics.median(ordered):7.0f} ms   p90 {p90:7.0f} ms   max {ordered[-1]:7.0f} ms"
        f"   target < {target} ms: {verdict}   (n={len(ordered)})"
    )


def measure(base: str, big_run: str, repeat: int) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright

    results: dict[str, list[float]] = {name: [] for name in TARGETS_MS}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1440, "height": 900})
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto(f"{base}/login")
        page.fill("#login-email", BENCH_ADMIN)
        page.fill("#login-password", BENCH_PASSWORD)
        page.click("#login-submit")
        page.wait_for_url(re.compile(r".*/runs/?$"))
        page.wait_for_function(f"{ROWS}.length === 50")

        def page_load(path: str, condition: str) -> float:
            page.goto("about:blank")  # leave the app, so the next goto is a full load of its own
            page.goto(f"{base}{path}")
            return float(page.evaluate(WAIT_JS, condition))

        def new_tab_load() -> float:
            # A new context has its own Reflex client token: the server builds its state from nothing
            # (session check, memberships) as for someone opening the app; only the cookie is shared.
            fresh = browser.new_context(viewport={"width": 1440, "height": 900})
            fresh.add_cookies(context.cookies())
            tab = fresh.new_page()
            tab.set_default_timeout(60_000)
            tab.goto(f"{base}/runs")
            elapsed = float(tab.evaluate(WAIT_JS, f"{ROWS}.length === 50"))
            fresh.close()
            return elapsed

        for _ in range(repeat):
            results["runs: first page (new browser tab)"].append(new_tab_load())
            results["runs: first page (page load)"].append(page_load("/runs", f"{ROWS}.length === 50"))
            for _ in range(3):
                results["runs: next page"].append(float(page.evaluate(CLICK_JS, ["#runs-older", PAGE_CHANGED])))
            results["runs: filter change"].append(
                float(
                    page.evaluate(
                        CLICK_JS,
                        [
                            "#status-filter-failed",
                            f"{ROWS}.length === 50 && [...{ROWS}].every(r => r.dataset.status === 'failed')",
                        ],
                    )
                )
            )
            page.click("#status-filter-all")
            page.wait_for_function(f"[...{ROWS}].some(r => r.dataset.status !== 'failed')")
            results["run detail, 100k events: timeline (page load)"].append(
                page_load(
                    f"/runs/{big_run}?tab=timeline",
                    "document.querySelectorAll('#event-log [data-event-id]').length >= 200",
                )
            )
            results["run detail, 100k events: overview (page load)"].append(
                page_load(f"/runs/{big_run}", "document.querySelectorAll('#tasks-table tbody tr').length === 3")
            )
        browser.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("LAKEHOUSE_BENCH_DATABASE_URL"))
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    url, server = database(args.database_url)
    stop: Callable[[], None] = (lambda: server.stop()) if server is not None else (lambda: None)  # type: ignore[attr-defined]
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            counts = conn.execute(
                "select (select count(*) from ops.runs), (select count(*) from ops.events)"
            ).fetchone()
            big = conn.execute(
                "select r.id, (select count(*) from ops.events e where e.run_id = r.id) from ops.runs r "
                "where r.project_id = %s and r.name = %s",
                (DEMO_PROJECT, BIG_RUN_NAME),
            ).fetchone()
        if big is None or counts is None:
            raise SystemExit("no seeded history: run bench/seed_history.py first")
        print(f"ui_pages: {counts[0]:,} runs, {counts[1]:,} events; big run {big[0]} has {big[1]:,} events")
        with tempfile.TemporaryDirectory(prefix="lh-bench-ui-") as tmp:
            process, base = _start_control_room(url, Path(tmp))
            try:
                results = measure(base, str(big[0]), args.repeat)
            finally:
                _stop_control_room(process)
        for name, samples in results.items():
            print(_summary(name, samples))
    finally:
        stop()


if __name__ == "__main__":
    main()
