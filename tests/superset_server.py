"""One real Superset for the session (tests/superset/ and the e2e embed test share it), built by the recipe
`make superset` uses (control_room/superset_server.py). tests/conftest.py registers the fixture and the hook.

Its install (uv) and, with an external test Postgres, its metadata template database start in a background thread
as soon as collection ends, so they overlap the tests that run before this package; the fixture waits for them
with a deadline, then copies the template database and starts the server (about 20 s)."""

from __future__ import annotations

import concurrent.futures
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from control_room import superset_server
from control_room.services import superset

SERVICE_USER, SERVICE_PASSWORD = "lh-service", "superset-test-service-pw"
READER_PASSWORD = "superset-test-reader-pw"
PREPARE_TIMEOUT_SECONDS = 1500.0
LOG = Path(os.environ.get("TMPDIR", "/tmp")) / f"lh-superset-test-{os.getpid()}.log"
PREPARE_LOCK = superset_server.DEFAULT_VENV.with_name(".superset-test-prepare.lock")
_preparing: concurrent.futures.Future[Path] | None = None


def _plan(control_plane_url: str, database: str, port: int) -> superset_server.SupersetPlan:
    return superset_server.SupersetPlan(
        control_plane_url=control_plane_url, metadata_database=database, port=port, username=SERVICE_USER,
        password=SERVICE_PASSWORD, secret_key="superset-test-secret-key-0123456789abcdef",
        guest_token_secret="superset-test-guest-token-secret-0123456789",
    )  # fmt: skip


def _prepare(control_plane_url: str | None) -> Path:
    """Install, then (with a known server) build the template database: the slow part, off the main thread.
    One test worker at a time: every worker starts this, the first builds, the others then find it built."""
    with superset_server.exclusive(PREPARE_LOCK):
        python = superset_server.ensure_installed(log_file=LOG)
        if control_plane_url:
            superset_server.ensure_template(_plan(control_plane_url, "", 0), python, log_file=LOG)
    return python


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start preparing Superset in the background when this package's tests are selected."""
    global _preparing
    if _preparing is None and any(item.nodeid.startswith(("tests/superset/", "tests/e2e/ui/test_superset"))
                                  for item in session.items):  # fmt: skip
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="superset-prepare")
        _preparing = pool.submit(_prepare, os.environ.get("LAKEHOUSE_TEST_DATABASE_URL"))
        pool.shutdown(wait=False)


@dataclass(frozen=True)
class RunningSuperset:
    """The session's Superset and the settings to reach it with a given control-plane database."""

    url: str
    log: Path
    prepare_seconds: float

    def settings(self, control_plane_url: str) -> superset.SupersetSettings:
        reader = superset_server.reader_url(control_plane_url, READER_PASSWORD)
        return superset.SupersetSettings(url=self.url, public_url=self.url, username=SERVICE_USER,
                                         password=SERVICE_PASSWORD, reader_uri=reader)  # fmt: skip


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Chosen up front: the e2e control room is started (with LAKEHOUSE_SUPERSET_URL) before Superset may be.
PORT = _free_port()
URL = f"http://127.0.0.1:{PORT}"


def control_room_env() -> dict[str, str]:
    """What a control room needs to push to and embed from the session's Superset."""
    return {"LAKEHOUSE_SUPERSET_URL": URL, "LAKEHOUSE_SUPERSET_USERNAME": SERVICE_USER,
            "LAKEHOUSE_SUPERSET_PASSWORD": SERVICE_PASSWORD, "LAKEHOUSE_SUPERSET_READER_PASSWORD": READER_PASSWORD}


@pytest.fixture(scope="session")
def superset_instance(pg_server: Any) -> Iterator[RunningSuperset]:
    started = time.monotonic()
    preparing = _preparing or concurrent.futures.ThreadPoolExecutor(1).submit(_prepare, None)
    python = preparing.result(timeout=PREPARE_TIMEOUT_SECONDS)
    name = f"superset_test_{os.getpid()}"
    plan = _plan(pg_server.admin_url, name, PORT)
    superset_server.ensure_metadata_database(plan, python, log_file=LOG)
    pg_server.created.append(name)
    superset_server.set_reader_password(pg_server.admin_url, READER_PASSWORD)
    process = superset_server.start(plan, python, LOG)
    try:
        superset_server.wait_until_healthy(plan.url, process, LOG)
        yield RunningSuperset(plan.url, LOG, time.monotonic() - started)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except Exception:
            process.kill()
