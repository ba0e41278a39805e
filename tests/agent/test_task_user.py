"""Tasks run as another user (LAKEHOUSE_EXECUTOR_TASK_USER) and cannot read the agent's token; the agent
makes itself non-dumpable so tasks of its own user cannot read /proc/<agent>/environ either."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from executor_agent.config import AgentSettings
from tests.agent.conftest import StartAgent, operator_client, run_events, submit, wait_for_run
from tests.live import LiveServer, Provisioner

PROBE = (
    "id -u; "
    "if cat /proc/$PPID/environ >/dev/null 2>&1; then echo agent-env-READABLE; else echo agent-env-denied; fi; "
    "echo token-vars=$(env | grep -c '^LAKEHOUSE_EXECUTOR_'); "
    "echo out > made-by-task.txt"
)


def test_a_task_runs_as_the_task_user_and_cannot_read_the_agents_token(
    live_api: LiveServer, provision: Provisioner, start_agent: StartAgent
) -> None:
    if os.geteuid() != 0:  # switching users needs root: without it the agent refuses to start, saying so
        with pytest.raises(ValueError, match="needs the agent to run as root"):
            AgentSettings(url=live_api.base_url, token="lhx_x", task_user="nobody")
        return
    pool = f"task-user-{uuid.uuid4().hex[:6]}"
    work = Path(tempfile.mkdtemp(prefix="lh-task-user-"))
    work.chmod(0o711)  # the task user must reach its own attempt folder
    operator = operator_client(live_api, provision.user_token("operator")[1])
    start_agent(live_api, provision.executor_token(pool), task_user="nobody", work_dir=work, keep_work_dirs=True)
    run = submit(operator, provision.tenant().project_id, [{"key": "probe", "engine": "shell", "pool": pool,
                                                            "command": PROBE}])  # fmt: skip
    detail = wait_for_run(operator, run["id"], timeout=60)
    assert detail["status"] == "succeeded", detail
    lines = [e["message"] for e in run_events(operator, run["id"]) if e["type"] == "log"]
    assert "65534" in lines, lines
    assert "agent-env-denied" in lines and "token-vars=0" in lines
    (made,) = work.glob("*/made-by-task.txt")
    assert made.stat().st_uid == 65534


def test_an_unknown_task_user_is_refused_when_the_agent_starts() -> None:
    with pytest.raises(ValueError, match="no such user"):
        AgentSettings(url="http://127.0.0.1:1", token="lhx_x", task_user=f"nobody-{uuid.uuid4().hex[:6]}")


def test_the_agent_process_is_not_dumpable() -> None:
    probe = (
        "import ctypes; from executor_agent.processes import refuse_inspection; "
        "assert refuse_inspection(); print(ctypes.CDLL(None).prctl(3, 0, 0, 0, 0))"  # PR_GET_DUMPABLE
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "0"
