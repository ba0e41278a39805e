"""The runner against the real API server: cancel, timeout, lost lease, engine outcomes, limits, reports."""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import psycopg

from control_room.config import PROJECT_ROOT
from executor_agent.engines.base import Engine, EngineResult, TaskContext
from executor_agent.engines.python import PythonEngine
from executor_agent.engines.shell import ShellEngine
from tests.agent.conftest import (
    StartAgent,
    attempts_of,
    operator_client,
    run_events,
    submit,
    wait_for_run,
    wait_until,
)
from tests.live import LiveServer, Provisioner

PY_PATH = [str(PROJECT_ROOT)]


def process_alive(pid: int) -> bool:
    """Running and not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


def pids_from_events(events: list[dict[str, Any]]) -> dict[str, int]:
    found = {}
    for event in events:
        match = re.fullmatch(r"(shell|child) (\d+)", event["message"])
        if match:
            found[match.group(1)] = int(match.group(2))
    return found


SLEEPER = 'sleep 600 & echo "child $!"; echo "shell $$"; wait'


def test_cancel_from_the_api_stops_the_process_group_within_5_s(
    live_api: LiveServer, provision: Provisioner, pool: str, start_agent: StartAgent
) -> None:
    operator = operator_client(live_api, provision.user_token("operator")[1])
    start_agent(live_api, provision.executor_token(pool))
    run = submit(
        operator, provision.tenant().project_id, [{"key": "long", "engine": "shell", "pool": pool, "command": SLEEPER}]
    )
    pids = wait_until(
        lambda: (p := pids_from_events(run_events(operator, run["id"]))) and len(p) == 2 and p,
        timeout=30,
        what="the task printed its process ids",
    )
    assert all(process_alive(pid) for pid in pids.values())
    asked = time.monotonic()
    assert operator.post(f"/runs/{run['id']}/cancel").status_code == 200
    wait_until(
        lambda: not any(process_alive(pid) for pid in pids.values()),
        timeout=5,
        what="the task's shell and its background child stopped",
    )
    stopped_after = time.monotonic() - asked
    detail = wait_for_run(operator, run["id"], timeout=10)
    assert stopped_after < 5
    assert detail["status"] == "cancelled"
    task = detail["tasks"][0]
    assert task["status"] == "cancelled" and [a["outcome"] for a in task["attempts"]] == ["cancelled"]
    types = [e["type"] for e in run_events(operator, run["id"])]
    assert "cancel" in types and types[-1] == "finish"


def test_timeout_kills_the_group_and_finalizes_timed_out(
    live_api: LiveServer, provision: Provisioner, pool: str, start_agent: StartAgent
) -> None:
    operator = operator_client(live_api, provision.user_token("operator")[1])
    start_agent(live_api, provision.executor_token(pool))
    run = submit(
        operator,
        provision.tenant().project_id,
        [{"key": "slow", "engine": "shell", "pool": pool, "command": SLEEPER, "timeout_s": 2, "max_attempts": 1}],
    )
    detail = wait_for_run(operator, run["id"], timeout=30)
    task = detail["tasks"][0]
    assert task["status"] == "timed_out", task
    assert "timeout of 2 s" in task["error"]
    assert (
        2
        <= (
            time.mktime(time.strptime(task["finished_at"][:19], "%Y-%m-%dT%H:%M:%S"))
            - time.mktime(time.strptime(task["started_at"][:19], "%Y-%m-%dT%H:%M:%S"))
        )
        <= 10
    )
    pids = pids_from_events(run_events(operator, run["id"]))
    assert pids and not any(process_alive(pid) for pid in pids.values())


def test_a_lost_lease_stops_the_work_at_once_and_sends_no_outcome(
    live_api: LiveServer, provision: Provisioner, api_database_url: str, pool: str, start_agent: StartAgent
) -> None:
    operator = operator_client(live_api, provision.user_token("operator")[1])
    agent = start_agent(live_api, provision.executor_token(pool))
    run = submit(
        operator,
        provision.tenant().project_id,
        [{"key": "victim", "engine": "shell", "pool": pool, "command": SLEEPER, "max_attempts": 1}],
    )
    pids = wait_until(
        lambda: (p := pids_from_events(run_events(operator, run["id"]))) and len(p) == 2 and p,
        timeout=30,
        what="the task started",
    )
    with psycopg.connect(api_database_url, autocommit=True) as conn:
        # As if the agent had missed its heartbeats: the server's reaper takes the lease away.
        conn.execute(
            "update ops.tasks set lease_expires_at = now() - interval '1 second' where run_id = %s", (run["id"],)
        )
    expired = time.monotonic()
    wait_until(
        lambda: not any(process_alive(pid) for pid in pids.values()),
        timeout=5,
        what="the work of the lost lease stopped",
    )
    assert time.monotonic() - expired < 5
    detail = wait_for_run(operator, run["id"], timeout=10)
    assert detail["tasks"][0]["status"] == "lost"
    wait_until(lambda: agent.agent.stats.leases_lost >= 1, timeout=5, what="the agent counted the lost lease")
    # Once the agent holds nothing and its spool is empty, no outcome for the lost attempt can ever be sent.
    wait_until(
        lambda: agent.agent.spool.is_empty() and agent.agent.spool.attempts() == [],
        timeout=10,
        what="the agent let go of the lost attempt",
    )
    assert [a["outcome"] for a in attempts_of(api_database_url, run["id"])] == ["lost"]
    finish = [e for e in run_events(operator, run["id"]) if e["type"] == "finish"]
    assert finish and finish[-1]["data"]["lease_lost"] is True
    assert agent.agent.stats.outcomes == {}


def test_python_engine_outcomes_and_limits(
    live_api: LiveServer, provision: Provisioner, pool: str, start_agent: StartAgent, tmp_path: Path
) -> None:
    script = tmp_path / "job.py"
    script.write_text(
        "import os, sys\n"
        "print('args', sys.argv[1:], 'day', os.environ['LAKEHOUSE_PARAM_DAY'])\n"
        "print('token visible:', 'LAKEHOUSE_EXECUTOR_TOKEN' in os.environ)\n"
        "print('engine modules importable:', any(p.rstrip('/').endswith('engines') for p in sys.path))\n"
    )
    operator = operator_client(live_api, provision.user_token("operator")[1])
    start_agent(live_api, provision.executor_token(pool), concurrency=3)
    tasks = [
        {"key": "add", "function": "tests.agent.task_functions:add", "params": {"a": 2, "b": 3}},
        {"key": "scalar", "function": "tests.agent.task_functions:scalar", "params": {"value": 21}},
        {"key": "boom", "function": "tests.agent.task_functions:boom", "params": {"message": "no rows for day"}},
        {"key": "not-json", "function": "tests.agent.task_functions:not_json"},
        {"key": "report", "function": "tests.agent.task_functions:write_report", "params": {"lines": 5}},
        {"key": "script", "script": str(script), "args": ["--full"]},
        {"key": "no-such-module", "function": "tests.agent.nothing_here:f"},
        {
            "key": "memory",
            "engine": "shell",
            "max_memory_mb": 300,
            "argv": [sys.executable, "-c", "x = bytearray(800 * 1024 * 1024)"],
        },
        {"key": "cpu", "engine": "shell", "cpu_time_s": 1, "argv": [sys.executable, "-c", "while True: pass"]},
    ]
    for task in tasks:
        task.setdefault("engine", "python")
        task.update(pool=pool, max_attempts=1)
        if task["engine"] == "python":
            task["python_path"] = PY_PATH
    # A spec its engine cannot run is refused at submit, naming the field, before any agent sees it.
    refused = operator.post(
        "/runs",
        json={"project": str(provision.tenant().project_id), "spec": {"tasks": [{"key": "bad", "engine": "shell"}]}},
    )
    assert refused.status_code == 422 and "command, argv" in refused.json()["detail"], refused.text
    run = submit(operator, provision.tenant().project_id, tasks, params={"day": "2026-11-26"})
    detail = wait_for_run(operator, run["id"], timeout=90)
    by_key = {t["key"]: t for t in detail["tasks"]}
    assert by_key["add"]["status"] == "succeeded" and by_key["add"]["result"]["sum"] == 5
    assert by_key["add"]["result"]["pid"] != os.getpid(), "python tasks run in a child process"
    assert by_key["scalar"]["result"] == {"value": 42}
    assert by_key["boom"]["status"] == "failed" and "ValueError: no rows for day" in by_key["boom"]["error"]
    assert by_key["not-json"]["status"] == "failed" and "not JSON-serializable" in by_key["not-json"]["error"]
    assert by_key["report"]["status"] == "succeeded" and by_key["report"]["result"]["lines"] == 5
    assert by_key["script"]["status"] == "succeeded"
    assert "ModuleNotFoundError" in by_key["no-such-module"]["error"]
    assert by_key["memory"]["status"] == "failed" and "300 MB" in by_key["memory"]["error"]
    assert by_key["cpu"]["status"] == "failed" and "SIGXCPU" in by_key["cpu"]["error"]

    events = run_events(operator, run["id"])

    def messages(key: str) -> list[str]:
        return [e["message"] for e in events if e["task_key"] == key]

    assert "args ['--full'] day 2026-11-26" in messages("script")
    assert "token visible: False" in messages("script"), "the executor token must not reach task code"
    assert "engine modules importable: False" in messages("script"), "engines/duckdb.py would shadow duckdb"
    assert any("ValueError: no rows for day" in m for m in messages("boom")), "the traceback is in the events"
    assert any(m.startswith("MemoryError") or "MemoryError" in m for m in messages("memory"))
    artifacts = operator.get(f"/runs/{run['id']}/artifacts").json()["items"]
    assert [a["name"] for a in artifacts] == ["reports/report.txt"]


class LineageReporter(Engine):
    """Reports lineage through the context, like the dbt and SQL engines do."""

    name: ClassVar[str] = "duckdb"  # a stand-in under a real engine's name: its tasks carry a duckdb spec

    def run(self, context: TaskContext) -> EngineResult:
        reply = context.report("lineage", {"datasets": [], "edges": []})
        context.progress("reported", reply=dict(reply))
        return EngineResult.ok(reply=dict(reply))


def test_reports_reach_the_control_plane_with_the_lease(
    live_api: LiveServer, provision: Provisioner, pool: str, tmp_path: Path
) -> None:
    from executor_agent.config import AgentSettings
    from executor_agent.runner import Agent

    operator = operator_client(live_api, provision.user_token("operator")[1])
    settings = AgentSettings(
        url=live_api.base_url,
        token=provision.executor_token(pool),
        spool_dir=tmp_path / "s",
        work_dir=tmp_path / "w",
        claim_wait_s=1,
        grace_period_s=2,
    )
    agent = Agent(settings, engines={"duckdb": LineageReporter, "shell": ShellEngine, "python": PythonEngine})
    import threading

    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    try:
        run = submit(
            operator, provision.tenant().project_id, [{"key": "r", "engine": "duckdb", "sql": "select 1", "pool": pool}]
        )
        detail = wait_for_run(operator, run["id"], timeout=30)
    finally:
        agent.request_stop()
        thread.join(30)
    assert detail["status"] == "succeeded", detail
    assert detail["tasks"][0]["result"]["reply"]["datasets"] == 0
    assert agent.stats.reports_sent == 1
