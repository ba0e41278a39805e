"""Replicas: 3 control-room API processes on one Postgres, agents spread over them, one replica killed with
SIGKILL mid-run and restarted. Every task must end with exactly one recorded outcome, re-run only after a
lost or handed-back lease (the reapers of the surviving replicas never reap twice), and a run's event stream
read on one replica resumes by Last-Event-ID on another.
"""

from __future__ import annotations

import json
import os
import signal
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from control_room.db.migrate import migrate
from tests.agent.conftest import (
    operator_client,
    retried_shell_tasks,
    run_events,
    stop_agent_processes,
    submit,
    task_outcomes,
    wait_until,
)
from tests.agent.test_outage import agent_process
from tests.conftest import PostgresServer
from tests.live import LiveServer, Provisioner, live_server

pytestmark = pytest.mark.slow

REPLICAS = 3
RUNS, TASKS_PER_RUN = 3, 60
TASKS = RUNS * TASKS_PER_RUN
COMMAND = 'echo "task $LAKEHOUSE_TASK_KEY attempt $LAKEHOUSE_ATTEMPT"; sleep 0.2; echo done'
FINISHED = "('succeeded', 'failed', 'cancelled', 'timed_out', 'lost')"


def count_tasks(database_url: str, where: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(f"select count(*) from ops.tasks where status in {where}").fetchone()
    assert row is not None
    return int(row[0])


def stream_events(server: LiveServer, token: str, run_id: str, last_event_id: int | None) -> list[dict[str, Any]]:
    """The run's SSE stream on one replica, from Last-Event-ID to its `end` event, as EventPublic dicts."""
    headers = {"Authorization": f"Bearer {token}"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    events: list[dict[str, Any]] = []
    event_type = ""
    with httpx.stream(
        "GET", f"{server.base_url}/api/v1/runs/{run_id}/events/stream", headers=headers, timeout=30
    ) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line.startswith("event:"):
                event_type = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                if event_type == "end":
                    return events
                events.append(json.loads(line.split(":", 1)[1]))
    raise AssertionError(f"stream of run {run_id} on {server.base_url} closed without an end event")


def test_three_replicas_one_killed_mid_run(pg_server: PostgresServer, tmp_path: Path) -> None:
    database_url = pg_server.create_database("lh_replicas")
    migrate(database_url)
    provision = Provisioner(database_url)
    settings = {"lease_seconds": "10", "reaper_interval_seconds": "0.5", "claim_wait_max_seconds": "3"}
    with ExitStack() as stack:
        servers = [
            stack.enter_context(live_server(database_url, tmp_path / f"data-{i}", **settings)) for i in range(REPLICAS)
        ]
        token = provision.user_token("operator")[1]
        operator = operator_client(servers[0], token)
        agent_tokens = [provision.executor_token("replicas", name=f"replica-agent-{i}") for i in range(REPLICAS)]
        logs = [tmp_path / f"agent-{i}.log" for i in range(REPLICAS)]
        agents = [
            agent_process(
                servers[i].base_url, agent_tokens[i], tmp_path / f"spool-{i}", tmp_path / f"work-{i}", logs[i]
            )
            for i in range(REPLICAS)
        ]
        try:
            run_ids = []
            for r in range(RUNS):
                tasks = retried_shell_tasks(r, TASKS_PER_RUN, "replicas", COMMAND)
                run_ids.append(submit(operator, provision.tenant().project_id, tasks)["id"])

            wait_until(lambda: count_tasks(database_url, FINISHED) >= TASKS // 4, timeout=180, what="a quarter done")
            killed = servers[1]
            assert killed.proc is not None
            os.killpg(killed.proc.pid, signal.SIGKILL)  # no shutdown: its connections and loops just vanish
            killed.proc.wait(10)
            killed.proc = None
            wait_until(lambda: count_tasks(database_url, FINISHED) >= TASKS // 2, timeout=180, what="half done")
            killed.start()  # the same port: its agent reconnects
            wait_until(lambda: count_tasks(database_url, FINISHED) >= TASKS, timeout=300, what="every task finished")
        finally:
            codes, output = stop_agent_processes(agents, logs)
        assert codes == [0] * REPLICAS, output

        with psycopg.connect(database_url) as conn:
            statuses, per_task = task_outcomes(conn)
            run_statuses = [
                r[0] for r in conn.execute("select status from ops.runs where id = any(%s::uuid[])", (run_ids,))
            ]
            # A reaped attempt is requeued once: one audit row per lost attempt's way back to the queue.
            lost = conn.execute("select count(*) from ops.task_attempts where outcome = 'lost'").fetchone()
            requeued = conn.execute(
                "select count(*) from ops.audit_log where entity = 'tasks' and new_status = 'queued' "
                "and old_status in ('claimed', 'running')"
            ).fetchone()
            released = conn.execute("select count(*) from ops.task_attempts where outcome = 'released'").fetchone()
        assert statuses == {"succeeded": TASKS}, (statuses, output)
        assert run_statuses == ["succeeded"] * RUNS
        assert len(per_task) == TASKS
        for _, key, attempts, outcomes, successes, history in per_task:
            assert outcomes == 1 and successes == 1, f"{key}: recorded outcomes {history}"
            assert attempts == len(history) <= 3, f"{key}: attempts {history}"
            assert all(h in ("lost", "released") for h in history[:-1]), (
                f"{key} re-ran without losing its lease: {history}"
            )
        assert lost is not None and requeued is not None and released is not None
        assert requeued[0] == lost[0] + released[0], "every lost or handed-back lease is requeued exactly once"

        # The stream of a finished run read on replica 0, then resumed on replica 2 after its 5th event.
        every = run_events(operator, run_ids[0])
        assert len(every) > 10
        first = stream_events(servers[0], token, run_ids[0], None)
        assert [e["id"] for e in first] == [e["id"] for e in every]
        resumed = stream_events(servers[2], token, run_ids[0], first[4]["id"])
        assert [e["id"] for e in resumed] == [e["id"] for e in every[5:]]
