"""Chaos: 4 agent processes, 500 short tasks, two agents killed with SIGKILL and restarted, the control room
restarted once. Every task must end succeeded with exactly one recorded outcome, run at most twice (only when
a lease was lost or handed back), and every attempt's events must have contiguous seq with none lost.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from tests.agent.conftest import (
    IsolatedServer,
    operator_client,
    retried_shell_tasks,
    stop_agent_processes,
    submit,
    task_outcomes,
    wait_until,
)
from tests.agent.test_outage import agent_process

pytestmark = pytest.mark.slow

AGENTS = 4
RUNS, TASKS_PER_RUN = 5, 100
TASKS = RUNS * TASKS_PER_RUN
# What one successful attempt records: start, progress (running), two output lines, progress (exit), finish.
SUCCESS_EVENTS = ["start", "progress", "log", "log", "progress", "finish"]
COMMAND = 'echo "task $LAKEHOUSE_TASK_KEY attempt $LAKEHOUSE_ATTEMPT"; sleep 0.3; echo done'


def succeeded_count(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("select count(*) from ops.tasks where status = 'succeeded'").fetchone()
    assert row is not None
    return int(row[0])


def finished_count(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "select count(*) from ops.tasks where status in ('succeeded', 'failed', 'cancelled', 'timed_out', 'lost')"
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_chaos_kill_agents_and_restart_the_control_room(
    isolated_server: Callable[..., IsolatedServer], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    isolated = isolated_server(lease_seconds="20", reaper_interval_seconds="0.5", claim_wait_max_seconds="5")
    server, provision, database_url = isolated.server, isolated.provision, isolated.database_url
    operator = operator_client(server, provision.user_token("operator")[1])
    tokens = [provision.executor_token("chaos", name=f"chaos-{i}") for i in range(AGENTS)]
    logs = [tmp_path / f"agent-{i}.log" for i in range(AGENTS)]

    def start(i: int) -> subprocess.Popen[bytes]:
        return agent_process(server.base_url, tokens[i], tmp_path / f"spool-{i}", tmp_path / f"work-{i}", logs[i])

    agents = [start(i) for i in range(AGENTS)]
    started = time.monotonic()
    try:
        for r in range(RUNS):
            tasks = retried_shell_tasks(r, TASKS_PER_RUN, "chaos", COMMAND)
            submit(operator, provision.tenant().project_id, tasks)

        wait_until(lambda: succeeded_count(database_url) >= TASKS // 5, timeout=180, what="a fifth of the tasks done")
        for i in (0, 1):
            agents[i].send_signal(signal.SIGKILL)
            agents[i].wait(10)
        killed_at = succeeded_count(database_url)
        for i in (0, 1):
            agents[i] = start(i)

        wait_until(lambda: succeeded_count(database_url) >= TASKS // 2, timeout=180, what="half of the tasks done")
        restarted_at = succeeded_count(database_url)
        server.restart()

        wait_until(lambda: finished_count(database_url) >= TASKS, timeout=300, what="every task finished")
        elapsed = time.monotonic() - started
    finally:
        codes, output = stop_agent_processes(agents, logs)
    assert codes == [0] * AGENTS, output

    with psycopg.connect(database_url) as conn:
        statuses, per_task = task_outcomes(conn)
        attempt_events = conn.execute(
            "select a.task_id, a.attempt, a.outcome, count(e.id), coalesce(min(e.seq), 0), coalesce(max(e.seq), -1), "
            "count(distinct e.seq), array_agg(e.type order by e.seq) filter (where e.id is not null) "
            "from ops.task_attempts a left join ops.events e on e.task_id = a.task_id and e.attempt = a.attempt "
            "group by a.task_id, a.attempt, a.outcome"
        ).fetchall()

    assert statuses == {"succeeded": TASKS}, (statuses, output)
    assert len(per_task) == TASKS
    twice = [row for row in per_task if row[2] > 1]
    for _, key, attempts, outcomes, successes, history in per_task:
        assert outcomes == 1 and successes == 1, f"{key}: recorded outcomes {history}"
        assert attempts <= 2, f"{key} ran {attempts} times: {history}"
        assert all(h in ("lost", "released") for h in history[:-1]), f"{key} re-ran without losing its lease: {history}"
    events_total = 0
    for task_id, attempt, outcome, count, low, high, distinct, types in attempt_events:
        events_total += count
        assert count == distinct and (count == 0 or (low == 0 and high == count - 1)), (
            f"task {task_id} attempt {attempt}: seq not contiguous ({count} events, {low}..{high})"
        )
        if outcome == "succeeded":
            assert types == SUCCESS_EVENTS, f"task {task_id} attempt {attempt}: events {types}"
    histories = [tuple(row[5]) for row in per_task]
    counts = {
        "tasks": TASKS,
        "attempts": sum(row[2] for row in per_task),
        "tasks_run_twice": len(twice),
        "lost_leases": sum(h.count("lost") for h in histories),
        "handed_back_leases": sum(h.count("released") for h in histories),
        "events": events_total,
        "succeeded_when_agents_killed": killed_at,
        "succeeded_when_control_room_restarted": restarted_at,
        "seconds": round(elapsed, 1),
    }
    # Straight to the terminal (past output capture), so `make test` shows the figures to report.
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print(f"\nagent chaos counts: {json.dumps(counts)}", flush=True)
    assert counts["attempts"] == TASKS + len(twice)
    assert len(twice) > 0, "killing two busy agents must have interrupted some attempts"
