"""One real control room (`lakehouse run`) with its executor agent for the UI's end-to-end tests.

Started once for this package: a fresh database migrated by the supervisor, the demo data and its
admin (password read from what `lakehouse run` prints once), the local executor agent the supervisor
starts (its name read from the same output), and an operator and a viewer created with
`lakehouse users create`.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect
from psycopg.conninfo import conninfo_to_dict

from control_room.config import PROJECT_ROOT
from control_room.services.auth import USER_TOKEN_PREFIX, hash_token, new_token
from tests.alerts.conftest import Mailbox, SmtpServer
from tests.conftest import PostgresServer
from tests.e2e.conftest import LAKEHOUSE, RunningControlRoom, alive, free_port, wait_until_healthy
from tests.superset_server import control_room_env as superset_control_room_env

UI_TIMEOUT_MS = 30_000
# Deadlines, not expectations: a cancel reaches a running task with its next heartbeat (up to 20 s).
expect.set_options(timeout=UI_TIMEOUT_MS)
DEMO_PROJECT = "lakehouse"
ADMIN_LINE = re.compile(r"demo admin: (?P<email>\S+)\s+password: (?P<password>\S+)")
AGENT_LINE = re.compile(r"executor agent: (?P<name>\S+) in pool")


@dataclass(frozen=True)
class Account:
    email: str
    password: str
    role: str


@dataclass
class UiWorld:
    """The running control room, its database, the people who sign in, and the agent."""

    url: str
    database_url: str
    data_dir: Path
    admin: Account
    operator: Account
    viewer: Account
    agent: str
    shots: Path
    smtp: SmtpServer
    log: Path  # `lakehouse run`'s output: its tail goes into the report of a failed test

    def query(self, sql: str, *args: object) -> list[tuple[object, ...]]:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            return conn.execute(sql, args).fetchall()  # type: ignore[arg-type]

    def execute(self, sql: str, *args: object) -> None:
        """A statement that returns no rows (DDL, a grant), as the database owner."""
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            conn.execute(sql, args)  # type: ignore[arg-type]

    def api_token(self, account: Account) -> str:
        """A new API token of the account (as `POST /tokens` would make), for calls outside the browser."""
        token = new_token(USER_TOKEN_PREFIX)
        self.query(
            "insert into ops.api_tokens (user_id, name, token_prefix, token_hash) "
            "select id, %s, %s, %s from ops.users where email = %s returning id",
            f"e2e-{uuid.uuid4().hex[:6]}", token[:8], hash_token(token), account.email,
        )  # fmt: skip
        return token


def _cli(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [str(LAKEHOUSE), *args], env=env, input=stdin, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"lakehouse {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="package")
def ui_smtp() -> Iterator[SmtpServer]:
    """A real SMTP server (aiosmtpd) the control room sends alert e-mail to; its mailbox is the test's."""
    server = SmtpServer(free_port(), Mailbox())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="package")
def ui_world(pg_server: PostgresServer, pytestconfig: pytest.Config, ui_smtp: SmtpServer) -> Iterator[UiWorld]:
    database_url = pg_server.create_database("lh_ui_e2e")
    root = Path(tempfile.mkdtemp(prefix="lh-ui-e2e-"))  # not under pytest's tmp: postgres may run as another user
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("LAKEHOUSE_")}
    env.update(
        {
            "LAKEHOUSE_PORT": str(port),
            "LAKEHOUSE_DATA_DIR": str(root / "data"),
            "LAKEHOUSE_DATABASE_URL": database_url,
            "LAKEHOUSE_EXECUTOR_OFFLINE_AFTER_SECONDS": "30",
            "LAKEHOUSE_SMTP_HOST": "127.0.0.1",
            "LAKEHOUSE_SMTP_PORT": str(ui_smtp.port),
            "LAKEHOUSE_SMTP_STARTTLS": "false",
            "LAKEHOUSE_ALERTS_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "LAKEHOUSE_MLFLOW_PORT": str(free_port()),  # its own MLflow tracking server (issue 23)
            # ... on a backend database of its own (`mlflow` would be shared by every run on this server).
            "LAKEHOUSE_MLFLOW_DATABASE": conninfo_to_dict(pg_server.create_database("lh_mlflow_ui"))["dbname"],
        }
    )
    env.update(superset_control_room_env())  # the session's Superset, started only by the tests that embed it
    env.pop("MLFLOW_TRACKING_URI", None)
    log = root / "lakehouse-run.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(LAKEHOUSE), "run"], cwd=PROJECT_ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    running = RunningControlRoom(process=process, url=f"http://127.0.0.1:{port}", log=log, data_dir=root / "data")
    try:
        wait_until_healthy(running)
        running.record_started_processes()
        found = ADMIN_LINE.search(running.output())
        assert found, f"`lakehouse run` did not print the demo admin's password:\n{running.output()}"
        admin = Account(found["email"], found["password"], "admin")
        people = {}
        for role in ("operator", "viewer"):
            account = Account(f"{role}@demo.example", f"{role}-password-123", role)
            _cli(env, "users", "create", "--email", account.email, "--project", DEMO_PROJECT, "--role", role,
                 "--password-stdin", stdin=account.password + "\n")  # fmt: skip
            people[role] = account
        agent = AGENT_LINE.search(running.output())
        assert agent, f"`lakehouse run` did not start its executor agent:\n{running.output()}"
        shots = Path(str(pytestconfig.getoption("--output"))) / "screenshots"
        shots.mkdir(parents=True, exist_ok=True)
        yield UiWorld(
            url=running.url,
            database_url=database_url,
            data_dir=root / "data",
            admin=admin,
            operator=people["operator"],
            viewer=people["viewer"],
            agent=agent["name"],
            shots=shots,
            smtp=ui_smtp,
            log=log,
        )
    finally:
        if process.poll() is None:
            survivors = running.stop(signal.SIGINT)
            for proc in survivors:
                proc.kill()
        for proc in alive(running.started):
            proc.kill()
        shutil.rmtree(root, ignore_errors=True)


def screenshot(page: Page, world: UiWorld, name: str) -> None:
    """A full-page screenshot under test-results/screenshots/ (a real picture, not an empty page)."""
    path = world.shots / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000


SignIn = Callable[[Account], Page]


def sign_in_by_form(page: Page, world: UiWorld, account: Account) -> None:
    """Sign in on the sign-in page as a person would; lands on the runs page."""
    page.goto(f"{world.url}/login")
    page.fill("#login-email", account.email)
    page.fill("#login-password", account.password)
    page.click("#login-submit")
    page.wait_for_url(re.compile(r".*/runs/?$"))
    expect(page.locator("#signed-in-user")).to_have_text(account.email)


def session_token(page: Page) -> str:
    """The session token inside the page's HttpOnly cookie (``<token>.<signature>``), as only the browser
    (and this test, through Playwright) can read it."""
    value = next(c["value"] for c in page.context.cookies() if c["name"] == "lh_session")
    return value.rsplit(".", 1)[0]


@pytest.fixture
def sign_in(ui_world: UiWorld, browser: Browser, request: pytest.FixtureRequest) -> Iterator[SignIn]:
    """Factory: a new browser context signed in as the account (each person has their own cookies)."""
    contexts: list[BrowserContext] = []
    request.node.stash[OPENED_PAGES] = []
    request.node.stash[BROWSER_NOTES] = {}

    def open_as(account: Account) -> Page:
        context = browser.new_context(viewport={"width": 1440, "height": 900}, accept_downloads=True)
        contexts.append(context)
        page = context.new_page()
        request.node.stash[OPENED_PAGES].append(page)
        _note_browser_events(page, request.node.stash[BROWSER_NOTES].setdefault(id(page), []))
        page.set_default_timeout(UI_TIMEOUT_MS)
        sign_in_by_form(page, ui_world, account)
        expect(page.locator("#signed-in-role")).to_have_text(account.role)
        return page

    yield open_as
    for context in contexts:
        context.close()


OPENED_PAGES = pytest.StashKey[list[Page]]()
BROWSER_NOTES = pytest.StashKey[dict[int, list[str]]]()
NOTES_KEPT = 30


def _note_browser_events(page: Page, notes: list[str]) -> None:
    """Keeps what a failure report needs from the browser: its errors and warnings, uncaught exceptions, and
    each address the page went to (a reload or a navigation nobody asked for shows here)."""

    def note(text: str) -> None:
        notes.append(f"{time.strftime('%H:%M:%S')} {text[:400]}")
        del notes[:-NOTES_KEPT]

    page.on("console", lambda m: note(f"console {m.type}: {m.text}") if m.type in {"error", "warning"} else None)
    page.on("pageerror", lambda error: note(f"uncaught: {error}"))
    page.on("framenavigated", lambda frame: note(f"at {frame.url}") if frame == page.main_frame else None)
    page.on("crash", lambda _page: note("the page crashed"))


def _page_text(page: Page) -> str:
    """What the page shows but the sidebar's links (the same on every page)."""
    try:
        text = page.inner_text("body", timeout=2000)
        sidebar = page.locator("#sidebar")
        if sidebar.count():
            text = text.replace(sidebar.inner_text(timeout=2000), "", 1)
        return text.strip()[:1500]
    except Exception as exc:  # a closed or crashed page still gets a line
        return f"(the page could not be read: {exc})"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed browser test's report shows what each signed-in page showed, what its browser noted (errors,
    addresses) and the control room's last log lines: a failure on a busy CI machine can then be read, not only
    re-run."""
    report = yield
    if report.failed and call.when == "call":
        notes = item.stash.get(BROWSER_NOTES, {})
        for page in item.stash.get(OPENED_PAGES, []):
            report.sections.append((f"page {page.url}", _page_text(page)))
            report.sections.append((f"browser of {page.url}", "\n".join(notes.get(id(page), [])) or "(nothing)"))
        world = getattr(item, "funcargs", {}).get("ui_world")
        if isinstance(world, UiWorld) and world.log.exists():
            tail = world.log.read_text(errors="replace").splitlines()[-80:]
            report.sections.append(("lakehouse run (last 80 lines)", "\n".join(tail)))
    return report
