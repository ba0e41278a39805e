"""Executor agent fixtures: in-process agents on a real API server, operators' clients, run polling."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from control_room.db.migrate import migrate
from executor_agent.config import AgentSettings
from executor_agent.engines.base import Engine
from executor_agent.runner import Agent
from tests.conftest import PostgresServer
from tests.live import LiveServer, Provisioner, live_server

API = "/api/v1"
TERMINAL_RUN = ("succeeded", "failed", "cancelled")


def operator_client(server: LiveServer, token: str) -> httpx.Client:
    return httpx.Client(base_url=server.base_url + API, headers={"Authorization": f"Bearer {token}"}, timeout=30)


@dataclass
class RunningAgent:
    """An ``Agent`` working in a thread of the test process."""

    agent: Agent
    thread: threading.Thread
    exit_code: list[int]

    def stop(self, *, timeout: float = 60) -> int:
        self.agent.request_stop()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the agent did not stop"
        return self.exit_code[0]


StartAgent = Callable[..., RunningAgent]


@pytest.fixture
def pool() -> str:
    return f"agent-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def start_agent(tmp_path: Path) -> Iterator[StartAgent]:
    """Factory: ``start_agent(server, token, **settings)`` runs an Agent in a thread until the test ends."""
    running: list[RunningAgent] = []

    def start(
        server: LiveServer,
        token: str,
        *,
        name: str = "a",
        transport: Any = None,
        engine_classes: Mapping[str, type[Engine]] | None = None,
        **settings: Any,
    ) -> RunningAgent:
        values: dict[str, Any] = {
            "url": server.base_url,
            "token": token,
            "spool_dir": tmp_path / f"spool-{name}",
            "work_dir": tmp_path / f"work-{name}",
            "concurrency": 4,
            "claim_wait_s": 2.0,
            "grace_period_s": 5.0,
            "kill_grace_s": 1.0,
            "retry_backoff_max_s": 2.0,
            "engines": ["shell", "python"],
            **settings,
        }
        agent = Agent(AgentSettings(**values), transport=transport, engines=engine_classes)
        code: list[int] = []
        thread = threading.Thread(target=lambda: code.append(agent.run()), name=f"agent-{name}", daemon=True)
        thread.start()
        assert agent.started.wait(30), "the agent did not register"
        handle = RunningAgent(agent, thread, code)
        running.append(handle)
        return handle

    yield start
    for handle in running:
        if handle.thread.is_alive():
            handle.agent.request_stop()
            handle.agent.request_stop()
            handle.thread.join(60)


def submit(client: httpx.Client, project: uuid.UUID, tasks: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    body = {"project": str(project), "environment": "dev", "spec": {"name": "agent test", "tasks": tasks}, **extra}
    response = client.post("/runs", json=body)
    assert response.status_code in (200, 201), response.text
    return dict(response.json())


def wait_for_run(client: httpx.Client, run_id: str, *, timeout: float = 60) -> dict[str, Any]:
    """Poll the run until it finishes (a deadline, not an expectation); returns its detail."""
    deadline = time.monotonic() + timeout
    detail: dict[str, Any] = {}
    while time.monotonic() < deadline:
        detail = client.get(f"/runs/{run_id}").json()
        if detail["status"] in TERMINAL_RUN:
            return detail
        time.sleep(0.1)  # polling the control plane: there is nothing to await
    raise AssertionError(f"run {run_id} not finished after {timeout} s: {detail}")


def wait_until(predicate: Callable[[], Any], *, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)  # polling state owned by another process or thread
    raise AssertionError(f"{what}: not true after {timeout} s")


def run_events(client: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    """Every event of a run, oldest first."""
    events: list[dict[str, Any]] = []
    after = 0
    while True:
        page = client.get(f"/runs/{run_id}/events", params={"after_id": after, "limit": 1000}).json()
        events.extend(page["items"])
        if len(page["items"]) < 1000:
            return events
        after = page["next_after_id"]


@dataclass
class IsolatedServer:
    """A LiveServer with a database of its own (tests that stop it must not disturb the shared one)."""

    server: LiveServer
    database_url: str
    provision: Provisioner


@pytest.fixture
def isolated_server(pg_server: PostgresServer, tmp_path: Path) -> Iterator[Callable[..., IsolatedServer]]:
    """Factory: ``isolated_server(**settings)`` starts a server on a fresh migrated database."""
    contexts: list[Any] = []

    def start(**settings: str) -> IsolatedServer:
        url = pg_server.create_database("lh_agent")
        migrate(url)
        context = live_server(url, tmp_path / f"data-{len(contexts)}", **settings)
        server = context.__enter__()
        contexts.append(context)
        return IsolatedServer(server, url, Provisioner(url))

    yield start
    for context in reversed(contexts):
        context.__exit__(None, None, None)


def attempts_of(database_url: str, run_id: str) -> list[dict[str, Any]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "select t.key, a.attempt, a.outcome from ops.task_attempts a join ops.tasks t on t.id = a.task_id "
            "where a.run_id = %s order by t.key, a.attempt",
            (run_id,),
        ).fetchall()
    return [{"key": r[0], "attempt": r[1], "outcome": r[2]} for r in rows]


def stop_agent_processes(agents: list[subprocess.Popen[bytes]], logs: list[Path]) -> tuple[list[int | None], str]:
    """SIGTERM every agent process still running and wait for each; their exit codes and the tails of their logs."""
    for agent in agents:
        if agent.poll() is None:
            agent.send_signal(signal.SIGTERM)
    codes: list[int | None] = []
    for agent in agents:
        try:
            codes.append(agent.wait(60))
        except subprocess.TimeoutExpired:
            agent.kill()
            codes.append(None)
    output = "\n".join(f"--- agent {i}\n{log.read_text()[-3000:]}" for i, log in enumerate(logs))
    return codes, output


def task_outcomes(conn: psycopg.Connection) -> tuple[dict[str, int], list[tuple[Any, ...]]]:
    """Tasks by status, and per task: id, key, attempts, recorded outcomes, successes, outcome history."""
    statuses = dict(conn.execute("select status, count(*) from ops.tasks group by status").fetchall())
    per_task = conn.execute(
        "select t.id, t.key, count(a.*) as attempts, "
        "count(*) filter (where a.outcome in ('succeeded', 'failed', 'cancelled', 'timed_out')) as outcomes, "
        "count(*) filter (where a.outcome = 'succeeded') as successes, "
        "array_agg(a.outcome order by a.attempt) as history "
        "from ops.tasks t join ops.task_attempts a on a.task_id = t.id group by t.id, t.key"
    ).fetchall()
    return statuses, per_task


def retried_shell_tasks(run: int, count: int, pool: str, command: str) -> list[dict[str, Any]]:
    """``count`` shell tasks of one run (keys r<run>-t000...), 3 attempts each with no backoff between them."""
    return [
        {
            "key": f"r{run}-t{t:03d}",
            "engine": "shell",
            "pool": pool,
            "command": command,
            "max_attempts": 3,
            "retry_backoff_s": 0,
        }
        for t in range(count)
    ]
