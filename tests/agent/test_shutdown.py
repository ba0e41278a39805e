"""SIGTERM: stop claiming, let running tasks finish within the grace period, then hand back the leases."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from tests.agent.conftest import operator_client, run_events, submit, wait_until
from tests.agent.test_outage import agent_process, process_alive
from tests.live import LiveServer, Provisioner


def test_sigterm_finishes_short_tasks_and_hands_back_long_ones(
    live_api: LiveServer, provision: Provisioner, pool: str, tmp_path: Path
) -> None:
    operator = operator_client(live_api, provision.user_token("operator")[1])
    log = tmp_path / "agent.log"
    agent = agent_process(live_api.base_url, provision.executor_token(pool), tmp_path / "s", tmp_path / "w", log)
    try:
        run = submit(
            operator,
            provision.tenant().project_id,
            [
                {"key": "short", "engine": "shell", "pool": pool, "command": "echo started; sleep 2; echo done"},
                {"key": "long", "engine": "shell", "pool": pool, "command": 'echo "pid $$"; exec sleep 600'},
            ],
        )
        events = wait_until(
            lambda: (
                (e := run_events(operator, run["id"]))
                and {x["message"] for x in e} >= {"started"}
                and any(x["message"].startswith("pid ") for x in e)
                and e
            ),
            timeout=30,
            what="both tasks running",
        )
        sleeper = int(next(x["message"] for x in events if x["message"].startswith("pid ")).split()[1])
        signalled = time.monotonic()
        agent.send_signal(signal.SIGTERM)
        code = agent.wait(30)
        took = time.monotonic() - signalled
    finally:
        if agent.poll() is None:
            agent.kill()
    assert code == 0, log.read_text()
    # Grace 5 s, then SIGTERM/SIGKILL of the group and the hand-back: well under the 30 s deadline.
    assert 4 <= took < 20, took
    assert not process_alive(sleeper)
    detail = operator.get(f"/runs/{run['id']}").json()
    by_key = {t["key"]: t for t in detail["tasks"]}
    assert by_key["short"]["status"] == "succeeded", "a task finishing within the grace period is recorded"
    assert by_key["long"]["status"] == "queued", "the unfinished task is queued again for another agent"
    assert [a["outcome"] for a in by_key["long"]["attempts"]] == ["released"]
    long_events = [e for e in run_events(operator, run["id"]) if e["task_key"] == "long"]
    assert long_events[-1]["type"] == "finish" and long_events[-1]["data"]["outcome"] == "released"
    assert "stopping: no new tasks" in log.read_text()
    operator.post(f"/runs/{run['id']}/cancel")


def test_a_second_sigterm_stops_running_tasks_at_once(
    live_api: LiveServer, provision: Provisioner, pool: str, tmp_path: Path
) -> None:
    operator = operator_client(live_api, provision.user_token("operator")[1])
    log = tmp_path / "agent.log"
    agent = agent_process(
        live_api.base_url, provision.executor_token(pool), tmp_path / "s", tmp_path / "w", log, grace_s=60
    )
    try:
        run = submit(
            operator,
            provision.tenant().project_id,
            [{"key": "long", "engine": "shell", "pool": pool, "command": 'echo "pid $$"; exec sleep 600'}],
        )
        events = wait_until(
            lambda: (e := run_events(operator, run["id"])) and any(x["message"].startswith("pid ") for x in e) and e,
            timeout=30,
            what="the task is running",
        )
        sleeper = int(next(x["message"] for x in events if x["message"].startswith("pid ")).split()[1])
        signalled = time.monotonic()
        agent.send_signal(signal.SIGTERM)
        wait_until(lambda: "stopping: no new tasks" in log.read_text(), timeout=10, what="the first SIGTERM handled")
        agent.send_signal(signal.SIGTERM)
        code = agent.wait(30)
        took = time.monotonic() - signalled
    finally:
        if agent.poll() is None:
            agent.kill()
    assert code == 0, log.read_text()
    assert took < 20, "the second SIGTERM must not wait for the 60 s grace period"
    assert not process_alive(sleeper)
    task = operator.get(f"/runs/{run['id']}").json()["tasks"][0]
    assert [a["outcome"] for a in task["attempts"]] == ["released"]
    operator.post(f"/runs/{run['id']}/cancel")
