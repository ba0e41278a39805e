"""Start the Trino test server as a real process and read what it observed (queries, cancels)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

PROJECT_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60.0


@dataclass
class TrinoTestServer:
    """A running test server: its URL, its catalog and how to read its observations."""

    url: str
    catalog: str
    pid: int
    log_path: Path

    @property
    def host(self) -> str:
        return self.url.split("://", 1)[1].split(":")[0]

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def queries(self) -> list[dict[str, Any]]:
        return list(httpx.get(f"{self.url}/_test/queries", timeout=10).json())

    def query(self, query_id: str) -> dict[str, Any]:
        found = [q for q in self.queries() if q["query_id"] == query_id]
        assert found, f"the test server never saw query {query_id}"
        return found[0]

    def cancels(self) -> list[dict[str, Any]]:
        return list(httpx.get(f"{self.url}/_test/cancels", timeout=10).json())

    def wait_for_query(self, predicate: Any, timeout_s: float = 30.0) -> dict[str, Any]:
        """The first query the predicate accepts, polling the server until the deadline."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for query in self.queries():
                if predicate(query):
                    return query
            time.sleep(0.05)  # polling another process's state: nothing to await
        raise TimeoutError(f"no matching query on the test server within {timeout_s}s")


@contextmanager
def trino_test_server(
    directory: Path,
    *,
    catalog: str = "lakehouse",
    auth: str = "none",
    users: dict[str, str] | None = None,
    jwt_secret: str | None = None,
    page_rows: int = 10_000,
    tables_without_stats: tuple[str, ...] = (),
) -> Iterator[TrinoTestServer]:
    """Run ``python -m tests.trino_server`` with a DuckDB file as the catalog; stop it on exit."""
    directory.mkdir(parents=True, exist_ok=True)
    ready_file = directory / "ready.json"
    ready_file.unlink(missing_ok=True)
    log_path = directory / "server.log"
    argv = [
        sys.executable, "-m", "tests.trino_server", "--ready-file", str(ready_file),
        "--catalog", f"{catalog}={directory / (catalog + '.duckdb')}", "--auth", auth,
        "--page-rows", str(page_rows),
    ]  # fmt: skip
    for table in tables_without_stats:
        argv += ["--no-stats", table]
    for user, password in (users or {}).items():
        argv += ["--user", f"{user}:{password}"]
    if jwt_secret:
        argv += ["--jwt-secret", jwt_secret]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        )  # fmt: skip
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready_file.exists():
            if process.poll() is not None:
                raise RuntimeError(f"the Trino test server exited with {process.returncode}: {log_path.read_text()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the Trino test server did not start within {START_TIMEOUT_S}s")
            time.sleep(0.05)  # waiting for another process to write its port: nothing to await
        port = json.loads(ready_file.read_text())["port"]
        yield TrinoTestServer(f"http://127.0.0.1:{port}", catalog, process.pid, log_path)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
